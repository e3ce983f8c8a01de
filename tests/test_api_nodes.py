"""Node ids through the HTTP API: a gradio_client user reads the tree (/tree) and continues, rewinds, forces,
selects, inspects and deletes by id, and edits or switches chat messages by index — as a browser does by
clicking, without the pickers' choice lists (which an API client never receives)."""
import pytest

pytest.importorskip("gradio")
from gradio_client import Client  # noqa: E402

from rwkv_app.ui import build_app  # noqa: E402

from .app_helpers import free_port, tiny_playground, write_tiny_model  # noqa: E402
from .test_app import text  # noqa: E402


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    playground = tiny_playground(write_tiny_model(tmp_path_factory.mktemp("api") / "tiny"))
    demo = build_app(playground)
    demo.queue()
    _, url, _ = demo.launch(server_name="127.0.0.1", server_port=free_port(), prevent_thread_lock=True, quiet=True)
    yield url, playground
    demo.close()
    playground.close()


def tree(client) -> list[dict]:
    return client.predict(api_name="/tree")


def test_the_tree_lists_every_node_with_its_parent(served):
    client = Client(served[0], verbose=False)
    completion = client.predict("Hello there", "balanced", 6, 1, api_name="/generate")
    rows = tree(client)
    root, prompt, generated = rows
    assert root["parent"] is None and prompt["parent"] == root["id"] and generated["parent"] == prompt["id"]
    assert prompt["text"] == "Hello there" and generated["text"] == completion and generated["current"]
    assert generated["tokens"] == 6
    client.close()


def test_continue_rewind_force_select_and_delete_by_id(served):
    client = Client(served[0], verbose=False)
    client.predict("Hello there", "balanced", 6, 1, api_name="/generate")
    prompt = tree(client)[1]
    branch = client.predict(prompt["id"], " again", "balanced", 4, 2, api_name="/continue")
    rows = tree(client)
    added = [r for r in rows if r["parent"] == prompt["id"]]
    assert len(added) == 2 and any(r["text"] == " again" for r in added)
    assert rows[-1]["text"] == branch and rows[-1]["current"]

    first = next(r for r in added if r["text"] != " again")
    before = len(tree(client))
    client.predict(first["id"], 2, "balanced", 3, 3, api_name="/rewind")  # the first 2 tokens, then resample
    client.predict(first["id"], 1, 7, "balanced", 3, 3, api_name="/force")  # token 7 in place of the second
    rows = {r["id"]: r for r in tree(client)}
    assert len(rows) > before
    current = next(r for r in rows.values() if r["current"])
    forced = rows[current["parent"]]  # the forced sibling: the node's first token, then token 7
    assert forced["parent"] == prompt["id"] and forced["tokens"] == 2

    selected = client.predict(first["id"], api_name="/select_node")
    details = selected[1]
    assert details["id"] == first["id"] and details["tokens"] == 6
    assert selected[-1] == first["text"]  # the Continuation box: the node's own generated text
    assert client.predict(prompt["id"], api_name="/select_node")[-1] == ""  # typed text: nothing generated there
    norms = client.predict(first["id"], prompt["id"], "num", api_name="/state")[0]
    assert norms["data"]

    client.predict(first["id"], api_name="/delete_node")
    assert first["id"] not in {r["id"] for r in tree(client)}
    client.close()


def test_chat_edit_and_branch_switch_by_message_index(served):
    client = Client(served[0], verbose=False)
    client.predict("Hello!", api_name="/chat")
    edited = client.predict("0", "Good morning!", api_name="/chat_edit")  # message 0: the first user turn
    assert [text(m) for m in edited if m["role"] == "user"] == ["Good morning!"]
    back = client.predict("0", api_name="/chat_previous_branch")
    assert [text(m) for m in back if m["role"] == "user"] == ["Hello!"]
    client.close()
