"""What a second new-visitor walkthrough found, checked in headless Chromium on the bundled demo model: the session
tree's label, wrapped to two lines on a phone, no longer covers the tree's first row, and the State tab of a fresh
session draws no broken colour legend ("-Infinity"/"Infinity") for the empty "Memory norm per token" plot.
Writes docs/screenshots/mobile-tree-label.png and state-fresh.png."""
import pytest

pytestmark = [pytest.mark.slow, pytest.mark.browser]
pytest.importorskip("playwright.sync_api")

from .browser_helpers import SHOTS, generate, open_page, open_tab, wait_idle  # noqa: E402

PHONE = {"width": 390, "height": 844}
BOXES = """e => { const r = x => { const b = x.getBoundingClientRect(); return {top: b.top, bottom: b.bottom}; };
  return {label: r(e.querySelector('label[data-testid=block-label]')), row: r(e.querySelector('.tn'))}; }"""


def label_and_first_row(page) -> dict:
    return page.eval_on_selector("#pg-tree", BOXES)


@pytest.mark.parametrize("size", [PHONE, {"width": 1366, "height": 900}], ids=["phone", "desktop"])
def test_the_tree_label_leaves_the_first_row_visible_and_tappable(app, browser, size):
    page = open_page(browser, app[0], **size)
    try:
        generate(page, "It was a fine morning")
        boxes = label_and_first_row(page)
        assert boxes["row"]["top"] >= boxes["label"]["bottom"] - 0.5, boxes  # the label ends before the row starts
        first = page.locator("#pg-tree .tn").first
        assert "(start)" in first.inner_text()
        first.locator(".snip").click()  # a tap on the row reaches it, not the label
        page.wait_for_function("id => document.querySelector('#pg-tree .rwkv-tree').dataset.current === id",
                               arg=first.get_attribute("data-id"))
        if size is PHONE:
            page.locator("#pg-tree").screenshot(path=str(SHOTS / "mobile-tree-label.png"))
    finally:
        page.close()


def legend_texts(page, plot) -> list[str]:
    return page.eval_on_selector_all(f"#{plot} svg .role-legend text", "ts => ts.map(t => t.textContent)")


def test_a_fresh_sessions_state_tab_draws_no_broken_legend(page):
    console = []
    page.on("console", lambda message: console.append(message.text))
    open_tab(page, "State")  # the root "(start)": no generation, so no memory trace and no difference
    page.wait_for_selector("#st-norms svg")
    wait_idle(page)
    page.wait_for_timeout(800)  # Vega draws after the data arrives
    assert "Memory norm per token: nothing to show" in page.inner_text("#st-trace-note")
    assert [m for m in console if "Infinite extent" in m] == []
    for plot in ("st-trace", "st-diff"):  # Gradio's empty plot: no axes, no legend (it said "-Infinity"/"Infinity")
        assert page.locator(f"#{plot} svg .role-legend").count() == 0 and "Infinity" not in page.inner_text(f"#{plot}")
    page.screenshot(path=str(SHOTS / "state-fresh.png"), full_page=True)
    open_tab(page, "Playground")
    generate(page, "Anne")
    open_tab(page, "State")  # with a generation, the trace's legend names the layers
    page.wait_for_function("() => document.querySelectorAll('#st-trace svg .role-legend text').length > 1",
                           timeout=15_000)
    wait_idle(page)
    labels = legend_texts(page, "st-trace")
    assert "layer" in labels and "layer 0" in labels and not [t for t in labels if "Infinity" in t], labels
    assert [m for m in console if "Infinite extent" in m] == []
