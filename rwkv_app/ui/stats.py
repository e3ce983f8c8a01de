"""The operator-only stats endpoint (`python app.py --stats`): live sessions and session trees, live tensors,
engine counters and the process's memory. Off by default, so visitors never see it; the soak test
(`python -m benchmarks soak`) reads it after every round."""
from __future__ import annotations

import gc

import gradio as gr
import torch

from ..services.malloc import malloc_trim, rss_bytes
from ..services.user_session import UserSession
from ..state_tree import SessionTree

API_NAME = "server_stats"


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


def add_stats_endpoint(demo: gr.Blocks, playground) -> None:
    """Add /server_stats to the app (API only: nothing shows on the page)."""
    def stats() -> dict:
        return server_stats(playground)

    with demo:
        gr.api(stats, api_name=API_NAME, concurrency_limit=None)
