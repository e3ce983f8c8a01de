"""A session file exported by the code before the family interface (commit e9178cc) still imports."""
from pathlib import Path

from rwkv_app.state_tree import import_session

from .session_helpers import assert_resumes_exactly, tiny_model
from .test_tokenizer import build_tokenizer

FIXTURE = Path(__file__).parent / "fixtures" / "session_v1_rwkv4.zip"  # tiny_model(seed=3), "tiny"


def test_a_session_file_from_before_the_family_interface_imports_and_resumes_exactly():
    tree = import_session(FIXTURE.read_bytes(), tiny_model(3), build_tokenizer(), model_id="tiny")
    assert tree.meta["note"] == "made by the code at e9178cc"
    assert len(tree.nodes) == 4
    leaves = [node.id for node in tree.nodes.values() if not node.children]
    assert len(leaves) == 2
    for node_id in leaves:
        assert_resumes_exactly(tree, node_id)
