"""A new visitor's walkthrough found that reloading the page while a Playground generation streams lost the prompt
and everything generated so far: they were in neither the tree nor any saved conversation. Checked here in headless
Chromium on the bundled demo model with the SQLite store: the engine is held at a model forward mid-generation
(fault_helpers.EngineGate), so the reload surely lands while the generation streams, with text on the page; after
the reload, and after a second one, the tree holds the prompt and the partial text. Writes reload-kept.png and
mobile-reload-kept.png into the test's temporary folder (not the README's pictures)."""
import contextlib

import pytest

from .browser_helpers import open_tab, wait_idle
from .fault_helpers import EngineGate, default_model, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.browser]
pytest.importorskip("playwright.sync_api")

from playwright.sync_api import TimeoutError as PlaywrightTimeout  # noqa: E402

from .test_browser_conversations import BOX, DESKTOP, PHONE, visitor_page  # noqa: E402
from .test_browser_tabs import set_slider  # noqa: E402

PROMPT = "Chapter 1. It is a truth universally acknowledged"
STREAMED_TOKENS = 60  # tokens the engine hands out before it is held: a few hundred characters on the page


def output(page) -> str:
    return page.input_value("#pg-output textarea")


def rows(page) -> list[dict]:
    """The tree panel's rows as drawn: {id, role, snippet}."""
    return page.eval_on_selector_all("#pg-tree .tn", "rs => rs.map(r => ({id: r.dataset.id, "
                                     "role: (r.querySelector('.role') || {}).textContent || '', "
                                     "snippet: r.querySelector('.snip').textContent}))")


def loaded(page) -> None:
    """After a (re)load: the page ready and the visitor's conversation reopened (the tree drawn past its root; when
    nothing was saved, it never is: `kept` then shows what the tree holds)."""
    page.wait_for_selector(BOX)
    open_tab(page, "Playground")
    with contextlib.suppress(PlaywrightTimeout):
        page.wait_for_function("() => { const t = document.querySelector('#pg-tree .rwkv-tree'); "
                               "return t && Number(t.dataset.count) > 1; }", timeout=15_000)
    wait_idle(page)


def kept(page, shown: str) -> None:
    """The prompt and the generation cut by the reload are in the tree; the generation, selected, shows at least
    what the page showed before the reload."""
    drawn = rows(page)
    prompt = [row for row in drawn if row["role"] == "text" and row["snippet"].startswith("Chapter 1. It is")]
    generated = [row for row in drawn if row["role"] == "generated"]
    assert len(prompt) == 1 and len(generated) == 1, f"the tree after the reload: {drawn}"
    page.click(f"#pg-tree .tn[data-id='{generated[0]['id']}'] .snip")
    page.wait_for_function("id => document.querySelector('#pg-tree .rwkv-tree').dataset.current === id",
                           arg=generated[0]["id"])
    wait_idle(page)
    assert output(page).startswith(shown)


@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["desktop", "phone"])
def test_a_reload_while_the_playground_streams_keeps_the_prompt_and_the_partial_text(tmp_path, viewport):
    with visitor_page(tmp_path, viewport) as (page, playground):
        gate = EngineGate(default_model(playground))
        try:
            open_tab(page, "Playground")
            set_slider(page, "pg-length", 512)
            page.fill("#pg-prompt textarea", PROMPT)
            page.click("#pg-generate")
            gate.allow(STREAMED_TOKENS - 1)
            gate.wait_arrivals(STREAMED_TOKENS)  # held in a forward: the generation streams on until released
            page.wait_for_function("() => document.querySelector('#pg-output textarea').value.length > 100")
            shown = output(page)
            (tab,) = [s for s in playground._clients.values() if not s.closed]
            assert tab.generating

            page.reload()  # while it streams: the page goes, the server's session closes
            loaded(page)
            kept(page, shown)
            page.screenshot(path=str(tmp_path / f"{'mobile-' * (viewport['width'] < 500)}reload-kept.png"),
                            full_page=True)
            assert tab.closed
            gate.open()
            wait_for(lambda: tab.tree is None, "the closed tab's session to be freed")  # no leak

            page.reload()  # the walkthrough's second reload: still there
            loaded(page)
            kept(page, shown)
            assert playground.sessions == 1
        finally:
            gate.remove()
