"""Fixes from a new visitor's walkthrough, in headless Chromium on the bundled demo model: on a phone the Chatbot's
own floating toolbar (copy, share, clear) no longer covers the first message; a chat whose user and bot names are
the same is refused with a warning toast, the typed message kept; Compare draws fresh seeds at each run and shows
each column's seed. Writes docs/screenshots/mobile-chat-first-message.png, equal-names-refused.png and
compare-seeds.png."""
import pytest

from .browser_helpers import SHOTS, error_badges, open_page, open_tab, toasts, wait_idle, wait_toast

pytestmark = [pytest.mark.slow, pytest.mark.browser]
pytest.importorskip("playwright.sync_api")

BOX = "#chat-message textarea"
PHONE = {"width": 390, "height": 844}

# The boxes, in viewport pixels, of the Chatbot's floating label and toolbar buttons and of its first message
BOXES = """() => {
  const box = e => { const r = e.getBoundingClientRect(); return [r.left, r.top, r.right, r.bottom]; };
  const chat = document.querySelector('#chatbot');
  const buttons = [...chat.querySelectorAll('.top-panel button, label[data-testid="block-label"]')]
    .filter(b => b.offsetParent && getComputedStyle(b).visibility !== 'hidden');
  const first = chat.querySelector('[data-testid="user"]');
  return {buttons: buttons.map(box), message: first ? box(first) : null, list: box(chat.querySelector('.bubble-wrap'))};
}"""


def overlaps(a, b) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def send(page, text):
    page.fill(BOX, text)
    page.click("#chat-send")


def test_on_a_phone_the_chatbots_toolbar_does_not_cover_the_first_message(app, browser):
    page = open_page(browser, app[0], **PHONE)
    send(page, "Good morning, my dear Miss Bennet, how do you do?")
    page.wait_for_selector("#chatbot [data-testid='bot']")
    wait_idle(page)
    page.locator("#chatbot").scroll_into_view_if_needed()
    page.screenshot(path=str(SHOTS / "mobile-chat-first-message.png"))
    boxes = page.evaluate(BOXES)
    assert boxes["message"] and boxes["buttons"], boxes  # the toolbar is there (Clear at least), and the message
    covered = [b for b in boxes["buttons"] if overlaps(b, boxes["message"])]
    assert not covered, f"toolbar buttons {covered} cover the first message {boxes['message']}"
    # and whatever message comes first once the list has scrolled (a long reply scrolls it): the list's visible
    # area starts below the toolbar
    covered = [b for b in boxes["buttons"] if overlaps(b, boxes["list"])]
    assert not covered, f"toolbar buttons {covered} stand over the message list {boxes['list']}"
    page.close()


def test_the_toolbar_still_covers_nothing_and_works_on_a_desktop(page):
    send(page, "Good morning")
    page.wait_for_selector("#chatbot [data-testid='bot']")
    wait_idle(page)
    boxes = page.evaluate(BOXES)
    assert boxes["buttons"] and not [b for b in boxes["buttons"] if overlaps(b, boxes["message"])], boxes


@pytest.mark.parametrize("viewport", [{"width": 1366, "height": 900}, PHONE], ids=["desktop", "phone"])
def test_equal_user_and_bot_names_are_a_warning_and_the_message_stays(app, browser, viewport):
    page = open_page(browser, app[0], **viewport)
    page.get_by_text("Conversation", exact=True).first.click()
    page.fill("#chat-user textarea", "Elizabeth")
    page.fill("#chat-bot textarea", " elizabeth ")
    send(page, "Shall we walk to Meryton?")
    wait_idle(page)
    wait_toast(page, "are the same")
    shown = toasts(page)
    assert any("user name 'Elizabeth' and the bot name ' elizabeth ' are the same" in t for t in shown), shown
    assert page.locator(".toast-body.error").count() == 0 and error_badges(page) == 0
    assert page.input_value(BOX) == "Shall we walk to Meryton?"  # the visitor's text survives
    assert page.locator("#chatbot [data-testid='user']").count() == 0
    page.wait_for_timeout(500)  # the toast's fade-in, for the screenshot
    page.screenshot(path=str(SHOTS / f"equal-names-refused-{viewport['width']}.png"))
    page.close()


USED = "i => document.querySelector(`#cmp-used-${i} textarea, #cmp-used-${i} input`).value"


def seeds_used(page, count):
    return page.evaluate(f"n => [...Array(n).keys()].map({USED})", count)


def test_compare_twice_samples_anew_and_each_column_shows_its_seed(app, browser):
    for viewport in ({"width": 1366, "height": 900}, PHONE):
        page = open_page(browser, app[0], **viewport)
        send(page, "It is a truth universally acknowledged")
        page.wait_for_selector("#chatbot [data-testid='bot']")
        wait_idle(page)
        open_tab(page, "Compare")
        assert [page.input_value(f"#cmp-seed-{i} input, #cmp-seed-{i} textarea") for i in range(3)] == [""] * 3
        runs = [["", "", ""]]
        for _ in range(2):
            page.click("#cmp-run")
            page.wait_for_function(f"before => [0, 1, 2].every(i => ({USED})(i) && ({USED})(i) !== before[i])",
                                   arg=runs[-1], polling=200)
            wait_idle(page)
            runs.append(seeds_used(page, 3))
        sampled = [s for run in runs[1:] for s in run if s.isdigit()]
        assert len(sampled) == len(set(sampled)) >= 4, runs  # every sampling column of both runs: its own seed
        assert error_badges(page) == 0 and page.locator(".toast-body.error").count() == 0
        page.locator("#cmp-used-0").scroll_into_view_if_needed()
        page.screenshot(path=str(SHOTS / f"compare-seeds-{viewport['width']}.png"), full_page=viewport is PHONE)
        page.close()
