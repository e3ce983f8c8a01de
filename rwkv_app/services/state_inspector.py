"""The state inspector's data, through the model's family: per-layer norms of each state tensor, a layer x column
map of one of them (columns are channels, or heads for a per-head matrix), each layer's decay, how the state
moved over the last generation, and the change between two nodes. Everything returned is plain data.

The values are the state as stored, cast to float32. For RWKV-4, `rescale_every` touches activations only (the
token shifts are stored after the layer norms, the WKV sums come from unrescaled key/value projections), so
they mean the same in every dtype.
"""
from __future__ import annotations

from dataclasses import asdict

import torch

from ..errors import InputError

MAX_COLUMNS = 192  # a heatmap wider than this averages neighbouring columns
MAX_TRACE_TOKENS = 256  # the per-token trace runs at most this many tokens of the last generation


def describe(tree) -> list[dict]:
    """{name, shape, dtype, meaning, columns} for each tensor of the tree's state (one row)."""
    return [asdict(t) for t in tree.family.tensors(tree.model)]


def layer_norms(family, state) -> list[dict]:
    """{layer, tensor, norm}: the L2 norm over each layer's row of each tensor."""
    return norm_rows(family, state, None)


def diff_rows(tree, first: str, second: str) -> list[dict]:
    """{layer, tensor, norm}: per-layer norm of (second's state - first's state), tensor by tensor."""
    a, _ = tree.state_at(first)
    b, _ = tree.state_at(second)
    return norm_rows(tree.family, b, a)


def norm_rows(family, state, minus) -> list[dict]:
    rows = []
    for name in family.state_names:
        matrix = family.layer_matrix(state, name)  # (L, columns)
        if minus is not None:
            matrix = matrix - family.layer_matrix(minus, name)
        rows += [{"layer": layer, "tensor": name, "norm": float(v)} for layer, v in enumerate(matrix.norm(dim=1))]
    return rows


def heatmap(family, state, name: str) -> dict:
    """{tensor, values (L rows x columns), channels_per_column, min, max} for one state tensor."""
    if name not in family.state_names:
        raise InputError(f"unknown state tensor {str(name)[:40]!r}: this {family.label} model's are "
                         f"{', '.join(family.state_names)}")
    tensor = family.layer_matrix(state, name)  # (L, C)
    group = max(1, -(-tensor.size(1) // MAX_COLUMNS))
    if group > 1:
        pad = (-tensor.size(1)) % group
        tensor = torch.nn.functional.pad(tensor, (0, pad)).view(tensor.size(0), -1, group).mean(-1)  # (L, C/g)
    return {"tensor": name, "values": tensor.tolist(), "channels_per_column": group,
            "min": float(tensor.min()), "max": float(tensor.max())}


def decay_rows(tree) -> list[dict]:
    """{layer, channel rank, decay}: each layer's per-channel decay, sorted, sampled evenly."""
    return tree.family.decay_rows(tree.model)


@torch.no_grad()
def trace_rows(tree, node_id: str) -> list[dict]:
    """{token, layer, norm}: the family's memory tensor's per-layer norm after each token of the node (its last
    generation), run again token by token from the parent's state (at most MAX_TRACE_TOKENS tokens)."""
    node = tree.node(node_id)
    if node.parent is None:
        return []
    family, model, rows = tree.family, tree.model, []
    state = family.to(tree.state_at(node.parent)[0], model.device)
    for index, token in enumerate(node.tokens[:MAX_TRACE_TOKENS]):
        state = model(input_ids=torch.tensor([[token]], device=model.device), state=state, use_cache=True).state
        norms = family.layer_matrix(state, family.memory_tensor).norm(dim=1).tolist()  # (L,)
        rows.extend({"token": index, "layer": f"layer {layer}", "norm": float(v)} for layer, v in enumerate(norms))
    return rows


def state_report(tree, node_id: str, tensor: str | None = None, other_id: str | None = None) -> dict:
    """Everything the State tab shows for a node, as plain data: tensors (describe), norms, decay, heatmap
    (of `tensor`, default the family's memory tensor), trace, and diff (against `other_id`, if given)."""
    family = tree.family
    state, _ = tree.state_at(node_id)
    return {"tensors": describe(tree), "norms": layer_norms(family, state), "decay": decay_rows(tree),
            "heatmap": heatmap(family, state, tensor or family.memory_tensor), "trace": trace_rows(tree, node_id),
            "diff": diff_rows(tree, node_id, other_id) if other_id else []}
