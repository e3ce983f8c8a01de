"""The State tab's per-head endpoint through gradio_client (issue 17): /state_heads on a tiny random RWKV-7 with the
World tokenizer (3 layers x 4 heads), its refusals, and the same endpoint on an RWKV-4 app (no heads: hidden)."""
import re

import pytest

gradio = pytest.importorskip("gradio")
from gradio_client import Client  # noqa: E402

from .app_helpers import launched, write_tiny_model  # noqa: E402
from .rwkv7_helpers import save_pth, tiny_model7  # noqa: E402

HEADS7 = dict(vocab_size=65536, hidden_size=128, head_dim=32, num_hidden_layers=3)  # World's vocabulary, 4 heads


@pytest.fixture(scope="module")
def app7(tmp_path_factory):
    pth = save_pth(tiny_model7(seed=6, **HEADS7), tmp_path_factory.mktemp("heads7") / "rwkv7-heads.pth")
    with launched(pth) as app:
        yield app


def two_nodes(client) -> tuple[str, str]:
    """A prompt and its generation: (prompt node, generated node)."""
    client.predict("The state of things", "deterministic", 5, 1, api_name="/generate")
    nodes = client.predict(api_name="/tree")
    prompt = next(n for n in nodes if n["role"] == "text")
    return prompt["id"], next(n for n in nodes if n["current"])["id"]


def cells(svg_html: str, row: str, column: str) -> dict[tuple[int, int], float]:
    """(row, column) -> value, from the tooltips of a grid's cells."""
    found = re.findall(rf"<title>{row} (\d+), {column} (\d+): ([-0-9.e+]+)</title>", svg_html)
    return {(int(r), int(c)): float(v) for r, c, v in found}


def test_state_heads_draws_every_layer_x_head_and_the_chosen_heads_matrix(app7):
    client = Client(app7[0], verbose=False)
    prompt, node = two_nodes(client)
    help_text, layer, head, grids, matrix = client.predict(node, None, 2, 3, api_name="/state_heads")
    assert "delta rule" in help_text and layer["choices"] == [["0", 0], ["1", 1], ["2", 2]] and len(head["choices"]) == 4
    assert (layer["value"], head["value"]) == (2, 3)  # the pickers: updates with the model's layers and heads
    norms = cells(grids, "layer", "head")  # the norm, decay and ICLR grids share the tooltips' form
    assert {key for key in norms} == {(r, c) for r in range(3) for c in range(4)}
    assert "Decay w at the last token" in grids and "In-context learning rate a" in grids
    assert "Choose a node in" in grids  # no compared node: the difference panel says why it is empty
    assert "Layer 2, head 3" in matrix and len(cells(matrix, "value", "key")) == 32 * 32
    session = app7[1].session_for(client.session_hash)
    wkv = session.tree.state_at(node)[0][2][0]  # (L, H, N, N): the test may know the layout
    assert cells(matrix, "value", "key")[(5, 7)] == pytest.approx(float(wkv[2, 3, 5, 7]), rel=1e-3, abs=1e-6)
    _, _, _, compared, _ = client.predict(prompt, node, 0, 0, api_name="/state_heads")
    assert "Choose a node in" not in compared and "Difference" in compared
    client.close()


@pytest.mark.parametrize("layer, head, words", [(3, 0, "layer must be a whole number from 0 to 2"),
                                                (0, 4, "head must be a whole number from 0 to 3")])
def test_a_layer_or_head_out_of_range_is_refused(app7, layer, head, words):
    client = Client(app7[0], verbose=False)
    _, node = two_nodes(client)
    with pytest.raises(Exception, match=f"(?i){words}"):
        client.predict(node, None, layer, head, api_name="/state_heads")
    client.close()


def test_the_state_tab_still_draws_rwkv7s_per_layer_plots(app7):
    client = Client(app7[0], verbose=False)
    _, node = two_nodes(client)
    norms, decay, heatmap, *_, tensor = client.predict(node, None, "wkv", api_name="/state")
    assert norms["data"] and "wkv" in heatmap and tensor["value"] == "wkv"  # the heatmap picker, with this model's tensors
    client.close()


def test_on_rwkv4_the_per_head_section_is_hidden(tmp_path):
    with launched(write_tiny_model(tmp_path)) as (url, _):
        client = Client(url, verbose=False)
        client.predict("Hello", "deterministic", 3, 1, api_name="/generate")
        help_text, layer, head, grids, matrix = client.predict(None, None, 0, 0, api_name="/state_heads")
        assert (help_text, grids, matrix) == ("", "", "") and not layer["visible"] and not head["visible"]
        norms, *_, tensor = client.predict(None, None, "num", api_name="/state")
        assert norms["data"] and tensor["value"] == "num" and len(tensor["choices"]) == 5
        client.close()
