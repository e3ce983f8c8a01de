"""What a third new-visitor walkthrough of the Playground's session tree found, checked in headless Chromium on the
bundled demo model: the Continuation box follows the tree's selection (it kept the last generation's text, from
another branch); Delete on the root refuses at once with a toast (it asked "Yes, delete it" first); a row shows
its preset and seed whole, the text preview being what is shortened (siblings looked identical); a continuation
that branches keeps its ↳ (a fourth walkthrough: it looked like a sibling of the row it continues); the "Node
details" JSON describes the current node after Generate and Continue, its seed digit for digit and its model by
name (it kept the previous node, rounded the seed and showed the server's path); Rewind with no token clicked
says to click one; on a phone a deep row's meta line wraps instead of being cut off. Writes
docs/screenshots/tree-selection.png, tree-rows.png, mobile-tree-rows.png, mobile-tree-deep-rows.png,
tree-branching-continuation.png, tree-rewound.png, node-details.png, mobile-node-details.png and rewind-no-token.png."""
import pytest

pytestmark = [pytest.mark.slow, pytest.mark.browser]
pytest.importorskip("playwright.sync_api")

from .browser_helpers import (SHOTS, act, browser_session, generate, open_page, open_tab, toasts,  # noqa: E402
                              wait_idle, wait_toast)

PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1366, "height": 900}


def output(page) -> str:
    return page.input_value("#pg-output textarea")


def select_row(page, node_id: str) -> None:
    """Click the tree row of `node_id` and wait until the selection has been drawn everywhere."""
    page.click(f"#pg-tree .tn[data-id='{node_id}'] .snip")
    page.wait_for_function("id => document.querySelector('#pg-tree .rwkv-tree').dataset.current === id", arg=node_id)
    wait_idle(page)


def node_ids(session, role: str) -> list[str]:
    return [row["id"] for row in session.api_tree_rows() if row["role"] == role]


# ---- 1: the Continuation box shows the selected node's continuation ----------------------------------------
def test_the_continuation_box_follows_the_selected_node(app, page):
    generate(page, "It was a fine morning, and", seed="1")
    first = output(page)
    generate(page, "It was a fine morning, and", seed="2")
    second = output(page)
    session = browser_session(app[1])
    generated = node_ids(session, "generated")
    texts = [session.tree.node(n).text for n in generated]
    assert first != second and texts == [first, second]  # what Generate showed is the node's text
    select_row(page, generated[0])  # the other branch: its own text, not the last generation's
    assert output(page) == first
    page.screenshot(path=str(SHOTS / "tree-selection.png"), full_page=True)
    select_row(page, node_ids(session, "text")[0])  # the prompt: nothing generated there yet
    assert output(page) == ""
    select_row(page, session.tree.root)  # the start: empty
    assert output(page) == ""
    select_row(page, generated[1])
    assert output(page) == second
    page.locator("#pg-tokens .token").nth(5).click()  # rewind inside the second generation: its new continuation
    wait_idle(page)
    act(page, "#pg-rewind")
    resampled = session.current
    assert output(page) == session.tree.node(resampled).text != ""
    point = session.tree.node(resampled).parent  # the rewind point (the kept first tokens): its own text
    rewound = f"rewound after token {session.tree.node(point).meta['position']}"
    assert rewound in page.locator(f"#pg-tree .tn[data-id='{point}']").inner_text()  # told apart from its twin
    assert "rewound" not in page.locator(f"#pg-tree .tn[data-id='{generated[1]}']").inner_text()
    page.locator(f"#pg-tree .tn[data-id='{point}']").scroll_into_view_if_needed()
    page.screenshot(path=str(SHOTS / "tree-rewound.png"))
    select_row(page, point)
    assert output(page) == session.tree.node(point).text
    select_row(page, resampled)
    page.click("#pg-delete")
    page.wait_for_selector("#pg-delete-yes", state="visible")
    act(page, "#pg-delete-yes")  # the rewind point is selected again, and its text shown
    assert session.current == point and output(page) == session.tree.node(point).text


# ---- 2: Delete on the root refuses at once -------------------------------------------------------------------
def test_delete_on_the_root_is_refused_at_once_and_other_nodes_ask_first(app, page):
    generate(page, "The rain")
    session = browser_session(app[1])
    count, generated = session.node_count(), session.current
    select_row(page, session.tree.root)
    page.click("#pg-delete")
    wait_toast(page, "cannot be deleted")
    wait_idle(page)
    assert page.locator("#pg-delete-yes").is_hidden()  # no question before the refusal
    assert sum("The start of the tree cannot be deleted: select a node under it first" in t for t in toasts(page)) == 1
    assert session.node_count() == count and session.current == session.tree.root
    select_row(page, generated)
    page.click("#pg-delete")  # a generated node: asks first, as before
    page.wait_for_selector("#pg-delete-yes", state="visible")
    select_row(page, session.tree.root)  # the question was about another node: it goes
    page.wait_for_selector("#pg-delete-yes", state="hidden")
    select_row(page, generated)
    page.click("#pg-delete")
    page.wait_for_selector("#pg-delete-yes", state="visible")
    page.click("#pg-delete-no")
    page.wait_for_selector("#pg-delete-yes", state="hidden")
    assert session.node_count() == count


# ---- 3: a row shows its preset and seed whole --------------------------------------------------------------
# Cut: the text's own width (a Range measures the laid-out text, "…" or not) exceeds its box's content width; even a
# fraction of a pixel is cut, as text-overflow then paints "…" over the last digits of a seed.
ROW_BOXES = """rows => rows.map(r => {
  const box = e => e.getBoundingClientRect(), row = box(r);
  const extra = r.querySelector('.extra'), snip = r.querySelector('.snip');
  const cut = e => { const range = document.createRange(), s = getComputedStyle(e); range.selectNodeContents(e);
    const inner = box(e).width - parseFloat(s.paddingLeft) - parseFloat(s.paddingRight);
    return range.getBoundingClientRect().width > inner + 0.01; };
  return {id: r.dataset.id, rowRight: row.right - parseFloat(getComputedStyle(r).paddingRight),
          extraRight: extra ? box(extra).right : null, extraCut: extra ? cut(extra) : null,
          extraText: extra ? extra.innerText : '', snipRight: box(snip).right, snipCut: cut(snip)};
})"""


@pytest.mark.parametrize("size", [DESKTOP, PHONE], ids=["desktop", "phone"])
def test_a_row_shows_the_preset_and_seed_whole_and_shortens_the_text(app, browser, size):
    page = open_page(browser, app[0], **size)
    try:
        generate(page, "It was a fine morning, and Elizabeth")  # empty seed: a random one, up to 19 digits
        act(page, "#pg-generate")  # a sibling: same prompt, same preset, another seed
        session = browser_session(app[1])
        siblings = node_ids(session, "generated")
        name = "mobile-tree-rows.png" if size is PHONE else "tree-rows.png"
        page.locator("#pg-tree").screenshot(path=str(SHOTS / name))
        rows = {r["id"]: r for r in page.eval_on_selector_all("#pg-tree .tn", ROW_BOXES)}
        for node_id in siblings:
            row = rows[node_id]
            assert row["extraText"].startswith("balanced · seed ") and not row["extraCut"], row
            assert row["extraRight"] <= row["rowRight"] + 0.5, row  # inside the row: not cut off at its edge
            assert row["snipRight"] <= row["rowRight"] + 0.5, row
        assert rows[siblings[0]]["extraText"] != rows[siblings[1]]["extraText"]  # the seeds tell them apart
        if size is PHONE:
            assert any(rows[n]["snipCut"] for n in siblings)  # the preview is what gets shortened
    finally:
        page.close()


# ---- 4: "Node details" follows the current node, its seed exact, its model by name ---------------------------
BIG_SEED = "3007010865544379428"  # over 2**53: a browser's number shows 3007010865544379400


def details_text(page) -> str:
    return page.inner_text("#pg-node-json")


def test_node_details_describe_the_current_node_with_its_exact_seed(app, page):
    open_tab(page, "Playground")
    page.get_by_text("Node details", exact=True).click()  # open before anything: it fills on Generate, no tree click
    generate(page, "It was a fine morning, and", seed=BIG_SEED)
    session = browser_session(app[1])
    page.wait_for_function("id => document.querySelector('#pg-node-json').innerText.includes(id)", arg=session.current)
    shown = details_text(page)
    assert BIG_SEED in shown and "3007010865544379400" not in shown
    assert "demo-rwkv4" in shown and app[1].default_source not in shown  # the model by name, not its folder
    page.locator("#pg-node-json").scroll_into_view_if_needed()
    page.screenshot(path=str(SHOTS / "node-details.png"))
    first = session.current
    page.fill("#pg-extra textarea", " Then")
    act(page, "#pg-continue")  # no tree click: the details move with the node id box
    assert session.current != first and page.input_value("#pg-node input") == session.current
    page.wait_for_function("id => document.querySelector('#pg-node-json').innerText.includes(id)", arg=session.current)
    assert first not in details_text(page)


def test_node_details_on_a_phone(app, browser):
    page = open_page(browser, app[0], **PHONE)
    try:
        open_tab(page, "Playground")
        page.get_by_text("Node details", exact=True).click()
        generate(page, "Emma smiled", seed=BIG_SEED)
        current = browser_session(app[1]).current
        page.wait_for_function("id => document.querySelector('#pg-node-json').innerText.includes(id)", arg=current)
        assert BIG_SEED in details_text(page)
        page.locator("#pg-node-json").scroll_into_view_if_needed()
        page.screenshot(path=str(SHOTS / "mobile-node-details.png"))
    finally:
        page.close()


# ---- 5: Rewind with no token clicked ---------------------------------------------------------------------------
def test_rewind_without_a_clicked_token_says_to_click_one(app, page):
    generate(page, "The rain", seed="3")
    session = browser_session(app[1])
    nodes = set(session.tree.nodes)
    page.click("#pg-rewind")
    wait_toast(page, "Click a token of the selected node first (the rewind point)")
    wait_idle(page)
    assert not any("Position must be" in t for t in toasts(page))
    assert set(session.tree.nodes) == nodes
    page.locator("#pg-rewind").scroll_into_view_if_needed()
    page.screenshot(path=str(SHOTS / "rewind-no-token.png"))


# ---- 6: a continuation that branches still says it continues the row above -------------------------------
def test_a_branching_continuation_keeps_its_mark(app, page):
    generate(page, "It was a fine morning, and", seed="1")
    page.fill("#pg-extra textarea", " Then she said,")
    act(page, "#pg-continue")  # text under the generation, and a generation under the text
    session = browser_session(app[1])
    added = next(row["id"] for row in session.api_tree_rows() if row["role"] == "text" and "Then she" in row["text"])
    select_row(page, added)
    page.fill("#pg-extra textarea", "")
    act(page, "#pg-continue")  # a second generation under the added text: it branches
    marks = page.inner_text(f"#pg-tree .tn[data-id='{added}']")
    assert "↳" in marks and "▾" in marks, marks  # continues the generation above, and folds its two children
    page.locator("#pg-tree").screenshot(path=str(SHOTS / "tree-branching-continuation.png"))


# ---- 7: on a phone, a deep row's whole preset · seed · forced/stopped line stays in sight ------------------------
MAX_SEED = "18446744073709551615"  # the widest seed a row can show


def test_a_deep_rows_meta_line_wraps_inside_the_row_on_a_phone(app, browser):
    """A fifth walkthrough: on a phone a row's meta line ("balanced · seed <19-20 digits> · forced ' my'" or "·
    stopped") did not wrap, so under a few levels of indent its end was cut off at the row's edge."""
    page = open_page(browser, app[0], **PHONE)
    try:
        generate(page, "It was a fine morning, and", seed=MAX_SEED)
        act(page, "#pg-continue")  # a continuation: one level deeper
        page.locator("#pg-tokens .token").nth(-3).click()  # a token of the continuation
        wait_idle(page)
        page.locator("#pg-alternatives label").nth(1).click()
        act(page, "#pg-force")  # rewound (one level deeper still), a forced sibling with the longest meta line
        page.locator("#pg-tree").screenshot(path=str(SHOTS / "mobile-tree-deep-rows.png"))
        rows = {r["id"]: r for r in page.eval_on_selector_all("#pg-tree .tn", ROW_BOXES)}
        assert any("forced" in r["extraText"] for r in rows.values()), rows
        for row in rows.values():
            if row["extraText"]:
                assert row["extraRight"] <= row["rowRight"] + 0.5 and not row["extraCut"], row  # all of it shown
    finally:
        page.close()
