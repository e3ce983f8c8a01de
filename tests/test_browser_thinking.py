"""G1 thinking in the browser, on a tiny RWKV-7 with the World tokenizer: a reply's <think>...</think> shows as a
folded thought above the answer (its raw text stays in the tree), and with "Think first" the streaming reply opens
a pending thought. The think reply is forced through the tree API and arrives by the Session tab's import.
Writes docs/screenshots/chat-thinking.png."""
import pytest

pytestmark = [pytest.mark.slow, pytest.mark.browser]
pytest.importorskip("playwright.sync_api")

from rwkv_app.state_tree import ChatSession, SessionTree, export_session  # noqa: E402
from rwkv_app.state_tree.nodes import BOT  # noqa: E402
from rwkv_app.tokenizers.tokenizer_select import tokenizer_in  # noqa: E402
from rwkv_app.ui import build_app  # noqa: E402
from rwkv_app.ui.builder import CSS, THEME  # noqa: E402

from .app_helpers import free_port, tiny_playground  # noqa: E402
from .browser_helpers import (SHOTS, browser_session, open_tab, wait_idle)  # noqa: E402
from .rwkv7_helpers import save_pth, tiny_model7  # noqa: E402
from .test_app_rwkv7 import WORLD  # noqa: E402
from .test_browser_personas import upload  # noqa: E402

REPLY = " <think>\nThey greet me, so I greet them back.\n</think>\nHello there!"


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    folder = tmp_path_factory.mktemp("thinking")
    model = tiny_model7(seed=5, **WORLD)
    pth = save_pth(model, folder / "rwkv7-tiny.pth")
    playground = tiny_playground(pth)
    demo = build_app(playground)
    demo.queue()
    _, url, _ = demo.launch(server_name="127.0.0.1", server_port=free_port(), prevent_thread_lock=True, quiet=True,
                            theme=THEME, css=CSS)
    try:
        yield url, playground, model, tokenizer_in(pth), folder
    finally:
        demo.close()
        playground.close()


def session_file(app, reply=REPLY):
    """A conversation whose reply thinks, forced through the tree API, saved as a session file."""
    _, playground, model, tokenizer, folder = app
    tree = SessionTree(model, tokenizer, model_id="rwkv7-tiny.pth")
    chat = ChatSession(tree, user="User", bot="Assistant")
    chat.current = chat.add_user(chat.current, "Hi!").node
    chat.current = tree.extend_tokens(chat.current, tokenizer.encode(reply + "\n\n"), BOT, reply).node
    path = folder / f"thinking-{len(reply)}.zip"
    export_session(tree, path)
    return path


def thoughts(page) -> list[dict]:
    """Each thought the Chatbot shows: its title, whether its body is visible, and the body's text."""
    return page.evaluate("""() => [...document.querySelectorAll('#chatbot .thought-group')].map(g => {
        const body = g.querySelector(':scope > div:not([role=button])');
        return {title: g.querySelector('[role=button]').innerText, text: body ? body.innerText : '',
                open: !!body && body.offsetParent !== null && body.innerText.trim() !== ''};
    })""")


def resume(page, path):
    open_tab(page, "Session")
    upload(page, "session-upload", path)
    page.click("#session-load")
    page.wait_for_function("() => document.querySelector('#session-status').innerText.includes('Resumed')")
    open_tab(page, "Chat")


def test_a_think_block_shows_folded_above_the_answer(app, page):
    resume(page, session_file(app))
    page.wait_for_selector("#chatbot .thought-group")
    wait_idle(page)
    bots = page.locator("#chatbot [data-testid='bot']").all_inner_texts()
    assert any("Hello there!" in text for text in bots)
    shown = thoughts(page)
    assert len(shown) == 1 and "Reasoning" in shown[0]["title"] and not shown[0]["open"]
    assert "<think>" not in page.inner_text("#chatbot")
    page.screenshot(path=str(SHOTS / "chat-thinking.png"))
    page.locator("#chatbot .thought-group [role=button]").click()
    page.wait_for_function("() => document.querySelector('#chatbot .thought-group').innerText.includes('They greet')")
    assert "They greet me" in thoughts(page)[0]["text"]
    session = browser_session(app[1])
    assert "</think>\nHello there!" in session.tree.path_text(session.chat.current)  # the raw text in the tree


def test_an_open_think_block_shows_as_a_pending_thought(app, page):
    """What a streaming reply looks like before its </think>: the thought open, its text shown."""
    resume(page, session_file(app, " <think>\nThey greet me, so"))
    page.wait_for_selector("#chatbot .thought-group")
    wait_idle(page)
    shown = thoughts(page)
    assert len(shown) == 1 and shown[0]["open"] and "They greet me, so" in shown[0]["text"]
    assert page.locator("#chatbot .thought-group .loading-spinner").count() == 1


def test_think_first_opens_each_reply_with_the_model_cards_prefill(app, page):
    open_tab(page, "Chat")
    page.get_by_text("Conversation", exact=True).click()
    page.locator("#chat-thinking").get_by_text("Think first").click()
    assert page.get_by_label("Bot name").input_value() == "Assistant"  # G1's name for itself, from the family
    page.fill("#chat-message textarea", "Hello")
    page.press("#chat-message textarea", "Enter")
    page.wait_for_selector("#chatbot [data-testid='bot']")
    wait_idle(page)
    session = browser_session(app[1])
    assert session.tree.path_text(session.chat.current).count("Assistant: <think") == 1
    assert session.chat.messages()[-1]["content"].startswith("<think")


def test_an_imported_chat_shows_its_settings_and_thinking_in_the_panel(app, page):
    _, playground, model, tokenizer, folder = app
    tree = SessionTree(model, tokenizer, model_id="rwkv7-tiny.pth")
    chat = ChatSession(tree, user="Darcy", bot="Elizabeth", system="You are Elizabeth Bennet.", thinking="no_think")
    chat.current = chat.add_user(chat.current, "Good morning").node
    export_session(tree, folder / "no-think.zip")
    resume(page, folder / "no-think.zip")
    page.get_by_text("Conversation", exact=True).click()
    page.wait_for_selector("#chat-user textarea")
    page.wait_for_function("() => document.querySelector('#chat-user textarea').value === 'Darcy'")
    assert page.locator("#chat-system textarea").input_value() == "You are Elizabeth Bennet."
    assert page.locator("#chat-bot textarea").input_value() == "Elizabeth"
    assert page.locator("#chat-thinking").get_by_label("No thinking").is_checked()  # RWKV-7: shown, as saved
