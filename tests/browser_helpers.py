"""Shared by the browser tests: the app on the bundled demo model in headless Chromium (Debian's package)."""
import os
import shutil
from contextlib import contextmanager
from pathlib import Path

import pytest

from rwkv_app.ui import build_app
from rwkv_app.ui.builder import CSS, THEME

from .app_helpers import free_port, tiny_playground

ROOT = Path(__file__).resolve().parents[1]
SHOTS = ROOT / "docs" / "screenshots"
DEMO_MODEL = ROOT / "demo-model"
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"]
TIMEOUT_MS = int(os.environ.get("BROWSER_TIMEOUT_MS", "60000"))  # shorter to see quickly what fails
BANNER = "Running the bundled demo model (4.5M parameters, trained on Jane Austen)."


@contextmanager
def served_app(model=DEMO_MODEL, banner=BANNER, store=None, **options):
    """(url, playground) of the app on `model` (default: the demo model), launched in this process on a free port;
    `store`: where conversations are saved (None: not saved)."""
    if not shutil.which(CHROMIUM) and not Path(CHROMIUM).exists():
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium)")
    playground = tiny_playground(model, **options)
    playground.store = store
    demo = build_app(playground, banner)
    demo.queue(default_concurrency_limit=4)
    _, url, _ = demo.launch(server_name="127.0.0.1", server_port=free_port(), prevent_thread_lock=True, quiet=True,
                            theme=THEME, css=CSS)
    try:
        yield url, playground
    finally:
        demo.close()
        playground.close()


@contextmanager
def chromium():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            yield browser
        finally:
            browser.close()


def open_page(browser, url, width=1366, height=900):
    page = browser.new_page(viewport={"width": width, "height": height})
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(url)
    page.wait_for_selector("#chat-message textarea")
    return page


def open_tab(page, name):
    tab = page.get_by_role("tab", name=name)
    if not tab.count():  # a narrow screen: Gradio moves the tabs that do not fit into its "More tabs" menu
        page.click("button[aria-label='More tabs']")
        page.locator(".overflow-dropdown button", has_text=name).click()
        return
    tab.click()


def wait_idle(page):
    """Every event and its redraw done: no pending status tracker, nothing generating."""
    page.wait_for_timeout(300)
    page.wait_for_function("() => [...document.querySelectorAll('.wrap.default')].every(e => e.classList.contains('hide'))"
                           " && !document.querySelector('.generating')")


def toasts(page) -> list[str]:
    """The text of every toast shown now (Gradio's gr.Info/gr.Warning/gr.Error messages)."""
    return page.locator(".toast-body").all_inner_texts()


def wait_toast(page, text):
    page.wait_for_function("t => [...document.querySelectorAll('.toast-body')].some(e => e.innerText.includes(t))",
                           arg=text)


def error_badges(page) -> int:
    """Gradio's "Error" badges drawn over outputs of a failed event (visible ones only): the status tracker's error
    label, whatever the tracker's variant (a full-size one over a Chatbot, a translucent one over a Markdown); a tracker
    hidden by show_progress="hidden" keeps an invisible label, not counted."""
    return page.evaluate("() => [...document.querySelectorAll('[data-testid=status-tracker] .error')].filter(e => {"
                         " const t = e.closest('[data-testid=status-tracker]');"  # show_progress hidden: unseen
                         " return e.offsetParent && e.innerText.trim() === 'Error' && !t.classList.contains('hide')"
                         " && getComputedStyle(t).opacity !== '0'; }).length")


def tree_html(page) -> str:
    return page.eval_on_selector("#pg-tree", "e => e.innerHTML")


def act(page, selector):
    """Click an action that changes the session tree, and wait until the tree panel has been redrawn."""
    before = tree_html(page)
    page.click(selector)
    page.wait_for_function("h => document.querySelector('#pg-tree').innerHTML !== h", arg=before)
    wait_idle(page)


def generate(page, prompt, seed=""):
    open_tab(page, "Playground")
    page.fill("#pg-prompt textarea", prompt)
    page.get_by_label("Seed (empty: random)").fill(seed)  # by its label: the same on every version of the tab
    act(page, "#pg-generate")


def browser_session(playground):
    """The UserSession of the (one) browser session the test drives."""
    sessions = [s for s in playground._clients.values() if not s.closed]
    assert len(sessions) == 1
    return sessions[0]

