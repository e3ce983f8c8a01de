"""The operator-only stats endpoint (`python app.py --stats`): live sessions and session trees, live tensors,
engine counters and the process's memory. Off by default, so visitors never see it; the soak test
(`python -m benchmarks soak`) reads it after every round."""
from __future__ import annotations

import gradio as gr

from ..services.stats import server_stats

API_NAME = "server_stats"


def add_stats_endpoint(demo: gr.Blocks, playground) -> None:
    """Add /server_stats to the app (API only: nothing shows on the page)."""
    def stats() -> dict:
        return server_stats(playground)

    with demo:
        gr.api(stats, api_name=API_NAME, concurrency_limit=None)
