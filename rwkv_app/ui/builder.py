"""The Blocks app: the tabs, one per module, sharing one per-session state; after each action every view
(tree, tokens, chat branches, node pickers) is redrawn from the session."""
from __future__ import annotations

import gradio as gr

from ..services import views
from . import chat, compare, models, playground, session, state
from .common import Context

CSS = ".state-heatmap svg { max-width: 100%; height: auto; } #pg-tree label { white-space: pre; font-family: monospace; }" + chat.CSS
THEME = "soft"


def build_app(playground_service, message: str = "") -> gr.Blocks:
    # Gradio's copies of uploads and downloads are deleted an hour after they were made (every 10 minutes)
    with gr.Blocks(title="RWKV Playground", delete_cache=(600, 3600)) as demo:
        ctx = Context(playground_service)
        gr.Markdown("# RWKV Playground" + (f"\n{message}" if message else ""))
        refresh: list = []  # events after which every view is redrawn (wired below, once every view exists)
        parts = {}
        with gr.Tabs():
            for name, module in (("Chat", chat), ("Playground", playground), ("Compare", compare),
                                 ("State", state), ("Models", models), ("Session", session)):
                with gr.Tab(name, id=name.lower()):
                    parts.update({f"{name.lower()}.{k}": v for k, v in module.build(ctx, refresh).items()})
        outputs = [parts["playground.tree"], parts["playground.tokens"], parts["chat.branches"], parts["chat.chatbot"],
                   parts["state.node"], parts["state.other"], parts["compare.source"], parts["playground.node"]]
        for event in refresh:
            event.then(redraw, [ctx.state], outputs, api_visibility="private")
        demo.load(redraw, [ctx.state], outputs, api_visibility="private")
        demo.unload(ctx.unload)
    return demo


def redraw(session):
    """Every view's new value, from the session (empty views before its first action)."""
    tree_update = playground.tree_update(session)
    tokens = playground.tokens_value(session, session.current) if session is not None else []
    marks = chat.branch_marks(session)
    messages = session.chat.messages() if session is not None and session.chat is not None else []
    rows = views.tree_rows(session.tree, session.current) if session is not None else []
    nodes = [(row["label"].strip(" ├└─"), row["id"]) for row in rows]
    source = "Select a node in the Playground tab (or chat first); the comparison starts there."
    if session is not None and session.current != session.tree.root:
        source = f"Comparing continuations of: **{views.preview(session.tree.path_text(session.current)[-200:])}**"
    return (tree_update, tokens, marks, messages,
            gr.update(choices=nodes, value=session.current if session else None),
            gr.update(choices=nodes, value=None), source, session.current if session is not None else "")
