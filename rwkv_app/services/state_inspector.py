"""The state inspector's data, through the model's family: per-layer norms of each state tensor, a layer x column
map of one of them (columns are channels, or heads for a per-head matrix), each layer's decay, how the state
moved over the last generation, and the change between two nodes; for a family whose state holds a matrix per head
(RWKV-7), the same per layer x head, one head's matrix, and what the update did at the node's last token
(`head_report`). Everything returned is plain data.

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
    return norm_rows(tree.family, b, a, tree.family.heads(tree.model))


def norm_rows(family, state, minus, heads: dict | None = None) -> list[dict]:
    rows = []
    for name in family.state_names:
        matrix = family.layer_matrix(state, name)  # (L, columns)
        if minus is not None and heads and name == heads["tensor"]:  # the norm of the difference of the matrices
            matrix = head_norms(family.head_matrices(state) - family.head_matrices(minus))  # (L, H)
        elif minus is not None:
            matrix = matrix - family.layer_matrix(minus, name)
        rows += [{"layer": layer, "tensor": name, "norm": float(v)} for layer, v in enumerate(matrix.norm(dim=1))]
    return rows


def head_norms(matrices: torch.Tensor) -> torch.Tensor:
    """(L, H, N, N) -> (L, H): each head's Frobenius norm."""
    return matrices.flatten(2).norm(dim=-1)


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
            "column": family.layer_matrix_column(name),
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


def head_report(tree, node_id: str, layer=None, head=None, other_id: str | None = None) -> dict | None:
    """The per-head view of a node's state, plain: the family's layout (tensor, layers, heads, size, rows, columns),
    `norms` (L x H), `matrix` (size x size) of head `head` of layer `layer` (default 0, 0), `rates` (last_token_rates)
    and `diff` (L x H norms of other's matrices - the node's; [] without `other_id`). None for a family whose state
    has no heads (RWKV-4)."""
    family = tree.family
    layout = family.heads(tree.model)
    if layout is None:
        return None
    layer, head = head_index(layer, layout["layers"], "layer"), head_index(head, layout["heads"], "head")
    matrices = family.head_matrices(tree.state_at(node_id)[0])  # (L, H, N, N)
    diff = head_norms(family.head_matrices(tree.state_at(other_id)[0]) - matrices).tolist() if other_id else []
    return {**layout, "layer": layer, "head": head, "norms": head_norms(matrices).tolist(),
            "matrix": matrices[layer, head].tolist(), "rates": last_token_rates(tree, node_id), "diff": diff}


def head_index(value, count: int, what: str) -> int:
    """A layer or head number from a client (None: 0); InputError unless it is a whole number in range."""
    if value is None:
        return 0
    if isinstance(value, str) and value.strip().isdigit():  # typed into a picker
        value = int(value)
    if isinstance(value, float) and value.is_integer():  # a number from JSON; NaN and infinities are not
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < count:
        raise InputError(f"{what} must be a whole number from 0 to {count - 1}, got {str(value)[:20]}")
    return value


@torch.no_grad()
def last_token_rates(tree, node_id: str) -> dict:
    """{token, meanings, values}: what the state update did at the node's last token (values: name -> L x H, each
    head's mean over its channels), run again from the parent's state; values {} for a node without tokens."""
    node, family, model = tree.node(node_id), tree.family, tree.model
    if node.parent is None or not node.tokens:
        return {"token": None, "meanings": family.rate_meanings, "values": {}}
    state = family.to(tree.state_at(node.parent)[0], model.device)
    if len(node.tokens) > 1:  # the state before the last token
        state = model(input_ids=torch.tensor([list(node.tokens[:-1])], device=model.device), state=state,
                      use_cache=True).state
    rates = family.token_rates(model, state, node.tokens[-1])
    text = tree.decode([node.tokens[-1]]) if tree.tokenizer else str(node.tokens[-1])
    return {"token": text, "meanings": family.rate_meanings, "values": {k: v.tolist() for k, v in rates.items()}}
