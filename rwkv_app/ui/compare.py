"""Compare tab: 2 to 4 continuations of the selected node, each with its own preset and seed, streamed side by
side in one batch; "keep this one" makes a column the session's current branch. A seed box left empty draws a
fresh seed at each Run (so Run again samples anew), and under each column its seed is shown: typed into the seed
box, it makes that column again."""
from __future__ import annotations

import gradio as gr

from ..errors import InputError
from ..services import views
from .common import QUIET, gpu, guarded, length_slider, length_value, number, seed_value
from .inputs import Dropdown, Radio
from .playground import stop

MAX_COLUMNS = 4
COLUMN_CHOICES = list(range(2, MAX_COLUMNS + 1))


def build(ctx, refresh):
    presets = ctx.presets
    defaults = (presets * MAX_COLUMNS)[:MAX_COLUMNS]
    source = gr.Markdown("Select a node in the Playground tab (or chat first); the comparison starts there.",
                         elem_id="cmp-source")
    with gr.Row():
        # a Radio, not a Slider: a slider's number box lets a visitor type 7, which Gradio refuses with an Error
        count = Radio(COLUMN_CHOICES, value=3, label="Columns", elem_id="cmp-count")
        length = length_slider(ctx.playground.options.max_new_tokens, 40, elem_id="cmp-length")
    with gr.Row():  # above the columns: reachable without scrolling past four of them (on a phone too)
        run = gr.Button("Compare", variant="primary", elem_id="cmp-run")
        stop = gr.Button("Stop", variant="stop", elem_id="cmp-stop")
    columns, settings, texts, seeds_used, keeps = [], [], [], [], []
    with gr.Row(equal_height=True):
        for i in range(MAX_COLUMNS):
            with gr.Column(visible=i < 3, min_width=200) as column:
                preset = Dropdown(presets, value=defaults[i], label=f"Preset {i + 1}")
                # a Textbox, as the Playground's: gr.Number(precision=0) rounded a typed 3.7 to 4 without a word,
                # and a float box cannot hold every 64-bit seed; seed_value refuses what is not a whole number
                # empty by default: each Run draws fresh seeds (fixed defaults gave the same samples every Run)
                seed = gr.Textbox("", label=f"Seed {i + 1} (empty: random)", max_lines=1, placeholder="random",
                                  elem_id=f"cmp-seed-{i}")
                text = gr.Textbox(label=f"Column {i + 1}", lines=8, max_lines=8, interactive=False,
                                  autoscroll=True, elem_id=f"cmp-text-{i}")
                used = gr.Textbox(label=f"Seed used {i + 1}",
                                  max_lines=1, interactive=False, buttons=["copy"], elem_id=f"cmp-used-{i}")
                keep = gr.Button("Keep this one", elem_id=f"cmp-keep-{i}")
            columns.append(column)
            settings += [preset, seed]
            texts.append(text)
            seeds_used.append(used)
            keeps.append(keep)
    status = gr.Markdown()
    wire(ctx, refresh, locals())
    return {"source": source}


def wire(ctx, refresh, c):
    state = ctx.state

    @gpu
    @guarded
    def compare(request: gr.Request, count, length, *values):
        *settings, session = values
        session = ctx.ensure(session, request)
        count = number(count, 0)
        if not 2 <= count <= MAX_COLUMNS:
            raise InputError(f"compare takes 2 to {MAX_COLUMNS} columns, got {count}")
        pairs = session.seeded([(settings[2 * i], seed_value(settings[2 * i + 1])) for i in range(count)])
        blank = [""] * MAX_COLUMNS
        used = [views.seed_used(seed) for _, seed in pairs] + blank[count:]
        for texts in session.compare(None, pairs, length_value(length)):
            yield (*texts, *blank[len(texts):], *used, session)

    @guarded
    def keep(index, session, request: gr.Request):
        session = ctx.ensure(session, request)
        session.keep(index)
        return f"Kept column {index + 1}: it is now the current node (Playground, State).", session

    c["count"].change(lambda n: [gr.update(visible=i < int(n)) for i in range(MAX_COLUMNS)], [c["count"]],
                      c["columns"], api_visibility="private")
    refresh.append(c["run"].click(compare, [c["count"], c["length"], *c["settings"], state],
                                  [*c["texts"], *c["seeds_used"], state], api_name="compare", concurrency_limit=None,
                                  show_progress=QUIET))
    c["stop"].click(stop, [state], None, api_name="compare_stop", concurrency_limit=None, show_progress="hidden")
    for i, button in enumerate(c["keeps"]):
        refresh.append(button.click(keeper(keep, i), [state], [c["status"], state],
                                    api_name=f"keep_{i + 1}", show_progress=QUIET))


def keeper(keep, index: int):
    """The callback of the Keep button of column `index`."""
    def keep_column(session, request: gr.Request):
        return keep(index, session, request)
    return keep_column
