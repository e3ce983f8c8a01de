"""Models tab: choose a preset (or, when the operator allows it, any Hub repo id or server directory), a real
progress bar while it downloads and loads, what is loaded where, and a clear error that leaves the current
model working."""
from __future__ import annotations

import gradio as gr

from ..errors import InputError
from .common import guarded


def info_markdown(ctx, session) -> str:
    lines = ["| model | device | dtype | memory | sessions using it |", "|---|---|---|---|---|"]
    lines += [f"| {m['source']} | {m['device']} | {m['dtype']} | {m['memory']} | {m['in_use']} |"
              for m in ctx.playground.memory_report()]
    current = session.loaded.key.describe() if session is not None and not session.closed else "the default model"
    return f"This session uses **{current}**.\n\n" + "\n".join(lines)


def build(ctx, refresh):
    playground = ctx.playground
    allow = playground.options.allow_any_model
    choices = playground.model_choices()
    if playground.default_source and playground.default_source not in choices:
        choices = [playground.default_source] + choices
    help_text = ("Any preset, Hub repo id (org/name) or server directory." if allow else
                 "Presets from presets/models.yaml (this server does not load other repo ids or paths).")
    model = gr.Dropdown(choices, value=playground.default_source, label="Model", info=help_text,
                        allow_custom_value=True, elem_id="models-choice")
    load = gr.Button("Load for this session", variant="primary")
    status = gr.Markdown()
    info = gr.Markdown(info_markdown(ctx, None))
    refresh_info = gr.Button("Refresh")
    wire(ctx, refresh, locals())
    return {}


def wire(ctx, refresh, c):
    @guarded
    def load(source, session, request: gr.Request, progress=gr.Progress()):
        if not isinstance(source, str):
            raise InputError("choose a model from the list first")
        session = ctx.ensure(session, request)

        def report(stage, fraction, detail):
            progress(fraction if fraction is not None else 0.0, desc=f"{stage}: {detail}")

        session.switch_model(source, report)
        return (f"Loaded {session.loaded.key.describe()}; this session starts a new tree on it.",
                info_markdown(ctx, session), session)
    refresh.append(c["load"].click(load, [c["model"], ctx.state], [c["status"], c["info"], ctx.state],
                                   api_name="load_model", concurrency_limit=2))
    c["refresh_info"].click(lambda s: info_markdown(ctx, s), [ctx.state], [c["info"]], api_name="models_info")
