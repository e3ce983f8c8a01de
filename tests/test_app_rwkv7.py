"""The web app on a tiny random RWKV-7 `.pth` with the bundled World tokenizer, driven through gradio_client:
generate, continue, chat, compare and keep, the tree, the State tab's data, export/import."""
import pytest

gradio = pytest.importorskip("gradio")
from gradio_client import Client, handle_file  # noqa: E402

from .app_helpers import launched  # noqa: E402
from .rwkv7_helpers import save_pth, tiny_model7  # noqa: E402
from .test_app import users  # noqa: E402

WORLD = dict(vocab_size=65536, hidden_size=64, num_hidden_layers=2)  # World's vocabulary, one head of 64


@pytest.fixture(scope="module")
def served7(tmp_path_factory):
    pth = save_pth(tiny_model7(seed=5, **WORLD), tmp_path_factory.mktemp("app7") / "rwkv7-tiny.pth")
    with launched(pth, max_prompt_chars=5000) as app:
        yield app


@pytest.fixture
def client7(served7):
    return Client(served7[0], verbose=False)


def test_generate_continue_and_tree(client7):
    text = client7.predict("The weather today", "deterministic", 8, 1, api_name="/generate")
    assert isinstance(text, str) and text
    nodes = client7.predict(api_name="/tree")
    prompt = next(n for n in nodes if n["role"] == "text")
    more = client7.predict(prompt["id"], " and", "balanced", 6, 3, api_name="/continue")
    assert isinstance(more, str)
    assert len(client7.predict(api_name="/tree")) == len(nodes) + 2  # " and" under the prompt, its continuation


def test_chat_two_turns(client7):
    client7.predict("Hello!", api_name="/chat")
    messages = client7.predict("Tell me more.", api_name="/chat")
    assert users(messages) == ["Hello!", "Tell me more."] and messages[-1]["role"] == "assistant"


def test_compare_and_keep(client7):
    client7.predict("Once upon a time", "deterministic", 4, 1, api_name="/generate")
    columns = client7.predict(2, 5, "balanced", 1, "balanced", 2, "balanced", None, "balanced", None,
                              api_name="/compare")
    assert len(columns) == 8 and all(isinstance(c, str) for c in columns[:2]) and columns[2:4] == ("", "")
    assert columns[4:] == ("1", "2", "", "")  # the seeds each column used (unused columns: "")
    assert client7.predict(api_name="/keep_2")


def test_state_report_is_per_layer_and_head(client7):
    client7.predict("State me", "deterministic", 4, 1, api_name="/generate")
    current = next(n for n in client7.predict(api_name="/tree") if n["current"])
    norms, decay, heatmap, *_ = client7.predict(current["id"], None, "wkv", api_name="/state")
    rows = norms["data"] if isinstance(norms, dict) else norms
    assert rows, "per-layer norms of the RWKV-7 state"
    assert "wkv" in heatmap


def test_export_then_import_resumes(client7, served7):
    client7.predict("keep this", api_name="/chat")
    path = client7.predict(api_name="/export_session")
    other = Client(served7[0], verbose=False)
    assert "Resumed" in other.predict(handle_file(path), api_name="/import_session")
