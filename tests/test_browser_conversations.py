"""The Conversations list in headless Chromium on the bundled demo model, with the SQLite store in a temporary
folder (issue 20): a chat shows up in the list; reloading the page brings the conversation back (the visitor key
is kept in the browser); New starts an empty one and Open brings the old one back; another browser (another
visitor) sees none of it; a reload after opening an older conversation reopens that one. Writes
docs/screenshots/conversations.png and mobile-conversations.png (and reopened.png, mobile-reopened.png into the
reopen test's temporary folder)."""
import contextlib
from pathlib import Path

import pytest

from rwkv_app.services.stores import open_store

from .browser_helpers import SHOTS, act, browser_session, chromium, generate, open_tab, served_app, wait_idle

pytestmark = [pytest.mark.slow, pytest.mark.browser]
pytest.importorskip("playwright.sync_api")

from .test_browser_files import upload  # noqa: E402

BOX = "#chat-message textarea"


DESKTOP, PHONE = {"width": 1366, "height": 900}, {"width": 390, "height": 844}


@contextlib.contextmanager
def visitor_page(tmp_path, viewport=DESKTOP):
    """(page, playground): the app on a SQLite store in tmp_path, one visitor's page at `viewport`, ready."""
    store = open_store(str(tmp_path / "data"), ttl_s=86400.0, quota_bytes=2 ** 26)
    with served_app(store=store) as (url, playground), chromium() as browser:
        page = browser.new_context(viewport=viewport).new_page()
        page.goto(url)
        page.wait_for_selector(BOX)
        wait_idle(page)
        yield page, playground


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
        assert chat_list(page)[0].startswith("▶ Good morning, Miss Bennet · demo-rwkv4 ·")  # RWKV-4: not `demo`
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


def panel(page) -> dict:
    """The Chat tab's Conversation panel as shown (its accordion opened first)."""
    if not page.locator("#chat-system").is_visible():
        page.get_by_text("Conversation", exact=True).click()
        page.wait_for_selector("#chat-system textarea")
    return {"system": page.locator("#chat-system textarea").input_value(),
            "user": page.locator("#chat-user textarea").input_value(),
            "bot": page.locator("#chat-bot textarea").input_value(),
            "thinking": page.locator("#chat-thinking").is_visible()}


def test_the_conversation_panel_shows_the_open_conversations_settings(tmp_path):
    """After a reload, New, and Open: the panel shows the open chat's system prompt and names; RWKV-4 (the demo
    model) has no thinking format, so no Thinking choice."""
    darcy = {"system": "You are Elizabeth Bennet.", "user": "Darcy", "bot": "Elizabeth", "thinking": False}
    fresh = {"system": "", "user": "User", "bot": "Bot", "thinking": False}
    with visitor_page(tmp_path) as (page, _):
        assert panel(page) == fresh
        for field, value in (("system", darcy["system"]), ("user", "Darcy"), ("bot", "Elizabeth")):
            page.fill(f"#chat-{field} textarea", value)
        page.get_by_role("button", name="New chat with these settings").click()
        wait_idle(page)
        send(page, "Good morning")
        page.reload()
        page.wait_for_selector(BOX)
        page.wait_for_function("() => document.querySelectorAll('#chatbot [data-testid=\"user\"]').length > 0")
        wait_idle(page)
        assert panel(page) == darcy
        page.locator(".conv-new").first.click()
        wait_idle(page)
        assert panel(page) == fresh
        page.locator(".conv-list").first.locator("label").first.click()
        page.locator(".conv-open").first.click()
        page.wait_for_function("() => document.querySelectorAll('#chatbot [data-testid=\"user\"]').length === 1")
        wait_idle(page)
        assert panel(page) == darcy
        assert page.locator(".toast-body.error").count() == 0


def test_deleting_a_conversation_or_all_data_asks_first(tmp_path):
    with visitor_page(tmp_path) as (page, _):
        for text in ("First letter", "Second letter"):
            send(page, text)
            page.locator(".conv-new").first.click()
            wait_idle(page)
        assert len(chat_list(page)) == 2
        page.locator(".conv-list").first.locator("label").first.click()
        page.locator(".conv-delete").first.click()  # asks; nothing is deleted yet
        page.locator(".conv-delete-confirm").first.wait_for(state="visible")
        wait_idle(page)
        assert len(chat_list(page)) == 2
        page.locator(".conv-delete-no").first.click()  # Keep it
        page.locator(".conv-delete-confirm").first.wait_for(state="hidden")
        assert len(chat_list(page)) == 2
        page.locator(".conv-delete").first.click()
        page.locator(".conv-delete-yes").first.click()
        page.wait_for_function("() => document.querySelector('.conv-list').querySelectorAll('label').length === 1")
        wait_idle(page)
        assert not page.locator(".conv-delete-confirm").first.is_visible()
        page.get_by_text("Delete all my data", exact=True).first.click()  # the accordion
        page.locator(".conv-wipe").first.click()
        page.locator(".conv-wipe-confirm").first.wait_for(state="visible")
        wait_idle(page)
        assert len(chat_list(page)) == 1
        page.locator(".conv-wipe-yes").first.click()
        page.wait_for_function("() => document.querySelector('.conv-list').querySelectorAll('label').length === 0")
        wait_idle(page)
        assert "Deleted 1 conversation." in page.locator(".conv-status").first.inner_text()
        assert page.locator(".toast-body.error").count() == 0


MARKED = ("() => [...document.querySelectorAll('.conv-list')].map(l => "
          "[...l.querySelectorAll('input:checked')].map(i => i.value))")


def marked(page, expected=None) -> list[list[str]]:
    """Per Conversations list (Chat's, then the Playground's once its tab has been opened): the conversation ids
    whose radio is checked; with `expected`, once they are that (the list is redrawn after the action's redraw) or
    as they are when the wait runs out."""
    if expected is not None:
        try:
            page.wait_for_function(f"e => JSON.stringify(({MARKED})()) === JSON.stringify(e)", arg=expected)
        except Exception:  # noqa: BLE001 (the assertion that follows shows what the lists hold)
            pass
    return page.evaluate(MARKED)


def open_one(playground) -> str:
    """The id of the conversation the (one) browser session is in."""
    return browser_session(playground).saved.id


def both(page, playground, tab) -> tuple:
    """Open `tab`: (the open conversation, what its list marks, once that is it or the wait runs out). The other
    tab's list is put right when that tab is opened."""
    open_tab(page, tab)
    wait_idle(page)
    index = ["Chat", "Playground"].index(tab)
    expected = [open_one(playground)]
    try:
        page.wait_for_function(f"([i, e]) => JSON.stringify(({MARKED})()[i]) === JSON.stringify(e)",
                               arg=[index, expected])
    except Exception:  # noqa: BLE001 (the assertion that follows shows what the list holds)
        pass
    return expected, marked(page)[index]


def resume_export(page, playground, folder) -> None:
    """Export the open conversation and resume the file from the Session tab: a new, imported conversation."""
    saved = browser_session(playground).export(folder)
    open_tab(page, "Session")
    upload(page, Path(saved))
    page.click("#session-load")
    page.wait_for_function("() => document.querySelector('#session-status').innerText.includes('Resumed')")
    wait_idle(page)


def test_the_list_selects_the_open_conversation_on_both_tabs(tmp_path):
    """Chat, New, Open, an import, each followed by opening the other tab: each list's radio marks the conversation
    the visitor is in. Before, the Playground's list (first drawn when its tab opened) showed none selected, or the
    one it was first drawn with: Gradio 6.31 drops a Radio's value sent while its tab is closed."""
    with visitor_page(tmp_path) as (page, playground):
        send(page, "Good morning, Miss Bennet")
        assert marked(page, [[open_one(playground)]]) == [[open_one(playground)]]
        first = open_one(playground)
        expected, shown = both(page, playground, "Playground")
        assert shown == expected
        open_tab(page, "Chat")
        page.locator(".conv-new").first.click()  # New: nothing saved yet, nothing selected
        wait_idle(page)
        send(page, "A second letter")
        assert open_one(playground) != first
        expected, shown = both(page, playground, "Playground")
        assert shown == expected
        open_tab(page, "Chat")
        page.wait_for_function("() => document.querySelector('.conv-list').innerText.includes('▶ A second letter')")
        wait_idle(page)  # the list redrawn after the chat turn: a pick made before it would be undone by it
        page.locator(".conv-list").first.locator("label", has_text="Miss Bennet").click()  # Open the first one
        page.wait_for_function("() => document.querySelector('.conv-list label.selected').innerText.includes('Bennet')")
        page.locator(".conv-open").first.click()
        # its status tracker is hidden, so wait_idle alone can pass before a busy server has run the event
        page.wait_for_function("() => document.querySelector('.conv-status').innerText.includes('Opened')")
        wait_idle(page)
        assert open_one(playground) == first, page.locator(".conv-status").first.inner_text()
        expected, shown = both(page, playground, "Playground")
        assert shown == expected
        page.screenshot(path=str(SHOTS / "conversations-selected.png"), full_page=True)

        resume_export(page, playground, tmp_path / "export")
        assert open_one(playground) not in (first, None)
        for tab in ("Chat", "Playground"):
            expected, shown = both(page, playground, tab)
            assert shown == expected, tab
        page.set_viewport_size({"width": 390, "height": 844})  # the same list on a phone
        page.locator(".conv-list").nth(1).scroll_into_view_if_needed()
        page.screenshot(path=str(SHOTS / "mobile-conversations-selected.png"))
        assert page.locator(".toast-body.error").count() == 0


def test_new_inside_the_playground_tab_clears_its_lists_selection(tmp_path):
    with visitor_page(tmp_path) as (page, _):
        send(page, "Good morning")  # sent while the Playground's list is not drawn yet
        generate(page, "It was a fine morning")  # its tab opens: the list is drawn, then redrawn
        page.locator(".conv-new").nth(1).click()
        wait_idle(page)
        assert marked(page, [[], []]) == [[], []]


def reloaded(page) -> None:
    """After page.reload(): the page ready and the visitor's conversation reopened in the Chat tab."""
    page.wait_for_selector(BOX)
    page.wait_for_function("() => document.querySelectorAll('#chatbot [data-testid=\"user\"]').length > 0")
    wait_idle(page)


@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["desktop", "phone"])
def test_a_reload_reopens_the_conversation_last_opened_not_the_last_saved(tmp_path, viewport):
    """A visitor opens an older conversation from the list to read it, generates nothing, and reloads: the same
    conversation is open again (before: the one saved last), marked and first in the list, also after a second
    reload."""
    with visitor_page(tmp_path, viewport) as (page, playground):
        send(page, "First letter")
        first = open_one(playground)
        page.locator(".conv-new").first.click()
        page.wait_for_function("() => document.querySelectorAll('#chatbot [data-testid=\"user\"]').length === 0")
        wait_idle(page)
        send(page, "Second letter")
        page.wait_for_function("() => document.querySelector('.conv-list').innerText.includes('▶ Second letter')")
        wait_idle(page)
        assert [label.split(" · ")[0] for label in chat_list(page)] == ["▶ Second letter", "First letter"]
        page.locator(".conv-list").first.locator("label", has_text="First letter").click()
        page.wait_for_function("() => document.querySelector('.conv-list label.selected').innerText.includes('First')")
        page.locator(".conv-open").first.click()  # opened to read: nothing generated, nothing saved
        page.wait_for_function("() => document.querySelector('.conv-list').innerText.includes('▶ First letter')")
        wait_idle(page)
        assert messages(page) == ["First letter"] and open_one(playground) == first
        for _ in range(2):
            page.reload()
            reloaded(page)
            assert messages(page) == ["First letter"]
            assert [label.split(" · ")[0] for label in chat_list(page)] == ["▶ First letter", "Second letter"]
            assert marked(page, [[first]]) == [[first]]
        page.locator(".conv-list").first.scroll_into_view_if_needed()
        page.screenshot(path=str(tmp_path / f"{'mobile-' * (viewport['width'] < 500)}reopened.png"), full_page=True)
        assert page.locator(".toast-body.error").count() == 0


def test_a_first_generation_in_the_playground_is_selected_in_its_list(tmp_path):
    """A fifth walkthrough: a new visitor who starts in the Playground saw the conversation of their first generation
    in its list, unselected (and still after Continue), though the Chat's list selected it. Both lists were sent one
    update dict, which Gradio consumes for the first list; each list now gets its own."""
    with visitor_page(tmp_path) as (page, playground):
        generate(page, "It was a fine morning")  # the Playground's list is drawn empty as its tab opens
        one = open_one(playground)
        assert marked(page, [[one], [one]]) == [[one], [one]]
        act(page, "#pg-continue")  # redrawn again while its tab stays open
        assert marked(page, [[one], [one]]) == [[one], [one]]
        page.locator(".conv-list").nth(1).screenshot(path=str(SHOTS / "conversations-playground-first.png"))


def test_a_renamed_conversations_status_line_shows_the_name_as_typed(tmp_path):
    """A sixth walkthrough: the status line under the list is Markdown, so a name typed as "<b>Letters</b> *one*"
    was drawn bold ("Renamed to "Letters one"") while the list showed it as typed."""
    typed = "<b>Letters</b> *one* [x](y)"
    with visitor_page(tmp_path) as (page, _):
        send(page, "Dear Jane")
        page.locator(".conv-name").first.locator("input, textarea").first.fill(typed)
        page.locator(".conv-rename").first.click()
        page.wait_for_function("() => document.querySelector('.conv-status').innerText.includes('Renamed')")
        wait_idle(page)
        status = page.locator(".conv-status").first
        assert status.inner_text().strip() == f'Renamed to "{typed}".'
        assert status.locator("b, em, strong, a").count() == 0
        assert any(label.startswith(f"▶ {typed}") for label in chat_list(page))
        status.screenshot(path=str(SHOTS / "conversation-renamed.png"))
