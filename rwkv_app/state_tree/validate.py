"""Checks on an imported session before anything is built from it: the tree JSON and the safetensors header.

Everything here reads plain data (parsed JSON, the raw header bytes) and raises SessionFileError naming
what is wrong; nothing is executed and no tensor is allocated before the header's sizes are accepted.
"""
from __future__ import annotations

import json
import math
import re
from typing import Any

from .identity import ModelIdentity
from .nodes import ROLES, ROOT, STARTS, STATE, SessionError

FORMAT, VERSION = "rwkv-playground-session", 2  # version 2 adds "state" nodes (state roots: a state, no logits)
READABLE_VERSIONS = (1, 2)
ID_PATTERN = re.compile(r"[0-9a-f]{8,64}")
SAFETENSORS_DTYPES = {"float32": "F32", "float16": "F16", "bfloat16": "BF16"}
ITEM_SIZES = {"F32": 4, "F16": 2, "BF16": 2}
NODE_KEYS = {"id", "parent", "role", "tokens", "text", "probs", "top", "meta", "children"}


class SessionFileError(SessionError):
    """A session file that is not one, is corrupt, is too large, or was saved with another model."""


def fail(message: str) -> None:
    raise SessionFileError(f"session file rejected: {message}")


def parse_json(data: bytes) -> Any:
    def no_constants(name: str):
        fail(f"tree.json contains {name}, which is not JSON")
    try:
        return json.loads(data.decode("utf-8"), parse_constant=no_constants)
    except (UnicodeDecodeError, ValueError, RecursionError) as err:
        fail(f"tree.json is not valid JSON ({type(err).__name__}: {str(err)[:100]})")


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def is_prob(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and 0 <= value <= 1


def validate_identity(data: Any) -> ModelIdentity:
    fields = {"model_id": str, "dtype": str, "vocab_size": int, "hidden_size": int, "attention_hidden_size": int,
              "num_hidden_layers": int, "weights": str, "family": str}
    if not isinstance(data, dict) or set(data) - {"family"} != set(fields) - {"family"}:  # older files: no family
        fail(f"'model' must be an object with exactly the keys {sorted(fields)} ('family' may be absent)")
    for key, kind in fields.items():
        if key in data and (not isinstance(data[key], kind) or isinstance(data[key], bool)):
            fail(f"model.{key} must be {kind.__name__}")
    return ModelIdentity(**data)


def validate_document(doc: Any, vocab_size: int, max_nodes: int, max_tokens: int) -> dict:
    """The whole tree.json: format, version, identity, and the nodes forming one tree rooted at 'root'."""
    expected = {"format", "version", "model", "tokenizer", "root", "meta", "nodes"}
    if not isinstance(doc, dict) or set(doc) != expected:
        fail(f"tree.json must be an object with exactly the keys {sorted(expected)}")
    if doc["format"] != FORMAT or doc["version"] not in READABLE_VERSIONS or isinstance(doc["version"], bool):
        fail(f"format {doc['format']!r} version {doc['version']!r}; expected {FORMAT!r} version "
             f"{' or '.join(map(str, READABLE_VERSIONS))}")
    if doc["tokenizer"] is not None and not isinstance(doc["tokenizer"], str):
        fail("'tokenizer' must be a string or null")
    if not isinstance(doc["meta"], dict):
        fail("'meta' must be an object")
    nodes = doc["nodes"]
    if not isinstance(nodes, list) or not 1 <= len(nodes) <= max_nodes:
        fail(f"'nodes' must be a list of 1 to {max_nodes} nodes")
    total = 0
    for node in nodes:
        validate_node(node, vocab_size)
        total += len(node["tokens"])
    if total > max_tokens:
        fail(f"{total} tokens in all, more than the limit of {max_tokens}")
    check_tree_shape(nodes, doc["root"])
    return doc


def validate_node(node: Any, vocab_size: int) -> None:
    if not isinstance(node, dict) or set(node) != NODE_KEYS:
        fail(f"each node must be an object with exactly the keys {sorted(NODE_KEYS)}")
    name = f"node {str(node['id'])[:40]!r}"
    if not isinstance(node["id"], str) or not ID_PATTERN.fullmatch(node["id"]):
        fail(f"{name}: ids must be 8 to 64 lowercase hex characters")
    if node["parent"] is not None and not isinstance(node["parent"], str):
        fail(f"{name}: parent must be a node id or null")
    if node["role"] not in ROLES:
        fail(f"{name}: role must be one of {ROLES}")
    tokens = node["tokens"]
    if not isinstance(tokens, list) or not all(is_int(t) and 0 <= t < vocab_size for t in tokens):
        fail(f"{name}: tokens must be a list of token ids in [0, {vocab_size})")
    if (node["role"] in STARTS) != (not tokens):
        fail(f"{name}: the root and state nodes have no tokens and every other node has at least one")
    if not isinstance(node["text"], str) or not isinstance(node["meta"], dict):
        fail(f"{name}: text must be a string and meta an object")
    if not isinstance(node["children"], list) or not all(isinstance(c, str) for c in node["children"]):
        fail(f"{name}: children must be a list of node ids")
    validate_probs(node, name, vocab_size)


def validate_probs(node: dict, name: str, vocab_size: int) -> None:
    probs, top, size = node["probs"], node["top"], len(node["tokens"])
    if (probs is None) != (top is None):
        fail(f"{name}: probs and top are both present or both null")
    if probs is None:
        return
    if not isinstance(probs, list) or len(probs) != size or not all(is_prob(p) for p in probs):
        fail(f"{name}: probs must hold one probability in [0, 1] per token")
    if not isinstance(top, list) or len(top) != size:
        fail(f"{name}: top must hold one list of alternatives per token")
    for alternatives in top:
        if not isinstance(alternatives, list) or len(alternatives) > 64 or not all(
                isinstance(pair, list) and len(pair) == 2 and is_int(pair[0]) and 0 <= pair[0] < vocab_size
                and is_prob(pair[1]) for pair in alternatives):
            fail(f"{name}: each token's alternatives must be up to 64 [token id, probability] pairs")


def check_tree_shape(nodes: list[dict], root: Any) -> None:
    """Unique ids; one root; each parent lists its child exactly once; every node reachable from the root."""
    by_id = {node["id"]: node for node in nodes}
    if len(by_id) != len(nodes):
        fail("node ids are not unique")
    if not isinstance(root, str) or root not in by_id or by_id[root]["parent"] is not None \
            or by_id[root]["role"] != ROOT:
        fail("'root' must name the one node with role 'root' and no parent")
    for node in nodes:
        if node["id"] != root and (node["parent"] is None or node["parent"] not in by_id):
            fail(f"node {node['id']!r}: parent is missing")
        if node["id"] != root and node["role"] == ROOT:
            fail(f"node {node['id']!r}: only the root has role 'root'")
        if node["role"] == STATE and node["parent"] != root:
            fail(f"node {node['id']!r}: a state node is a child of the root")
        for child in node["children"]:
            if by_id.get(child, {}).get("parent") != node["id"]:
                fail(f"node {node['id']!r} lists child {child[:40]!r}, which is not its child")
        if len(set(node["children"])) != len(node["children"]):
            fail(f"node {node['id']!r} lists a child twice")
    seen, stack = {root}, [root]
    while stack:
        for child in by_id[stack.pop()]["children"]:
            if child in seen:
                fail(f"node {child!r} is reached twice: the nodes do not form a tree")
            seen.add(child)
            stack.append(child)
    if len(seen) != len(nodes):
        fail(f"{len(nodes) - len(seen)} nodes are not reachable from the root (a cycle or a detached branch)")


def expected_entries(state_spec: dict, vocab_size: int) -> dict[str, tuple[str, list[int]]]:
    """Each entry name -> (safetensors dtype, shape): the family's one-row state tensors and the logits."""
    entries = {name: (SAFETENSORS_DTYPES[str(dtype).replace("torch.", "")], list(shape))
               for name, (dtype, shape) in state_spec.items()}
    return {**entries, "logits": ("F32", [vocab_size])}


def validate_safetensors(data: bytes, node_ids: set[str], root: str, shapes: dict[str, tuple[str, list[int]]],
                         max_header: int, state_nodes: set[str] = frozenset()) -> list[str]:
    """Check the header of a safetensors buffer against the model's shapes before loading any tensor.

    Keys are "<node id>/<entry>"; every kept node has every entry of `shapes` (expected_entries), except that a
    state node (`state_nodes`) has no logits and must be there (nothing could recompute it); dtypes and shapes
    are the model's; the byte ranges tile the data exactly. Returns the node ids with states, in file order.
    """
    if len(data) < 8:
        fail("states.safetensors is too short")
    size = int.from_bytes(data[:8], "little")
    if size > min(max_header, len(data) - 8):
        fail(f"states.safetensors declares a {size}-byte header in a {len(data)}-byte file")
    try:
        header = json.loads(data[8:8 + size].decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        fail("states.safetensors has an unreadable header")
    if not isinstance(header, dict):
        fail("states.safetensors header must be an object")
    header.pop("__metadata__", None)
    ranges, kept = [], {}
    for key, info in header.items():
        node_id, _, name = key.partition("/")
        if node_id not in node_ids or node_id == root or name not in shapes or \
                (name == "logits" and node_id in state_nodes):
            fail(f"states.safetensors has an unexpected entry {key[:80]!r}")
        ranges.append(check_entry(key, info, *shapes[name]))
        kept.setdefault(node_id, set()).add(name)
    if any(names != set(shapes) - ({"logits"} if node_id in state_nodes else set())
           for node_id, names in kept.items()):
        fail("states.safetensors has a node without all of its entries")
    missing = sorted(state_nodes - set(kept))
    if missing:
        fail(f"states.safetensors lacks the state of state node {missing[0][:40]!r}")
    position = 0
    for begin, end in sorted(ranges):
        if begin != position:
            fail("states.safetensors tensors overlap or leave gaps")
        position = end
    if position != len(data) - 8 - size:
        fail("states.safetensors data does not match its header")
    return list(kept)


def check_entry(key: str, info: Any, dtype: str, shape: list[int]) -> tuple[int, int]:
    if not isinstance(info, dict) or set(info) != {"dtype", "shape", "data_offsets"}:
        fail(f"states.safetensors entry {key[:80]!r} is malformed")
    if info["dtype"] != dtype or not isinstance(info["shape"], list) or not all(is_int(d) for d in info["shape"]) \
            or info["shape"] != shape:
        fail(f"states.safetensors entry {key[:80]!r} is {str(info['dtype'])[:16]} {str(info['shape'])[:60]}, "
             f"this model's is {dtype} {shape}")
    offsets = info["data_offsets"]
    if not isinstance(offsets, list) or len(offsets) != 2 or not all(is_int(o) for o in offsets):
        fail(f"states.safetensors entry {key[:80]!r} has bad data_offsets")
    begin, end = offsets
    if not 0 <= begin <= end or end - begin != math.prod(shape) * ITEM_SIZES[dtype]:
        fail(f"states.safetensors entry {key[:80]!r} has a byte range that does not fit its shape")
    return begin, end
