"""Saving a session to one zip file and loading it back, refusing other models and hostile files.

The zip holds exactly two members: `tree.json` (format, version, the model's identity, the tokenizer's
fingerprint, the nodes) and `states.safetensors` (each kept node's state tensors, named by the model's
family, and its logits, keyed "<node id>/<entry>"; a state root's state is always there, without logits).
Version 2 added state roots; a version 1 file (none) still imports. Loading never unpickles or executes anything: member names, sizes and
compression are checked before reading, reads are bounded, the JSON is validated as a tree over this
model's vocabulary, and the safetensors header is checked against this model's state shapes before any
tensor is allocated.
"""
from __future__ import annotations

import io
import json
import os
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import safetensors.torch

from ..errors import WrongModelError
from .identity import ModelIdentity
from .nodes import STATE, Node
from .store import StateBudget
from .tree import SessionTree
from .validate import (FORMAT, VERSION, SessionFileError, expected_entries, fail, parse_json, validate_document,
                       validate_identity, validate_safetensors)

TREE_MEMBER, STATES_MEMBER = "tree.json", "states.safetensors"
FIXED_TIME = (2020, 1, 1, 0, 0, 0)  # member timestamps: the same session gives the same bytes
MIB = 2 ** 20


@dataclass(frozen=True)
class ArchiveLimits:
    """How much an import may read. `max_states_bytes` None: the importing budget's bytes plus 16 MiB."""

    max_json_bytes: int = 32 * MIB
    max_states_bytes: int | None = None
    max_header_bytes: int = 16 * MIB
    max_nodes: int = 100_000
    max_tokens: int = 2_000_000


def export_session(tree: SessionTree, target: str | Path | BinaryIO) -> None:
    """Write the tree and its kept states (not the root's: it is the empty state) to a zip file; state roots
    are kept for good, so their states are always written."""
    write_session_zip(target, tree_json(tree), safetensors.torch.save(state_tensors(tree, tree.store.entries)))


def tree_json(tree: SessionTree) -> bytes:
    """The tree.json member: format, identity, tokenizer, meta and the nodes, parents before children."""
    order, stack = [], [tree.root]
    while stack:  # parents before children
        order.append(stack.pop())
        stack.extend(reversed(tree.nodes[order[-1]].children))
    doc = {"format": FORMAT, "version": VERSION, "model": tree.identity.to_json(), "tokenizer": tree.tokenizer_id,
           "root": tree.root, "meta": tree.meta, "nodes": [tree.nodes[i].to_json() for i in order]}
    return json.dumps(doc, allow_nan=False).encode("utf-8")


def state_tensors(tree: SessionTree, node_ids) -> dict:
    """The states.safetensors entries ("<node id>/<name>", "<node id>/logits") of the kept nodes among
    `node_ids`, in that order (least recently used first: an import keeps it); never the root's."""
    tensors = {}
    for node_id in node_ids:
        kept = tree.store.entries.get(node_id)
        if node_id != tree.root and kept is not None:
            for name, tensor in tree.family.to_named(kept.state).items():
                tensors[f"{node_id}/{name}"] = tensor
            if kept.logits is not None:  # a state root has none
                tensors[f"{node_id}/logits"] = kept.logits.detach().cpu().contiguous()  # (V,)
    return tensors


def write_session_zip(target: str | Path | BinaryIO, tree_bytes: bytes, states_bytes: bytes) -> None:
    """The session file: the two members, fixed timestamps (the same session gives the same bytes)."""
    with zipfile.ZipFile(target, "w") as archive:
        archive.writestr(zipfile.ZipInfo(TREE_MEMBER, FIXED_TIME), tree_bytes, compress_type=zipfile.ZIP_DEFLATED)
        archive.writestr(zipfile.ZipInfo(STATES_MEMBER, FIXED_TIME), states_bytes, compress_type=zipfile.ZIP_STORED)


def import_session(source: str | Path | bytes | BinaryIO, model, tokenizer=None, *, model_id: str | None = None,
                   budget: StateBudget | None = None, state_device=None, limits: ArchiveLimits | None = None,
                   top_alternatives: int = 5) -> SessionTree:
    """A SessionTree from a file written by export_session, on `model` (which must be the one it was saved with).

    Raises SessionFileError for another model or tokenizer (naming both), a corrupt file, or one over limits.
    """
    limits, budget = limits or ArchiveLimits(), budget or StateBudget()
    states_limit = limits.max_states_bytes if limits.max_states_bytes is not None else budget.max_bytes + 16 * MIB
    members = read_members(source, limits.max_json_bytes, states_limit)
    return session_from_members(members, model, tokenizer, model_id=model_id, budget=budget,
                                state_device=state_device, limits=limits, top_alternatives=top_alternatives)


def session_from_members(members: dict[str, bytes], model, tokenizer=None, *, model_id: str | None = None,
                         budget: StateBudget | None = None, state_device=None, limits: ArchiveLimits | None = None,
                         top_alternatives: int = 5) -> SessionTree:
    """import_session's checks and build, from the two members' bytes (a file's, or a session store's)."""
    limits, budget = limits or ArchiveLimits(), budget or StateBudget()
    if len(members[TREE_MEMBER]) > limits.max_json_bytes:
        fail(f"tree.json is over the limit of {limits.max_json_bytes} bytes")
    doc = parse_json(members[TREE_MEMBER])
    saved = validate_identity(doc.get("model") if isinstance(doc, dict) else None)
    check_same_model(ModelIdentity.of(model, model_id or saved.model_id), saved)
    doc = validate_document(doc, model.config.vocab_size, limits.max_nodes, limits.max_tokens)
    tree = SessionTree(model, tokenizer, model_id=model_id or saved.model_id, budget=budget,
                       state_device=state_device, top_alternatives=top_alternatives, root_id=doc["root"])
    if doc["tokenizer"] and tree.tokenizer_id and doc["tokenizer"] != tree.tokenizer_id:
        raise SessionFileError(f"cannot import: the session was saved with another tokenizer (sha256 "
                               f"{doc['tokenizer'][:16]}), this session's is {tree.tokenizer_id[:16]}")
    shapes = expected_entries(tree.family.state_spec(model), model.config.vocab_size)
    state_nodes = {n["id"] for n in doc["nodes"] if n["role"] == STATE}
    kept = validate_safetensors(members[STATES_MEMBER], {n["id"] for n in doc["nodes"]}, doc["root"], shapes,
                                limits.max_header_bytes, state_nodes)
    try:
        tensors = safetensors.torch.load(members[STATES_MEMBER])
    except Exception as err:  # the Rust side raises its own error types
        fail(f"states.safetensors cannot be read ({str(err).strip()[:100] or 'damaged'})")
    tree.nodes = {node["id"]: Node.from_json(node) for node in doc["nodes"]}
    tree.meta = doc["meta"]
    tree.store.pinned |= state_nodes  # before any put: the budget never drops them
    if len(tree.store.pinned) + 1 > budget.max_states:
        fail(f"{len(state_nodes)} state roots do not fit this server's budget of {budget.max_states} states")
    for node_id in kept:
        named = {name: tensors[f"{node_id}/{name}"] for name in tree.family.state_names}
        tree.store.put(node_id, tree.family.from_named(named), tensors.get(f"{node_id}/logits"))
    if tree.store.pinned_bytes() > budget.max_bytes:
        fail(f"the file's state roots take {tree.store.pinned_bytes()} bytes, over this server's state budget of "
             f"{budget.max_bytes}")
    return tree


class SessionModelError(SessionFileError, WrongModelError):
    """A session file saved with another model (`needed` names it)."""


def check_same_model(current: ModelIdentity, saved: ModelIdentity) -> None:
    reason = current.mismatch(saved)
    if reason is not None:
        raise SessionModelError(f"cannot import: {reason}", saved.needed())


def read_members(source, json_limit: int, states_limit: int) -> dict[str, bytes]:
    """The two members' bytes, each read with a bound; anything else in the zip is an error."""
    limits = {TREE_MEMBER: json_limit, STATES_MEMBER: states_limit}
    total = json_limit + states_limit + MIB
    try:
        with zipfile.ZipFile(open_source(source, total)) as archive:
            infos = archive.infolist()
            if sorted(info.filename for info in infos) != sorted(limits):
                names = ", ".join(repr(info.filename[:60]) for info in infos[:5]) or "none (the zip is empty)"
                fail(f"expected exactly the members {sorted(limits)}, found {names}{' ...' if len(infos) > 5 else ''}")
            return {info.filename: read_member(archive, info, limits[info.filename]) for info in infos}
    except SessionFileError:
        raise
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, zlib.error, ValueError,
            NotImplementedError, RuntimeError) as err:
        fail(unreadable_zip(err))


def unreadable_zip(err: BaseException) -> str:
    """Why a file is not a readable zip, in plain words (no Python exception names)."""
    if isinstance(err, zipfile.BadZipFile) and "not a zip file" in str(err):
        return "this is not a zip file"
    detail = str(err).strip()[:100]
    return "the zip file is damaged or cannot be read" + (f" ({detail})" if detail else "")


def read_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, limit: int) -> bytes:
    if info.flag_bits & 0x1:
        fail(f"{info.filename} is encrypted")
    if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        fail(f"{info.filename} uses an unsupported compression")
    if info.file_size > limit:
        fail(f"{info.filename} is {info.file_size} bytes, over the limit of {limit}")
    with archive.open(info) as member:
        data = member.read(limit + 1)  # the declared size may lie: never read past the limit
    if len(data) > limit:
        fail(f"{info.filename} is over the limit of {limit} bytes")
    return data


def open_source(source, limit: int):
    """What ZipFile reads `source` from (a path, or the bytes in memory), refusing anything over `limit`."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
    elif isinstance(source, (str, Path, os.PathLike)):
        size = os.stat(source).st_size
        if size > limit:
            fail(f"the file is {size} bytes, over the limit of {limit}")
        return os.fspath(source)  # ZipFile opens and closes it
    elif hasattr(source, "read"):
        data = source.read(limit + 1)
    else:
        raise SessionFileError(f"cannot read a session from {type(source).__name__}")
    if len(data) > limit:
        fail(f"the file is over the limit of {limit} bytes")
    return io.BytesIO(data)
