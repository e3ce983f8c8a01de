"""The state inspector's data: per-layer norms of the five state tensors, a layer x channel map of one of them,
each layer's effective decay, how the state moved over the last generation, and the change between two nodes.

About rescaling: this model applies `rescale_every` to activations only (the residual stream is halved every
N blocks and the two output projections scaled to match). The state never holds rescaled values: the token
shifts are stored after the layer norm (ln1/ln2 outputs), and the WKV numerator, denominator and max come from
key and value projections whose weights are not rescaled. So the values below are the state as stored, cast
to float32, and they mean the same in every dtype; nothing needs undoing.
"""
from __future__ import annotations

import torch

from ..state import MAX_INIT, STATE_NAMES

MAX_COLUMNS = 192  # a heatmap wider than this averages neighbouring channels
MAX_TRACE_TOKENS = 256  # the per-token trace runs at most this many tokens of the last generation
DECAY_POINTS = 96


def as_float(state: list[torch.Tensor]) -> list[torch.Tensor]:
    """(C, L) float32 per tensor; the running max's "no token yet" sentinel reads as 0."""
    out = [s[0].detach().float().cpu() for s in state]  # 5 x (C, L)
    out[4] = torch.where(out[4] <= MAX_INIT / 10, torch.zeros_like(out[4]), out[4])
    return out


def layer_norms(state: list[torch.Tensor]) -> list[dict]:
    """{layer, tensor, norm}: the L2 norm over channels of each tensor at each layer."""
    rows = []
    for name, tensor in zip(STATE_NAMES, as_float(state)):
        for layer, value in enumerate(tensor.norm(dim=0).tolist()):  # (L,)
            rows.append({"layer": layer, "tensor": name, "norm": float(value)})
    return rows


def heatmap(state: list[torch.Tensor], name: str) -> dict:
    """{tensor, values (L rows x columns), channels_per_column, min, max} for one state tensor."""
    if name not in STATE_NAMES:
        raise ValueError(f"unknown state tensor {name!r}: one of {', '.join(STATE_NAMES)}")
    tensor = as_float(state)[STATE_NAMES.index(name)].T  # (L, C)
    group = max(1, -(-tensor.size(1) // MAX_COLUMNS))
    if group > 1:
        pad = (-tensor.size(1)) % group
        tensor = torch.nn.functional.pad(tensor, (0, pad)).view(tensor.size(0), -1, group).mean(-1)  # (L, C/g)
    return {"tensor": name, "values": tensor.tolist(), "channels_per_column": group,
            "min": float(tensor.min()), "max": float(tensor.max())}


def decay_rows(model) -> list[dict]:
    """{layer, rank, decay}: each layer's per-channel decay exp(-exp(time_decay)), sorted, sampled evenly."""
    rows = []
    for layer, block in enumerate(model.rwkv.blocks):
        decay = torch.exp(-torch.exp(block.attention.time_decay.detach().float().cpu())).sort().values  # (A,)
        picks = torch.linspace(0, decay.numel() - 1, min(DECAY_POINTS, decay.numel())).round().long()
        for rank, index in enumerate(picks.tolist()):
            rows.append({"layer": f"layer {layer}", "channel rank": rank / max(1, len(picks) - 1),
                         "decay": float(decay[index])})
    return rows


@torch.no_grad()
def trace_rows(tree, node_id: str) -> list[dict]:
    """{token, layer, norm}: the WKV numerator's per-layer norm after each token of the node (its last
    generation), run again token by token from the parent's state (at most MAX_TRACE_TOKENS tokens)."""
    node = tree.node(node_id)
    if node.parent is None:
        return []
    state, _ = tree.state_at(node.parent)
    model, rows = tree.model, []
    state = [s.to(model.device) for s in state]
    for index, token in enumerate(node.tokens[:MAX_TRACE_TOKENS]):
        state = model(input_ids=torch.tensor([[token]], device=model.device), state=state, use_cache=True).state
        norms = as_float(state)[2].norm(dim=0).tolist()  # (L,)
        rows.extend({"token": index, "layer": f"layer {layer}", "norm": float(v)} for layer, v in enumerate(norms))
    return rows


def diff_rows(tree, first: str, second: str) -> list[dict]:
    """{layer, tensor, norm}: per-layer norm of (second's state - first's state), tensor by tensor."""
    a, _ = tree.state_at(first)
    b, _ = tree.state_at(second)
    rows = []
    for name, x, y in zip(STATE_NAMES, as_float(a), as_float(b)):
        for layer, value in enumerate((y - x).norm(dim=0).tolist()):
            rows.append({"layer": layer, "tensor": name, "norm": float(value)})
    return rows
