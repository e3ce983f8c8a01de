"""What a new visitor's walkthrough in Chromium tripped on, each checked in headless Chromium on the bundled demo
model: a wrong file where a state or session file is expected is a warning naming it (never Gradio's red "Invalid
file type"), the State tab draws as it opens, a fractional Compare seed is refused by name (not rounded), "Max new
tokens" shows the range it keeps to, and the chat's "‹ 2/3 ›" is one line of tap-sized arrows on a phone.
Writes docs/screenshots/wrong-file.png, mobile-wrong-file.png, state-opened.png and mobile-chat-branches.png."""
import pytest

pytestmark = [pytest.mark.slow, pytest.mark.browser]
pytest.importorskip("playwright.sync_api")

from .browser_helpers import (SHOTS, act, browser_session, error_badges, generate, open_page, open_tab,  # noqa: E402
                              toasts, wait_idle, wait_toast)

PHONE = {"width": 390, "height": 844}
TAP = 32  # px: the smallest comfortable touch target we allow (Material asks 48, Apple 44; 32 fits "‹ 2/3 ›")


def upload(page, element, path):
    """Choose `path` in the upload box `element`; the box shows its name (it was taken, not refused in the page)."""
    with page.expect_file_chooser() as chooser:
        page.click(f"#{element} button[aria-label='Click to upload or drop files']")
    chooser.value.set_files(str(path))
    page.wait_for_function("([e, n]) => document.querySelector('#' + e).innerText.includes(n)",
                           arg=[element, path.name], timeout=15_000)


def no_red_error(page):
    body = page.inner_text("body")
    assert "Invalid file type" not in body and page.locator(".toast-body.error").count() == 0
    assert error_badges(page) == 0


def refused(page, button, text):
    """Click `button` with no toast showing; a warning toast saying `text` comes, and nothing red."""
    for close in page.locator(".toast-close").all():
        close.click()
    page.wait_for_function("() => !document.querySelector('.toast-body')")
    page.click(button)
    wait_toast(page, text)
    wait_idle(page)
    assert page.locator(".toast-body.warning").count() >= 1
    no_red_error(page)


# ---- 1: a wrong file type is a warning that names it ------------------------------------------------------
def test_a_wrong_file_where_a_state_or_session_file_is_expected_is_a_warning(app, page, tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("my shopping list\n")
    generate(page, "Mr. Bennet said")
    session = browser_session(app[1])
    model, nodes = session.loaded.key, set(session.tree.nodes)
    page.fill("#pg-prompt textarea", "My own prompt, typed with care")
    page.click("#pg-states")
    upload(page, "pg-state-upload", notes)
    no_red_error(page)
    refused(page, "#pg-state-load", "a state file (.safetensors, .state, .pth, .pt), got notes.txt")
    upload(page, "pg-mix-first-file", notes)
    page.fill("#pg-mix-second input", session.tree.root)
    refused(page, "#pg-mix", "got notes.txt")
    assert page.input_value("#pg-prompt textarea") == "My own prompt, typed with care"
    assert browser_session(app[1]) is session and session.loaded.key == model and set(session.tree.nodes) == nodes
    page.locator("#pg-states").scroll_into_view_if_needed()
    page.screenshot(path=str(SHOTS / "wrong-file.png"))

    open_tab(page, "Chat")
    page.get_by_text("Conversation", exact=True).click()
    upload(page, "chat-state-upload", notes)
    refused(page, "#chat-state-load", "a state file (.safetensors, .state, .pth, .pt), got notes.txt")
    open_tab(page, "Session")
    upload(page, "session-upload", notes)
    no_red_error(page)
    refused(page, "#session-load", "a session file (.zip), got notes.txt")
    assert browser_session(app[1]) is session and set(session.tree.nodes) == nodes


def test_a_wrong_file_on_a_phone(browser, app, tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("not a state\n")
    page = open_page(browser, app[0], **PHONE)
    try:
        open_tab(page, "Playground")
        page.click("#pg-states")
        upload(page, "pg-state-upload", notes)
        refused(page, "#pg-state-load", "got notes.txt")
        page.locator("#pg-state-upload").scroll_into_view_if_needed()
        page.screenshot(path=str(SHOTS / "mobile-wrong-file.png"))
    finally:
        page.close()


# ---- 2: the State tab draws the selected node as it opens -------------------------------------------------
def test_the_state_tab_draws_the_selected_node_when_opened(app, page):
    generate(page, "Elizabeth walked")
    current = browser_session(app[1]).current
    open_tab(page, "State")  # no "Show state" press
    page.wait_for_selector("#st-heatmap svg rect", timeout=15_000)
    page.wait_for_selector("#st-norms svg")
    wait_idle(page)
    assert page.input_value("#st-node input") and page.locator("#st-show").is_visible()  # the button stays
    assert browser_session(app[1]).current == current and not toasts(page)
    page.wait_for_timeout(800)  # Vega draws after the data arrives
    page.screenshot(path=str(SHOTS / "state-opened.png"), full_page=True)
    open_tab(page, "Playground")
    generate(page, "Emma smiled")
    before = page.inner_text("#st-heatmap")
    open_tab(page, "State")  # the newly selected node, drawn again on opening
    page.wait_for_function("b => document.querySelector('#st-heatmap').innerText !== b", arg=before, timeout=15_000)
    no_red_error(page)


# ---- 3: a seed of 3.7 is refused by name, not rounded -----------------------------------------------------
def test_a_fractional_compare_seed_is_refused_by_name(app, page):
    generate(page, "It was")
    open_tab(page, "Compare")
    page.get_by_label("Seed 1").fill("3.7")
    page.click("#cmp-run")
    wait_toast(page, "got 3.7")
    wait_idle(page)
    no_red_error(page)
    assert page.get_by_label("Seed 1").input_value() == "3.7"  # the visitor's text, as typed
    assert all(page.input_value(f"#cmp-text-{i} textarea") == "" for i in range(3))
    page.get_by_label("Seed 1").fill("12345678901234567890")  # a 64-bit seed, exactly (a float box rounds it)
    act(page, "#cmp-run")
    session = browser_session(app[1])
    assert session.tree.node(session.compared[0]).meta["seed"] == 12345678901234567890


# ---- 4: "Max new tokens" says the range it keeps to ---------------------------------------------------------
def test_max_new_tokens_shows_and_keeps_the_range_the_server_accepts(app, page):
    limit = app[1].options.max_new_tokens
    where = {"Playground": "#pg-length", "Compare": "#cmp-length", "Chat": "#chat-length"}
    for tab, slider in where.items():
        open_tab(page, tab)
        if tab == "Chat":
            page.click("#chat-sampling button, #chat-sampling .label-wrap")
        assert f"1 to {limit:,}" in page.inner_text(slider), tab
        box = page.locator(f"{slider} input[type=number]")
        for typed, kept in (("0", "1"), (str(limit + 1000), str(limit))):
            box.fill(typed)
            box.blur()
            page.wait_for_function("([s, v]) => document.querySelector(s + ' input[type=number]').value === v",
                                   arg=[slider, kept], timeout=5_000)
    open_tab(page, "Playground")
    page.locator("#pg-length input[type=number]").fill("0")
    generate(page, "Anne")  # the box says 1, and 1 is what runs
    session = browser_session(app[1])
    assert len(session.tree.node(session.current).tokens) <= 1 and not toasts(page)


# ---- 5: "‹ 2/3 ›" on a phone: one line, tap-sized arrows ----------------------------------------------------
def test_chat_branch_arrows_are_tap_sized_on_one_line_on_a_phone(app, browser):
    page = open_page(browser, app[0], **PHONE)
    try:
        page.fill("#chat-message textarea", "Good morning, Mr. Darcy!")
        page.press("#chat-message textarea", "Enter")
        page.wait_for_selector("#chatbot [data-testid='bot']")
        wait_idle(page)
        for _ in range(2):
            page.locator("#chatbot button[aria-label='Retry']").click()
            wait_idle(page)
        page.wait_for_function("() => document.querySelector('#chatbot .branch-nav .branch-count')?.innerText === '3/3'")
        nav = page.locator("#chatbot .branch-nav").first
        nav.scroll_into_view_if_needed()
        boxes = {name: page.locator(f"#chatbot .branch-nav .branch-{name}").first.bounding_box()
                 for name in ("previous", "count", "next")}
        for name in ("previous", "next"):
            assert boxes[name]["width"] >= TAP and boxes[name]["height"] >= TAP, (name, boxes[name])
        middles = [b["y"] + b["height"] / 2 for b in boxes.values()]
        assert max(middles) - min(middles) <= 2, boxes  # one line
        assert boxes["previous"]["x"] < boxes["count"]["x"] < boxes["next"]["x"]
        assert page.locator("#chatbot .branch-nav .branch-count").first.evaluate(
            "e => e.getClientRects().length") == 1  # "2/3" itself unbroken
        page.click("#chatbot .branch-nav .branch-previous")
        page.wait_for_function("() => document.querySelector('#chatbot .branch-nav .branch-count').innerText === '2/3'")
        page.screenshot(path=str(SHOTS / "mobile-chat-branches.png"))
    finally:
        page.close()


# ---- 6: a refused "New chat with these settings" is a warning; the conversation shown stays ------------------
def test_a_refused_new_chat_is_a_warning_and_keeps_the_conversation(app, page):
    page.wait_for_selector("#chatbot")
    wait_idle(page)
    shown = page.inner_text("#chatbot")  # no reply streams meanwhile: the refusal is the only event in flight
    page.get_by_text("Conversation", exact=True).click()
    page.fill("#chat-user textarea", "U" * 70)
    refused(page, "#chat-new", "user name has 70 characters")
    assert page.inner_text("#chatbot") == shown
    assert page.input_value("#chat-user textarea") == "U" * 70  # the visitor's text stays to be fixed


# ---- 7: Compare from the start of the tree says where to select a node ----------------------------------------
def test_compare_from_the_start_says_where_to_select_a_node(app, page):
    open_tab(page, "Compare")
    refused(page, "#cmp-run", "Nothing to compare at the start of the tree: select a node with text in the Playground "
                              "tab (or chat first)")
    assert not any("give some text" in t for t in toasts(page))
    assert all(page.input_value(f"#cmp-text-{i} textarea") == "" for i in range(3))
    page.screenshot(path=str(SHOTS / "compare-at-start.png"))
