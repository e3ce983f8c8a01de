"""The playground on RWKV-7 in headless Chromium (issue 17): chat, and the State tab per layer and head (grids of the
norm, the last token's decay and in-context learning rate, the difference from another node; pick a layer and a
head, see its matrix), on a tiny random RWKV-7 with the World tokenizer (3 layers x 4 heads of 32). Writes the
README's screenshots of the per-head State tab (docs/screenshots/state-rwkv7.png, mobile-state-rwkv7.png)."""
import pytest

pytestmark = [pytest.mark.slow, pytest.mark.browser]
pytest.importorskip("playwright.sync_api")

from .browser_helpers import (SHOTS, browser_session, error_badges, generate, open_page, open_tab,  # noqa: E402
                              served_app, toasts, wait_idle)
from .rwkv7_helpers import save_pth, tiny_model7  # noqa: E402

HEADS7 = dict(vocab_size=65536, hidden_size=128, head_dim=32, num_hidden_layers=3)  # World's vocabulary, 4 heads
BANNER = "A tiny random RWKV-7 (3 layers x 4 heads, World tokenizer): its text is noise; its state is real."


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    pth = save_pth(tiny_model7(seed=6, **HEADS7), tmp_path_factory.mktemp("browser7") / "rwkv7-heads.pth")
    with served_app(pth, BANNER) as served:
        yield served


def pick(page, picker: str, value: str) -> None:
    """Choose `value` in one of the State tab's dropdowns (#st-layer, #st-head, #st-other)."""
    page.locator(f"#{picker} input").click()
    page.get_by_role("option", name=value, exact=True).click()
    wait_idle(page)


def chosen_cell(page) -> list[dict]:
    """The outlined cell of each layer x head grid, as (x, y) of its rect."""
    return page.eval_on_selector_all("#st-head-grids svg.grid rect.chosen",
                                     "rs => rs.map(r => [+r.getAttribute('x'), +r.getAttribute('y')])")


def test_chat_on_rwkv7(app, page):
    open_tab(page, "Chat")
    page.fill("#chat-message textarea", "Hello, who are you?")
    page.click("#chat-send")
    page.wait_for_function("() => document.querySelectorAll('#chatbot .bot').length >= 1")
    wait_idle(page)
    assert "Hello, who are you?" in page.inner_text("#chatbot")
    chat = browser_session(app[1]).chat
    messages = chat.messages()
    assert [m["role"] for m in messages] == ["user", "assistant"] and messages[1]["content"].strip()
    assert page.locator("#chatbot .bot").last.inner_text().strip()  # the reply is shown
    assert error_badges(page) == 0 and not toasts(page)


def test_state_tab_per_layer_and_head(page):
    generate(page, "The weather today is", seed="3")
    open_tab(page, "State")
    page.click("#st-show")
    page.wait_for_selector("#st-head-grids svg.grid")
    page.wait_for_selector("#st-head-matrix svg.grid")
    wait_idle(page)
    grids = page.locator("#st-head-grids figure")
    assert grids.count() == 4  # norm, decay, in-context learning rate, difference
    assert page.locator("#st-head-grids svg.grid").count() == 3  # no compared node yet: the difference explains
    assert "Choose a node in" in grids.nth(3).inner_text()
    assert page.locator("#st-head-grids svg.grid").first.locator("rect title").count() == 3 * 4  # layers x heads
    text = page.inner_text("#st-head-grids")
    assert "Decay w at the last token" in text and "In-context learning rate a" in text
    assert "Layer 0, head 0" in page.inner_text("#st-head-matrix")
    assert page.locator("#st-head-matrix svg.grid rect title").count() == 32 * 32

    pick(page, "st-layer", "2")
    page.wait_for_function("() => document.querySelector('#st-head-matrix').innerText.includes('Layer 2, head 0')")
    pick(page, "st-head", "3")
    page.wait_for_function("() => document.querySelector('#st-head-matrix').innerText.includes('Layer 2, head 3')")
    outlines = chosen_cell(page)
    assert len(outlines) == 3 and len(set(map(tuple, outlines))) == 1  # the same cell in each grid
    x, y = outlines[0]
    cell = page.locator("#st-head-grids svg.grid").first.locator("rect").nth(2 * 4 + 3)  # row 2, column 3
    assert cell.locator("title").text_content().startswith("layer 2, head 3:")
    assert (float(cell.get_attribute("x")) + 1, float(cell.get_attribute("y")) + 1) == (x, y)

    prompt = page.locator("#st-other input")
    prompt.click()
    page.locator("ul[role='listbox'] li", has_text="text").first.click()  # the prompt node: the state before generating
    page.wait_for_function("() => document.querySelectorAll('#st-head-grids svg.grid').length === 4")
    wait_idle(page)
    diff = page.locator("#st-head-grids figure").nth(3)
    values = [float(t.split(": ")[1]) for t in diff.locator("rect title").all_text_contents()]
    assert len(values) == 12 and any(v > 0 for v in values)
    assert "Layer 2, head 3" in page.inner_text("#st-head-matrix")  # the chosen head stays chosen
    assert error_badges(page) == 0 and not toasts(page)
    page.wait_for_timeout(1200)  # the Vega plots above draw after their data
    page.screenshot(path=str(SHOTS / "state-rwkv7.png"), full_page=True)


def test_state_tab_per_head_on_a_phone(app, browser):
    page = open_page(browser, app[0], 390, 844)
    generate(page, "Once upon a time", seed="4")
    open_tab(page, "State")
    page.click("#st-show")
    page.wait_for_selector("#st-head-matrix svg.grid")
    wait_idle(page)
    pick(page, "st-head", "1")
    page.wait_for_function("() => document.querySelector('#st-head-matrix').innerText.includes('head 1')")
    widths = page.eval_on_selector_all("#st-head-grids svg, #st-head-matrix svg",
                                       "ss => ss.map(s => s.getBoundingClientRect().right)")
    assert widths and max(widths) <= 390  # nothing wider than the phone
    assert page.locator("#st-heads-help details").count() == 1  # the long explanation is folded
    page.evaluate("() => document.querySelector('#st-layer').scrollIntoView()")
    page.screenshot(path=str(SHOTS / "mobile-state-rwkv7.png"))
    page.close()
