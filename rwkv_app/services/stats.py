"""What the operator-only stats endpoint returns (plain JSON): live visitor sessions and session trees, live
tensors, engine counters and the process's memory (rwkv_app/ui/stats.py serves it)."""
from __future__ import annotations

import gc

import torch

from ..state_tree import SessionTree
from .malloc import malloc_trim, rss_bytes
from .user_session import UserSession


def live_objects() -> dict:
    """After a full collection: live UserSessions, session trees (their nodes and kept-state bytes), tensors."""
    gc.collect()
    sessions = trees = nodes = kept_bytes = tensors = 0
    storages: dict[int, int] = {}  # data pointer -> bytes, so views of one storage count once
    for obj in gc.get_objects():
        kind = type(obj)  # not isinstance: that reads __class__, which some lazy module objects warn about
        if kind is UserSession:
            sessions += not obj.closed
        elif kind is SessionTree:
            trees, nodes, kept_bytes = trees + 1, nodes + len(obj.nodes), kept_bytes + obj.store.nbytes
        elif issubclass(kind, torch.Tensor) and not obj.is_meta:
            tensors += 1
            storage = obj.untyped_storage()
            storages[storage.data_ptr()] = storage.nbytes()
    return {"open_user_sessions": sessions, "session_trees": trees, "session_nodes": nodes,
            "session_kept_bytes": kept_bytes, "tensors": tensors, "tensor_bytes": sum(storages.values())}


def server_stats(playground) -> dict:
    """Everything the stats endpoint returns (plain JSON)."""
    rss = rss_bytes()
    objects = live_objects()
    trimmed = malloc_trim()
    return {**playground.stats(), **objects, "rss_bytes": rss, "rss_trimmed_bytes": rss_bytes() if trimmed else rss}
