"""The State tab's per-head data (issue 17): RWKV-7's WKV matrices per layer x head, one head's matrix, the decay and
in-context learning rate of the node's last token (exactly what the forward used), the per-head difference of two
nodes; a family without heads (RWKV-4, the tiny RNN) gets None and its report as before."""
import pytest
import torch

from rwkv_app.errors import InputError
from rwkv_app.models.rwkv7.config import DECAY_SCALE
from rwkv_app.services import state_inspector
from rwkv_app.state_tree import SessionTree

from .fake_family import TinyRnnConfig, TinyRnnForCausalLM
from .rwkv7_helpers import tiny_model7
from .session_helpers import tiny_model

PROMPT = [5, 17, 42, 99, 7, 3]
HEADS = dict(hidden_size=128, head_dim=32, num_hidden_layers=3)  # 3 layers x 4 heads of 32


@pytest.fixture(scope="module")
def tree():
    tree = SessionTree(tiny_model7(2, **HEADS), model_id="m")
    tree.meta["start"] = tree.extend_tokens(tree.root, PROMPT).node
    tree.meta["next"] = tree.extend_tokens(tree.meta["start"], [8, 9]).node
    return tree


def wkv(tree, node):
    return tree.state_at(node)[0][2][0]  # (L, H, N, N): the test knows RWKV-7's layout; the services do not


def test_norms_and_the_chosen_heads_matrix_are_the_states_own_values(tree):
    node = tree.meta["next"]
    report = state_inspector.head_report(tree, node, 2, 3.0)  # a slider sends floats
    assert {k: report[k] for k in ("tensor", "layers", "heads", "size", "rows", "columns")} == \
        {"tensor": "wkv", "layers": 3, "heads": 4, "size": 32, "rows": "value", "columns": "key"}
    matrices = wkv(tree, node)
    assert torch.equal(torch.tensor(report["matrix"]), matrices[2, 3])  # [value, key], as BlinkDL's
    torch.testing.assert_close(torch.tensor(report["norms"]), matrices.flatten(2).norm(dim=-1))
    assert (report["layer"], report["head"], report["diff"]) == (2, 3, [])


@torch.no_grad()
def test_rates_are_the_decay_and_iclr_the_forward_used_at_the_last_token(tree):
    """Caught from the model's own LoRA outputs while it runs the whole path: w = exp(-e^-0.5 sigmoid(.)), a = sigmoid(.)."""
    model, node = tree.model, tree.meta["next"]
    caught, hooks = {}, []
    for i, block in enumerate(model.model.layers):
        for name in ("w_lora", "a_lora"):
            hooks.append(getattr(block.attn, name).register_forward_hook(
                lambda module, inputs, out, key=(name, i): caught.__setitem__(key, out[0, -1].float())))
    try:
        model(torch.tensor([tree.path_tokens(node)]))
    finally:
        for hook in hooks:
            hook.remove()
    rates = state_inspector.head_report(tree, node)["rates"]
    assert rates["token"] == "9" and set(rates["meanings"]) == {"decay", "iclr"}  # no tokenizer: the id
    for layer in range(3):
        decay = torch.exp(-DECAY_SCALE * torch.sigmoid(caught["w_lora", layer])).view(4, 32).mean(-1)  # (H,)
        iclr = torch.sigmoid(caught["a_lora", layer]).view(4, 32).mean(-1)  # (H,)
        torch.testing.assert_close(torch.tensor(rates["values"]["decay"][layer]), decay, atol=1e-6, rtol=0)
        torch.testing.assert_close(torch.tensor(rates["values"]["iclr"][layer]), iclr, atol=1e-6, rtol=0)
    decays = torch.tensor(rates["values"]["decay"])
    assert bool(((decays > 0.545) & (decays < 1)).all())


def test_the_root_has_no_last_token(tree):
    rates = state_inspector.head_report(tree, tree.root)["rates"]
    assert rates["values"] == {} and rates["token"] is None


def test_the_difference_is_the_norm_of_the_matrices_difference_per_head_and_per_layer(tree):
    start, node = tree.meta["start"], tree.meta["next"]
    report = state_inspector.head_report(tree, start, 0, 0, node)
    expected = (wkv(tree, node) - wkv(tree, start)).flatten(2).norm(dim=-1)  # (L, H)
    torch.testing.assert_close(torch.tensor(report["diff"]), expected)
    assert state_inspector.head_report(tree, node, 0, 0, node)["diff"] == [[0.0] * 4] * 3
    layers = [row["norm"] for row in state_inspector.diff_rows(tree, start, node) if row["tensor"] == "wkv"]
    torch.testing.assert_close(torch.tensor(layers), expected.norm(dim=1))  # not the difference of the norms


@pytest.mark.parametrize("value, what", [(3, "layer"), (-1, "layer"), (1.5, "layer"), ("one", "layer"), (float("inf"), "layer"),
                                         (float("nan"), "head"), (True, "head"), (4, "head")])
def test_a_layer_or_head_out_of_range_is_an_input_error(tree, value, what):
    args = (value, 0) if what == "layer" else (0, value)
    with pytest.raises(InputError, match=f"{what} must be a whole number from 0 to"):
        state_inspector.head_report(tree, tree.meta["next"], *args)


@pytest.mark.parametrize("build", [tiny_model, lambda: TinyRnnForCausalLM(TinyRnnConfig()).eval()],
                         ids=["rwkv4", "tiny-rnn"])
def test_a_family_without_heads_gets_none_and_its_report_as_before(build):
    tree = SessionTree(build(), model_id="m")
    start = tree.extend_tokens(tree.root, PROMPT).node
    node = tree.extend_tokens(start, [8, 9]).node
    assert tree.family.heads(tree.model) is None
    assert state_inspector.head_report(tree, node, 0, 0, start) is None
    report = state_inspector.state_report(tree, node, None, start)
    assert any(row["norm"] > 0 for row in report["diff"]) and report["norms"]
