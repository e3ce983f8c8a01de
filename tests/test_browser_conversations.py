"""The Conversations list in headless Chromium on the bundled demo model, with the SQLite store in a temporary
folder (issue 20): a chat shows up in the list; reloading the page brings the conversation back (the visitor key
is kept in the browser); New starts an empty one and Open brings the old one back; another browser (another
visitor) sees none of it. Writes docs/screenshots/conversations.png and mobile-conversations.png."""
import pytest

from rwkv_app.services.stores import open_store

from .browser_helpers import SHOTS, chromium, served_app, wait_idle

pytestmark = [pytest.mark.slow, pytest.mark.browser]
pytest.importorskip("playwright.sync_api")

BOX = "#chat-message textarea"


def chat_list(page):
    """The labels of the Chat tab's Conversations list."""
    return [t.strip() for t in page.locator(".conv-list").first.locator("label").all_inner_texts()]


def messages(page):
    return [t.strip() for t in page.locator("#chatbot [data-testid='user']").all_inner_texts()]


def send(page, text):
    page.fill(BOX, text)
    page.click("#chat-send")
    page.wait_for_function("() => document.querySelectorAll('#chatbot [data-testid=\"bot\"]').length > 0")
    wait_idle(page)


def test_a_reload_brings_the_conversation_back_and_the_list_opens_it(tmp_path):
    store = open_store(str(tmp_path / "data"), ttl_s=86400.0, quota_bytes=2 ** 26)
    with served_app(store=store) as (url, playground), chromium() as browser:
        context = browser.new_context(viewport={"width": 1366, "height": 900})
        page = context.new_page()
        page.goto(url)
        page.wait_for_selector(BOX)
        wait_idle(page)
        send(page, "Good morning, Miss Bennet")
        page.wait_for_function("() => [...document.querySelectorAll('.conv-list label')].some(l => "
                               "l.innerText.includes('Good morning, Miss Bennet'))")
        assert chat_list(page)[0].startswith("▶ Good morning, Miss Bennet · demo ·")
        bot_before = page.locator("#chatbot [data-testid='bot']").all_inner_texts()

        page.reload()  # the same browser: the key in localStorage finds the conversation again
        page.wait_for_selector(BOX)
        page.wait_for_function("() => document.querySelectorAll('#chatbot [data-testid=\"user\"]').length > 0")
        wait_idle(page)
        assert messages(page) == ["Good morning, Miss Bennet"]
        assert page.locator("#chatbot [data-testid='bot']").all_inner_texts() == bot_before
        page.screenshot(path=str(SHOTS / "conversations.png"), full_page=True)

        page.locator(".conv-new").first.click()  # New: an empty chat; the old one stays in the list
        page.wait_for_function("() => document.querySelectorAll('#chatbot [data-testid=\"user\"]').length === 0")
        wait_idle(page)
        assert len(chat_list(page)) == 1 and not chat_list(page)[0].startswith("▶")
        page.locator(".conv-list").first.locator("label").first.click()
        page.locator(".conv-open").first.click()
        page.wait_for_function("() => document.querySelectorAll('#chatbot [data-testid=\"user\"]').length === 1")
        wait_idle(page)
        assert messages(page) == ["Good morning, Miss Bennet"] and chat_list(page)[0].startswith("▶")

        stranger = browser.new_context(viewport={"width": 390, "height": 844})  # another browser: another visitor
        other = stranger.new_page()
        other.goto(url)
        other.wait_for_selector(BOX)
        wait_idle(other)
        assert chat_list(other) == [] and messages(other) == []
        other.screenshot(path=str(SHOTS / "mobile-conversations.png"), full_page=True)
        assert page.locator(".toast-body.error").count() == 0 and other.locator(".toast-body.error").count() == 0
        context.close(), stranger.close()
