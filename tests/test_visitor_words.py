"""What a new visitor's walkthrough found in the Playground's node details and in the messages of Rewind, Compare and
the Session tab, checked on the services (tests/test_browser_tree.py and test_browser_newcomer.py check the pages):
seeds shown exactly, the details following the current node, messages in the visitor's words, and the model named
as the visitor sees it (never where the server keeps it)."""
import io
import json
import zipfile

import pytest

from rwkv_app.errors import InputError
from rwkv_app.services import views
from rwkv_app.state_tree import SessionFileError

from .app_helpers import tiny_playground, write_tiny_model

BIG_SEED = 3007010865544379428  # over 2**53: a browser's JSON shows 3007010865544379400


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return write_tiny_model(tmp_path_factory.mktemp("words") / "tiny")


@pytest.fixture(scope="module")
def playground(model_dir):
    service = tiny_playground(model_dir)
    yield service
    service.close()


@pytest.fixture
def session(playground):
    s = playground.new_session()
    yield s
    s.close()


# ---- 1: seeds in the node details are exact ---------------------------------------------------------------
def test_node_details_give_seeds_as_exact_strings(session):
    list(session.generate("Once upon", "balanced", 4, BIG_SEED))
    details = session.node_details(session.current)
    assert details["meta"]["seed"] == str(BIG_SEED)  # a string: JSON.parse keeps every digit
    assert json.loads(json.dumps(details), parse_int=float)["meta"]["seed"] == str(BIG_SEED)  # as a browser reads
    assert isinstance(details["tokens"], int) and isinstance(details["children"], int)  # small counts stay numbers
    list(session.generate("Once upon", "balanced", 4, 7))
    assert session.node_details(session.current)["meta"]["seed"] == "7"  # one type whatever the size


def test_exact_json_writes_every_whole_number_a_browser_would_round():
    value = {"a": 2 ** 53 - 1, "b": 2 ** 53, "c": [-(2 ** 60), 1.5, True], "d": {"seed": 3}, "e": None}
    assert views.exact_json(value) == {"a": 2 ** 53 - 1, "b": str(2 ** 53), "c": [str(-(2 ** 60)), 1.5, True],
                                       "d": {"seed": "3"}, "e": None}


# ---- 2: the details follow the current node (the redraw after Generate, Continue...) -----------------------
def test_the_redraw_after_an_action_describes_the_current_node(session):
    from rwkv_app.ui.builder import redraw

    list(session.generate("Once upon", "balanced", 4, 1))
    first = session.current
    list(session.continue_from(first, " then", "balanced", 3, 2))
    assert session.current != first
    details = redraw(session)[-1]
    assert details == session.node_details(session.current) and details["id"] == session.current
    assert redraw(None)[-1] == {}


# ---- 3: Rewind or Force with nothing clicked --------------------------------------------------------------
def test_rewind_and_force_without_a_clicked_token_say_what_to_do(session):
    list(session.generate("Once upon", "balanced", 4, 1))
    nodes, current = set(session.tree.nodes), session.current
    with pytest.raises(InputError, match=r"^click a token of the selected node first \(the rewind point\)$"):
        session.rewind(current, None)
    for position, token in ((None, 5), (1, None), (None, None)):
        with pytest.raises(InputError, match="^click a token, then pick one of its alternatives first$"):
            session.force(current, position, token)
    assert set(session.tree.nodes) == nodes and session.current == current


# ---- 4: Compare at the start of the tree -------------------------------------------------------------------
def test_compare_at_the_start_of_the_tree_says_where_to_select_a_node(session):
    with pytest.raises(InputError, match="select a node with text in the Playground tab \\(or chat first\\)"):
        session.compare(None, [("balanced", 1), ("balanced", 2)], 4)
    assert len(session.tree.nodes) == 1 and not session.generating


# ---- 5: the Session tab's file messages are whole sentences without Python names ---------------------------
def empty_zip() -> bytes:
    data = io.BytesIO()
    zipfile.ZipFile(data, "w").close()
    return data.getvalue()


def test_an_empty_zip_and_a_file_that_is_no_zip_are_named_plainly(session, tmp_path):
    empty, notes = tmp_path / "empty.zip", tmp_path / "notes.zip"
    empty.write_bytes(empty_zip())
    notes.write_bytes(b"my shopping list\n")
    with pytest.raises(SessionFileError) as refused:
        session.load_file(empty)
    assert str(refused.value).endswith("found none (the zip is empty)")
    with pytest.raises(SessionFileError) as refused:
        session.load_file(notes)
    assert str(refused.value) == "session file rejected: this is not a zip file"


# ---- 6: the model by its public name, in the details and in the session file -------------------------------
def test_the_model_is_named_without_the_server_path_and_old_files_still_import(session, playground, tmp_path,
                                                                                model_dir):
    list(session.generate("Once upon", "balanced", 4, 1))
    assert session.node_details(session.current)["meta"]["model"] == "tiny"
    path = session.export(tmp_path)
    with zipfile.ZipFile(path) as archive:
        doc = json.loads(archive.read("tree.json"))
        states = archive.read("states.safetensors")
    assert doc["model"]["model_id"] == "tiny" and str(model_dir) not in json.dumps(doc)
    for node in doc["nodes"]:  # a file written before: the server's path recorded everywhere
        if "model" in node["meta"]:
            node["meta"]["model"] = str(model_dir)
    doc["model"]["model_id"] = str(model_dir)
    old = tmp_path / "old.zip"
    with zipfile.ZipFile(old, "w") as archive:
        archive.writestr("tree.json", json.dumps(doc))
        archive.writestr("states.safetensors", states)
    other = playground.new_session()
    try:
        other.load_file(old)  # the identity check compares the weights, not the name
        assert other.tree.identity.model_id == "tiny"
        generated = next(n for n in other.tree.nodes.values() if n.role == "generated")
        assert other.node_details(generated.id)["meta"]["model"] == "tiny"
    finally:
        other.close()
