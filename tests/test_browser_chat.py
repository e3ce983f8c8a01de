"""The Chat tab as a visitor meets it, in headless Chromium on the bundled demo model (issue 13, items 1-5, and
the chat parts of 14 and 16): Enter sends, typed text survives a streaming reply, the trash button starts a new
conversation, "‹ k/n ›" branches on the messages with the Chatbot's own retry/undo/edit, the knobs show the
preset, input errors are warnings, and the phone layout. Writes docs/screenshots/chat.png and mobile-chat.png."""
from pathlib import Path

import pytest

from .browser_helpers import toasts, wait_toast
from .test_browser import ARGS, CHROMIUM, DEMO_MODEL, SHOTS, TIMEOUT_MS, wait_idle

pytestmark = [pytest.mark.slow, pytest.mark.browser]
playwright_api = pytest.importorskip("playwright.sync_api")

from rwkv_app.services.service import PlaygroundOptions  # noqa: E402
from rwkv_app.ui import build_app  # noqa: E402
from rwkv_app.ui.builder import CSS, THEME  # noqa: E402

from .app_helpers import free_port, tiny_playground  # noqa: E402

BOX = "#chat-message textarea"


@pytest.fixture(scope="module")
def served():
    if not Path(CHROMIUM).exists():
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium)")
    playground = tiny_playground(DEMO_MODEL)
    demo = build_app(playground, "Running the bundled demo model (4.5M parameters, trained on Jane Austen).")
    demo.queue()
    _, url, _ = demo.launch(server_name="127.0.0.1", server_port=free_port(), prevent_thread_lock=True, quiet=True,
                            theme=THEME, css=CSS)
    SHOTS.mkdir(parents=True, exist_ok=True)
    with playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield browser, url
        browser.close()
    demo.close()
    playground.close()


@pytest.fixture
def page(served):
    """A fresh visitor (own browser session, own conversation) at 1366x900."""
    browser, url = served
    context = browser.new_context(viewport={"width": 1366, "height": 900})
    tab = context.new_page()
    tab.set_default_timeout(TIMEOUT_MS)
    tab.goto(url)
    tab.wait_for_selector(BOX)
    yield tab
    assert tab.locator(".toast-body.error").count() == 0, "an error toast was shown"
    context.close()


def users(page):
    return [t.strip() for t in page.locator("#chatbot [data-testid='user']").all_inner_texts()]


def bots(page):
    return [t.strip() for t in page.locator("#chatbot [data-testid='bot']").all_inner_texts()]


def send(page, text):
    page.fill(BOX, text)
    page.press(BOX, "Enter")
    page.wait_for_function("(n) => document.querySelectorAll('#chatbot [data-testid=\"user\"]').length >= n",
                           arg=len(users(page)) + 1)
    wait_idle(page)


def test_enter_sends_and_shift_enter_adds_a_line(page):
    assert "Enter sends" in page.get_attribute(BOX, "placeholder")
    page.fill(BOX, "first line")
    page.press(BOX, "Shift+Enter")
    page.type(BOX, "second line")
    page.wait_for_timeout(500)
    assert page.input_value(BOX) == "first line\nsecond line" and users(page) == []
    page.press(BOX, "Enter")
    page.wait_for_function("() => document.querySelectorAll('#chatbot [data-testid=\"bot\"]').length >= 1")
    wait_idle(page)
    assert users(page) == ["first line\nsecond line"] and page.input_value(BOX) == ""


def test_text_typed_while_a_reply_streams_is_never_lost(page):
    page.fill(BOX, "Tell me a long story.")
    page.press(BOX, "Enter")
    page.wait_for_selector("#chatbot .generating, #chatbot [data-testid='bot']")
    page.fill(BOX, "And then?")  # typed while the reply streams (or just after): it stays in the box
    page.click("#chat-send")  # Send is greyed while the reply is written: the click lands once it is back
    page.wait_for_function("() => [...document.querySelectorAll('#chatbot [data-testid=\"user\"]')]"
                           ".some(e => e.innerText.includes('And then?'))")
    wait_idle(page)
    assert users(page) == ["Tell me a long story.", "And then?"] and len(bots(page)) == 2
    page.fill(BOX, "Once more.")
    page.press(BOX, "Enter")
    page.wait_for_function("() => document.querySelector('#chat-message textarea').value === ''")
    page.fill(BOX, "Not sent yet")  # typed while the third reply streams, not sent: still there at its end
    page.wait_for_function("() => document.querySelectorAll('#chatbot [data-testid=\"user\"]').length === 3")
    wait_idle(page)
    assert page.input_value(BOX) == "Not sent yet"


def test_a_double_click_on_send_sends_once_and_an_empty_send_still_warns(page):
    """Before, the second click of a double click ran once the reply ended, on the box the first had emptied: an
    "empty message" warning after a message that was sent. Send is one event that drops a click while it runs."""
    page.fill(BOX, "Hello twice")
    page.dblclick("#chat-send")
    page.wait_for_function("() => document.querySelectorAll('#chatbot [data-testid=\"bot\"]').length >= 1")
    wait_idle(page)
    page.wait_for_function("() => !document.querySelector('#chat-send').disabled")  # Send is back once it is done
    wait_idle(page)
    assert users(page) == ["Hello twice"] and toasts(page) == [] and page.input_value(BOX) == ""
    page.click("#chat-send")  # a genuine empty Send: the warning, nothing sent
    wait_toast(page, "message is empty")
    assert users(page) == ["Hello twice"]
    page.locator("#chatbot button[aria-label='Retry']").click()  # the Chatbot's own buttons work as before
    page.wait_for_function("() => document.querySelector('#chatbot .branch-nav .branch-count')?.innerText === '2/2'")
    wait_idle(page)
    page.locator("#chatbot button[aria-label='Undo']").click()
    page.wait_for_function("() => document.querySelectorAll('#chatbot [data-testid=\"user\"]').length === 0")
    wait_idle(page)
    assert page.input_value(BOX) == "Hello twice"  # Undo puts the message back in the box
    page.screenshot(path=str(SHOTS / "chat-double-click.png"))


def test_clear_button_starts_a_new_conversation(page):
    send(page, "Remember the word alpha.")
    page.click("#chatbot button[aria-label='Clear']")
    wait_idle(page)
    assert users(page) == []
    send(page, "Now something else.")
    assert users(page) == ["Now something else."]  # the old conversation did not come back


def test_branches_on_the_messages(page):
    send(page, "Good morning!")
    page.locator("#chatbot button[aria-label='Retry']").click()
    wait_idle(page)
    page.wait_for_selector("#chatbot .branch-nav")
    assert page.inner_text("#chatbot .branch-nav .branch-count") == "2/2"
    second = bots(page)[0]
    page.click("#chatbot .branch-nav .branch-previous")
    wait_idle(page)
    page.wait_for_function("() => document.querySelector('#chatbot .branch-nav .branch-count').innerText === '1/2'")
    page.click("#chatbot .branch-nav .branch-next")
    wait_idle(page)
    assert bots(page)[0] == second
    # edit the user message: the box is prefilled, saving it makes a new branch with its own reply
    page.locator("#chatbot button[aria-label='Edit']").first.click()
    editor = page.locator("#chatbot textarea").first
    assert editor.input_value() == "Good morning!"
    editor.fill("Good evening!")
    page.locator("#chatbot button[aria-label='Submit']").first.click()
    page.wait_for_function("() => document.querySelectorAll('#chatbot [data-testid=\"bot\"]').length === 1")
    wait_idle(page)
    assert users(page) == ["Good evening!"] and bots(page)[0]
    assert page.locator("#chatbot .branch-nav .branch-count").first.inner_text() == "2/2"
    # undo a turn, then switch branches: the undone turn stays undone
    send(page, "What a day.")
    page.locator("#chatbot button[aria-label='Undo']").click()
    wait_idle(page)
    assert users(page) == ["Good evening!"]
    assert page.input_value("#chat-message textarea") == "What a day."  # back in the box, as ChatInterface does
    page.locator("#chatbot .branch-nav .branch-previous").first.click()
    wait_idle(page)
    page.locator("#chatbot .branch-nav .branch-next").first.click()
    wait_idle(page)
    assert users(page) == ["Good evening!"]
    page.screenshot(path=str(SHOTS / "chat.png"))


def test_knobs_show_the_preset_that_is_used(page):
    page.click("#chat-sampling button, #chat-sampling .label-wrap")
    top_p = page.locator("#chat-top-p input[type='number']")
    assert float(top_p.input_value()) == 0.3  # the "chat" preset, selected on first visit
    assert float(page.locator("#chat-presence input[type='number']").input_value()) == 0.5
    page.locator("#chat-preset input").click()
    page.get_by_role("option", name="balanced").click()
    page.wait_for_function("() => document.querySelector('#chat-top-p input[type=number]').value === '0.95'")
    assert float(page.locator("#chat-temperature input[type='number']").input_value()) == 0.8
    assert float(page.locator("#chat-top-k input[type='number']").input_value()) == 40


def test_an_empty_message_is_a_warning_and_changes_nothing(page):
    send(page, "Hello")
    before = users(page)
    page.fill(BOX, "   ")
    page.press(BOX, "Enter")
    page.wait_for_selector(".toast-body.warning")
    assert users(page) == before and page.locator("#chatbot .error").count() == 0


def test_a_paste_over_the_limit_is_refused_whole_and_kept(page):
    """The box had max_length: a longer paste was cut to the limit by the browser and sent."""
    limit = PlaygroundOptions().max_prompt_chars  # tiny_playground keeps the default
    page.fill(BOX, "b" * (limit + 5))
    page.press(BOX, "Enter")
    page.wait_for_function("t => [...document.querySelectorAll('.toast-body')].some(e => e.innerText.includes(t))",
                           arg=f"at most {limit:,}")
    assert len(page.input_value(BOX)) == limit + 5 and users(page) == []


def test_phone_layout_puts_the_input_on_the_first_screen(served):
    browser, url = served
    context = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    tab = context.new_page()
    tab.set_default_timeout(TIMEOUT_MS)
    tab.goto(url)
    tab.wait_for_selector(BOX)
    box, send_button = tab.locator(BOX).bounding_box(), tab.locator("#chat-send").bounding_box()
    chatbot = tab.locator("#chatbot").bounding_box()
    assert box["y"] + box["height"] <= 844 and send_button["y"] + send_button["height"] <= 844
    assert box["y"] < chatbot["y"]  # above the conversation, reachable at once
    send(tab, "Hello from a phone")
    tab.screenshot(path=str(SHOTS / "mobile-chat.png"))
    context.close()
