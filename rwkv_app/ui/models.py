"""Models tab: choose a preset (or, when the operator allows it, any Hub repo id or server directory), a real
progress bar while it downloads and loads, each model's size and whether it fits this machine, what is loaded
and how many sessions use it, and a warning toast (the tab stays as it was) when a load fails."""
from __future__ import annotations

import gradio as gr

from ..errors import InputError
from ..services.service import public_name
from .common import QUIET, guarded, warned
from .inputs import Dropdown


def count(params) -> str:
    if params is None:
        return "–"
    if params >= 1e9:
        return f"{params / 1e9:.1f}B"
    return f"{params / 1e6:.1f}M" if params < 1e7 else f"{params / 1e6:.0f}M"


def table_markdown(ctx) -> str:
    """The models table; what decides a choice (whether it fits, its memory) first, so a phone shows it unscrolled."""
    rows = ["| model | fits this machine | memory | parameters | download | sessions using it |",
            "|---|---|---|---|---|---|"]
    for m in ctx.playground.model_table():
        download = "bundled" if m["download_gb"] is None else f"{m['download_gb']:g} GB"
        fits = "yes" if m["fits"] else "**no: too large**"
        used = f"{m['sessions']} (loaded)" if m["loaded"] else "–"
        rows.append(f"| {m['name']} | {fits} | {m['memory_gb']:.2f} GiB {m['dtype']} | {count(m['params'])} | "
                    f"{download} | {used} |")
    return "\n".join(rows)


def info_markdown(ctx, session) -> str:
    if session is not None and not session.closed:
        key = session.loaded.key
        current = f"{public_name(key.source)} ({key.dtype} on {key.device})"
    else:
        current = public_name(ctx.playground.default_source or "") + " (the default model)"
    note = ctx.playground.cpu_note()
    return (f"This session uses **{current}**. This machine: {ctx.playground.machine_summary()}.\n\n"
            + (f"{note}\n\n" if note else "") + table_markdown(ctx))


def build(ctx, refresh):
    playground = ctx.playground
    allow = playground.options.allow_any_model
    default = public_name(playground.default_source) if playground.default_source else None
    choices = playground.model_choices()
    if default and default not in choices:
        choices = [default] + choices
    help_text = ("Any preset, Hub repo id (org/name) or server directory." if allow else
                 "Presets from presets/models.yaml (this server does not load other repo ids or paths).")
    model = Dropdown(choices, value=default, label="Model", info=help_text,
                        allow_custom_value=True, elem_id="models-choice")
    load = gr.Button("Load for this session", variant="primary", elem_id="models-load")
    status = gr.Markdown(elem_id="models-status")
    info = gr.Markdown(info_markdown(ctx, None), elem_id="models-info")
    refresh_info = gr.Button("Refresh")
    wire(ctx, refresh, locals())
    return {"info": info}


def wire(ctx, refresh, c):
    def load(source, session, request: gr.Request, progress=gr.Progress()):
        if not isinstance(source, str):
            raise InputError("choose a model from the list first")
        session = ctx.ensure(session, request)

        def report(stage, fraction, detail):
            progress(fraction if fraction is not None else 0.0, desc=f"{stage}: {detail}")

        switched = session.switch_model(source, report)
        name = public_name(session.loaded.key.source)
        text = (f"Loaded {name}; this session resumes your latest conversation on it (or starts a new one); those "
                "of other models stay in the Conversations list." if switched else
                f"This session already runs {name}: nothing changed, the open conversation stays open.")
        return text, info_markdown(ctx, session), session
    # The page's click shows the progress bar over the status line, and a refusal is a toast that leaves the tab as
    # it was (a failed event would draw Gradio's Error badge over the status line); /load_model, on a hidden
    # trigger, raises the message to its caller. The endpoint first: the page's event would take the name.
    inputs, outputs = [c["model"], ctx.state], [c["status"], c["info"], ctx.state]
    api = gr.Button(visible=False).click(guarded(load), inputs, outputs, api_name="load_model", concurrency_limit=2,
                                         concurrency_id="load_model", show_progress=QUIET)
    page = c["load"].click(warned(load), inputs, outputs, api_visibility="private", concurrency_id="load_model",
                           concurrency_limit=2, show_progress_on=[c["status"]])
    for switched in (api, page):
        refresh.append(switched)
        ctx.reopened.append(switched)  # another model: its latest conversation, its family's chat settings
    c["refresh_info"].click(lambda s: info_markdown(ctx, s), [ctx.state], [c["info"]], api_name="models_info")
