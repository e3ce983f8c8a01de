"""Session files in headless Chromium on the bundled demo model, conversations saved in a temporary SQLite store
(issue 13's Session tab, issue 17's state files): a one-click export, an import that becomes a conversation of its
own, named apart from the one it came from, a refused import that leaves no stale message, and the current node's
state as a state file. Writes docs/screenshots/imported-conversation.png."""
import pytest

from rwkv_app.services.stores import open_store

pytestmark = [pytest.mark.slow, pytest.mark.browser]
pytest.importorskip("playwright.sync_api")

from .browser_helpers import SHOTS, error_badges, generate, open_tab, served_app  # noqa: E402


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    store = open_store(str(tmp_path_factory.mktemp("files") / "data"), ttl_s=86400.0, quota_bytes=2 ** 26)
    with served_app(store=store) as served:
        yield served


def upload(page, path):
    clear = page.locator("#session-upload button[aria-label='Clear']")
    if clear.count():
        clear.first.click()
    with page.expect_file_chooser() as chooser:
        page.click("#session-upload button[aria-label='Click to upload or drop files']")
    chooser.value.set_files(str(path))
    page.wait_for_function("n => document.querySelector('#session-upload').innerText.includes(n)", arg=path.name)


def conversation_names(page) -> list[str]:
    """The Chat tab's Conversations list, one label each ("▶ " marks the open one)."""
    return [t.strip() for t in page.locator(".conv-list").first.locator("label").all_inner_texts()]


def test_session_export_import_and_a_refused_import(page, tmp_path):
    generate(page, "Catherine")
    open_tab(page, "Session")
    with page.expect_download() as download:
        page.click("#session-export")
    saved = tmp_path / "session.zip"
    download.value.save_as(saved)
    assert saved.stat().st_size > 0
    upload(page, saved)
    page.click("#session-load")
    page.wait_for_function("() => document.querySelector('#session-status').innerText.includes('Resumed')")
    open_tab(page, "Chat")  # the import is a conversation of its own, named apart from the original
    page.wait_for_function("() => [...document.querySelectorAll('.conv-list label')].some(l => "
                           "l.innerText.includes('Catherine (imported)'))")
    names = conversation_names(page)
    assert [n.split(" · ")[0] for n in names] == ["▶ Catherine (imported)", "Catherine"], names
    page.locator(".conv-list").first.screenshot(path=str(SHOTS / "imported-conversation.png"))
    open_tab(page, "Session")
    bad = tmp_path / "corrupt.zip"
    bad.write_bytes(b"PK\x03\x04 not really a zip")
    upload(page, bad)
    page.click("#session-load")
    page.wait_for_selector(".toast-body")
    page.wait_for_timeout(500)
    assert "Resumed" not in page.inner_text("#session-status")


def test_the_current_node_state_downloads_as_a_state_file(page, tmp_path):
    """Issue 17: a persona built by prompting is shared as a state file (the Session tab, the current node). One
    click on "Download the node's state" downloads it, as "Download this session" does (a walkthrough found the
    file only offered in the box beside the button)."""
    from safetensors.torch import load_file

    generate(page, "You are Mr. Darcy.")
    open_tab(page, "Session")
    page.fill("#state-file-node textarea", "")
    with page.expect_download() as download:
        page.click("#state-file-export")
    saved = tmp_path / "state.safetensors"
    download.value.save_as(saved)
    tensors = load_file(str(saved))
    assert any(name.startswith("blocks.0.") for name in tensors) and error_badges(page) == 0


def test_a_refusal_shows_the_visitors_text_as_typed(page):
    """A walkthrough: a toast drew what the visitor typed as HTML, so a node id "<b>x" showed as a bold x and
    "a<script>" as "a", the tag and the closing quote gone. Toasts now show it as typed."""
    open_tab(page, "Session")
    for typed in ("<b>x", "a<script>"):
        page.fill("#state-file-node textarea", typed)
        page.click("#state-file-export")
        page.wait_for_function("t => [...document.querySelectorAll('.toast-body')].some(e => e.innerText.includes(t))",
                               arg=f"Unknown node id '{typed}'")
        assert not page.locator(".toast-body b").count() and error_badges(page) == 0
