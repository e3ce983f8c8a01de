"""Session files for the UI: export to a download folder, import an upload with a size limit and clear errors."""
from __future__ import annotations

import os
import time
from pathlib import Path

from ..errors import InputError
from ..models.state_files import save_state_file
from ..state_tree import ArchiveLimits, export_session, import_session
from .views import file_name

MIB = 2 ** 20


def export_to(session, directory) -> str:
    """Write the session's tree to `<directory>/rwkv-session-<time>.zip`; returns the path."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"rwkv-session-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}-{id(session) % 10**6}.zip"
    export_session(session.tree, path)
    return str(path)


def export_state_to(session, node_id: str | None, directory) -> str:
    """The state after a node (default: the session's current one) as a state file in `directory`: safetensors in
    the model family's layout (RWKV-7: RWKV-Runner's `blocks.{i}.att.time_state`, plus the token shifts)."""
    tree = session.tree
    node = tree.node(node_id or session.current)
    if node.id == tree.root:
        raise InputError("the start of the tree has an empty state: select a node with text first")
    state, _ = tree.state_at(node.id)  # a copy; the tree's own stays untouched
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    return str(save_state_file(state, tree.model, directory / f"rwkv-state-{node.id}.safetensors"))


def import_from(session, path):
    """A tree from an uploaded file, on the session's model; SessionFileError/InputError say what is wrong."""
    if not path:
        raise InputError("choose a session file (.zip) to upload first")
    if not isinstance(path, (str, os.PathLike)):
        raise InputError(f"expected the uploaded file's path, got {type(path).__name__}")
    path = Path(path)
    if path.suffix.lower() != ".zip":  # the page takes any file: a wrong one is named here, in a warning
        raise InputError(f"expected a session file (.zip), got {file_name(path)}")
    limit = int(session.options.max_upload_mb * MIB)
    size = path.stat().st_size
    if size > limit:
        raise InputError(f"the session file is {size / MIB:.1f} MiB; this server takes at most "
                         f"{session.options.max_upload_mb:g} MiB")
    limits = ArchiveLimits(max_json_bytes=limit, max_states_bytes=limit)
    loaded = session.loaded
    return import_session(path, loaded.model, loaded.tokenizer, model_id=session.model_id(), limits=limits,
                          budget=session.playground.state_budget())
