"""Personas: states brought into a visitor's session tree, from a state file or by mixing two states.

A state-tuned persona (RWKV-PEFT, shared for RWKV-Runner / Ai00) or a state exported from a node is a file of
named tensors (rwkv_app/models/state_files.py reads it: tensors only, shapes checked against the loaded model,
a mismatch named). Loaded, it becomes a state root of the session's tree (SessionTree.add_state): the
Playground's prompts start from it, or a new conversation does. Mixing makes a new state root from
w * A + (1 - w) * B, where A and B are nodes of the tree or state files (the model layer's mix_states: the WKV
matrices summed with those weights, as RWKV-Infer's state mixing does).
"""
from __future__ import annotations

import math
import os
from pathlib import Path

from ..errors import InputError
from ..models.state_files import SAFETENSORS_SUFFIXES, SUFFIXES, TORCH_SUFFIXES, load_state_file, mix_states
from ..state_tree.chat import chat_names
from . import views
from .conversations import commit_unless_generating

MIB = 2 ** 20


def checked_upload(session, path) -> Path:
    """An uploaded state file's path: a state file's name (the page takes any file), within the upload limit."""
    if not path:
        raise InputError(f"choose a state file ({SUFFIXES}) to upload first")
    if not isinstance(path, (str, os.PathLike)):
        raise InputError(f"expected the uploaded file's path, got {type(path).__name__}")
    path = Path(path)
    if path.suffix not in SAFETENSORS_SUFFIXES + TORCH_SUFFIXES:
        raise InputError(f"expected a state file ({SUFFIXES}), got {views.file_name(path)}")
    size = path.stat().st_size
    if size > session.options.max_upload_mb * MIB:
        raise InputError(f"the state file is {size / MIB:.1f} MiB; this server takes at most "
                         f"{session.options.max_upload_mb:g} MiB")
    return path


def read_state(session, path):
    """The state a file holds, for the session's model, on the tree's state device (refused unless it fits)."""
    tree = session.tree
    state = load_state_file(checked_upload(session, path), tree.model)  # CheckpointError names a mismatch
    return tree.family.to(state, tree.state_device)


def load_state_root(session, path) -> str:
    """A state file as a new root of the session's tree; it becomes the selected node and the Playground's start."""
    state = read_state(session, path)
    name = Path(path).name
    node = session.tree.add_state(state, f"state file {name}", {"state_file": name}).node
    session.current = session.start = node
    commit_unless_generating(session)  # saved now: nothing could rebuild this state
    return node


def start_chat_from_file(session, path, system=None, user=None, bot=None) -> str:
    """A new conversation that starts from a state file (the old conversation stays in the tree); names that
    cannot make a conversation are refused before the file becomes a state root."""
    chat_names(session.tree, user, bot)
    node = load_state_root(session, path)
    session.new_chat(system, user, bot, start=node)
    commit_unless_generating(session)
    return node


def start_empty(session) -> None:
    """Prompts start from the empty state again (loaded states stay in the tree)."""
    session.start = session.tree.root
    commit_unless_generating(session)


def mix(session, first_node=None, first_file=None, second_node=None, second_file=None, weight=0.5) -> str:
    """A new state root: weight * first + (1 - weight) * second; each side a node id or an uploaded state file
    (the file when both are given). The new root becomes the selected node and the Playground's start."""
    weight = checked_weight(weight)
    tree = session.tree
    first, first_label = side(session, first_node, first_file, "first")
    second, second_label = side(session, second_node, second_file, "second")
    state = mix_states([first, second], [weight, 1.0 - weight], tree.model)
    text = f"mix {weight:.2f} × {first_label} + {1 - weight:.2f} × {second_label}"
    meta = {"mix": {"weight": weight, "first": first_label, "second": second_label}}
    node = tree.add_state(state, text, meta).node
    session.current = session.start = node
    commit_unless_generating(session)  # saved now: nothing could rebuild this state
    return node


def side(session, node_id, path, which: str):
    """One state to mix and its label: the uploaded file if any, else the node (the root: the empty state)."""
    tree = session.tree
    if path:
        state = read_state(session, path)
        return state, Path(path).name
    if not node_id:
        raise InputError(f"choose the {which} state: a node id or a state file")
    node = tree.node(node_id)  # SessionError for an unknown id (another session's ids are unknown here)
    state, _ = tree.state_at(node.id)
    label = "the empty state" if node.parent is None else (views.preview(node.text) or node.role)
    return state, label


def checked_weight(weight) -> float:
    try:
        value = float(weight)
    except (TypeError, ValueError):
        raise InputError(f"the mixing weight must be a number from 0 to 1, got {weight!r:.40}") from None
    if not math.isfinite(value) or not 0.0 <= value <= 1.0:
        raise InputError(f"the mixing weight must be a number from 0 to 1, got {weight!r:.40}")
    return value


def starts(session) -> list[dict]:
    """The states a prompt or conversation can start from: {id, label, current} (the root: "empty state")."""
    return [{"id": node.id, "label": "empty state" if node.parent is None else node.text,
             "current": node.id == session.start} for node in session.tree.starts()]
