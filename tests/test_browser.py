"""Real-browser tests: headless Chromium (Debian's package) drives the app on the bundled demo model and
saves screenshots to docs/screenshots/ for the README, so the pictures show real text."""
import os
import shutil
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.browser]
playwright_api = pytest.importorskip("playwright.sync_api")

from rwkv_app.ui import build_app  # noqa: E402
from rwkv_app.ui.builder import CSS, THEME  # noqa: E402

from .app_helpers import tiny_playground  # noqa: E402
from .app_helpers import free_port  # noqa: E402

SHOTS = Path(__file__).resolve().parents[1] / "docs" / "screenshots"
DEMO_MODEL = Path(__file__).resolve().parents[1] / "demo-model"
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"]
TIMEOUT_MS = 60_000


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    if not shutil.which(CHROMIUM) and not Path(CHROMIUM).exists():
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium)")
    playground = tiny_playground(DEMO_MODEL)
    demo = build_app(playground, "Running the bundled demo model (4.5M parameters, trained on Jane Austen).")
    demo.queue()
    _, url, _ = demo.launch(server_name="127.0.0.1", server_port=free_port(), prevent_thread_lock=True, quiet=True,
                            theme=THEME, css=CSS)
    SHOTS.mkdir(parents=True, exist_ok=True)
    with playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        tab = browser.new_page(viewport={"width": 1280, "height": 900})
        tab.set_default_timeout(TIMEOUT_MS)
        tab.goto(url)
        tab.wait_for_selector("#chat-message textarea")
        yield tab
        browser.close()
    demo.close()
    playground.close()


def open_tab(page, name):
    page.get_by_role("tab", name=name).click()


def wait_idle(page):
    """Every component's status tracker hidden again: the event and its redraw are done."""
    page.wait_for_timeout(300)
    page.wait_for_function("() => [...document.querySelectorAll('.wrap.default')].every(e => e.classList.contains('hide'))"
                           " && !document.querySelector('.generating')")


def test_chat(page):
    open_tab(page, "Chat")
    page.fill("#chat-message textarea", "Hello, who are you?")
    page.click("#chat-send")
    page.wait_for_selector("#chatbot .bot", timeout=TIMEOUT_MS)
    wait_idle(page)
    page.fill("#chat-message textarea", "Tell me more.")
    page.click("#chat-send")
    page.wait_for_function("() => document.querySelectorAll('#chatbot .user').length >= 2")
    wait_idle(page)
    page.screenshot(path=str(SHOTS / "chat.png"))
    assert "Tell me more." in page.inner_text("#chatbot")


def test_tree_continue_from_an_earlier_node(page):
    open_tab(page, "Playground")
    page.fill("#pg-prompt textarea", "It was a fine morning, and")
    page.click("#pg-generate")
    wait_idle(page)
    page.wait_for_function("() => document.querySelector('#pg-output textarea').value.length > 0")
    page.locator("#pg-tree .tn", has_text="It was a fine morning, and").first.locator(".snip").click()
    wait_idle(page)
    page.click("#pg-continue")
    wait_idle(page)
    # two branches under the prompt node (the row count alone is reached early: the chat test's turns are rows too)
    page.wait_for_function("() => [...document.querySelectorAll('#pg-tree .tn')]"
                           ".filter(row => row.innerText.includes('generated')).length >= 2")
    page.locator("#pg-tokens .token").nth(2).click()
    wait_idle(page)
    page.screenshot(path=str(SHOTS / "playground.png"), full_page=True)


def test_compare(page):
    open_tab(page, "Compare")
    page.click("#cmp-run")
    wait_idle(page)
    page.wait_for_function("() => [0, 1, 2].every(i => document.querySelector(`#cmp-text-${i} textarea`).value)")
    page.screenshot(path=str(SHOTS / "compare.png"), full_page=True)


def test_state_plots(page):
    open_tab(page, "State")
    page.click("#st-show")
    page.wait_for_selector("#st-heatmap svg rect")
    wait_idle(page)
    page.wait_for_timeout(1000)  # the Vega plots draw after the data arrives
    page.screenshot(path=str(SHOTS / "state.png"), full_page=True)
    assert page.locator("#st-norms canvas, #st-norms svg").count() >= 1
