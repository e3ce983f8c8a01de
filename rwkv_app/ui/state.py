"""State tab: plots of the recurrent state at a node, the decay per layer, the last generation, a diff; for a model
whose state holds a matrix per head (RWKV-7), the same per layer x head (state_heads.py).
Layers are drawn as whole numbers (a category per layer), each plot says so when it has nothing to show, and
the plots are drawn when the tab is opened and redraw as soon as the node, the compared node or the heatmap's tensor
changes ("Show state" draws them too, and is the /state endpoint)."""
from __future__ import annotations

import gradio as gr
import pandas as pd

from . import state_heads
from .common import QUIET, guarded
from .inputs import Dropdown, Radio
from .render import heatmap_html

NOTE = ("Values are the state as stored, cast to float32 (RWKV-4's `rescale_every` touches activations only, and "
        "RWKV-7's WKV matrices are kept in float32), so the plots mean the same in every dtype. RWKV-7's `wkv` "
        "heatmap has a column per head.")
CAPTIONS = {"norms": "Per-layer norm of each state tensor at the node.",
            "decay": "Each layer's per-channel decay, sorted: RWKV-4's exp(-exp(time_decay)); RWKV-7's at zero input "
                     "(its decay moves with each token: see the per-head grids).",
            "trace": "Norm per layer of the WKV memory (RWKV-4: numerator num; RWKV-7: wkv) over the node's tokens "
                     "(the last generation).",
            "diff": "Norm of (compared node - node) per layer."}
EMPTY = {"trace": "Memory norm per token: nothing to show, this node was not made by the last generation. Generate, "
                  "then look again.",
         "diff": "Difference per layer: nothing to show, choose a node in \"Compare with node\" to see how the state "
                 "differs."}


def build(ctx, refresh):
    gr.Markdown(NOTE)
    with gr.Row():
        node = Dropdown([], label="Node (default: the current one)", elem_id="st-node",
                           allow_custom_value=True)  # API clients pass ids from /tree
        other = Dropdown([], label="Compare with node (for the difference)", allow_custom_value=True,
                            elem_id="st-other")
        names, first = ctx.playground.state_tensor_names()  # the served model's family
        tensor = Radio(names, value=first, label="Heatmap of", elem_id="st-tensor")
        show = gr.Button("Show state", variant="primary", elem_id="st-show")
    with gr.Row():
        norms = gr.LinePlot(x="layer", y="norm", color="tensor", title="State norm per layer", sort="x",
                            caption=CAPTIONS["norms"], elem_id="st-norms")
        decay = gr.LinePlot(x="channel rank", y="decay", color="layer", title="Decay per layer",
                            caption=CAPTIONS["decay"], elem_id="st-decay")
    heat = gr.HTML(elem_id="st-heatmap")
    heads = state_heads.build(ctx)
    with gr.Row():
        with gr.Column():
            trace = gr.LinePlot(x="token", y="norm", color="layer", title="Memory norm per token",
                                caption=CAPTIONS["trace"], elem_id="st-trace")
            trace_note = gr.Markdown(elem_id="st-trace-note")
        with gr.Column():
            diff = gr.LinePlot(x="layer", y="norm", color="tensor", title="Difference per layer", sort="x",
                               caption=CAPTIONS["diff"], elem_id="st-diff")
            diff_note = gr.Markdown(elem_id="st-diff-note")
    opened = wire(ctx, locals())
    return {"node": node, "other": other, "opened": opened}


def layer_name(layer: int, layers: int) -> str:
    """A layer as a category label ("0".."23", zero-padded so that the plot's order is the layers' order)."""
    return str(layer).zfill(len(str(max(layers - 1, 0))))


def frame(rows, *columns, layers: int | None = None):
    """A DataFrame of the rows; with `layers`, the "layer" column as whole-number categories (no 0.5 ticks), text
    even with no rows (an empty list would make it a float column: a colour scale over no numbers, which Vega draws
    as a "-Infinity".."Infinity" legend)."""
    data = pd.DataFrame(rows, columns=list(columns))
    if layers is not None and "layer" in data:
        data["layer"] = pd.Series([layer_name(v, layers) if isinstance(v, int) else v for v in data["layer"]],
                                  index=data.index, dtype=object)
    return data


def plot(rows, *columns, layers: int):
    """A plot's table (frame), or None without rows: Gradio's empty plot, not Vega's axes and legend of nothing (the
    note under it says why it is empty)."""
    return frame(rows, *columns, layers=layers) if rows else None


def note(rows, name: str) -> str:
    """The line under a plot: why it is empty, or nothing."""
    return "" if rows else f"*{EMPTY[name]}*"


def wire(ctx, c):
    built = list(c["names"])  # the heatmap's choices as the page was built (the served model's state tensors)

    @guarded
    def show(node_id, other_id, tensor, session, request: gr.Request):
        session = ctx.ensure(session, request)
        names, _ = session.state_tensor_names()
        if tensor in built and tensor not in names:  # the page's choice, of the served model: this visitor switched
            tensor = None  # to a model of another family; its memory tensor, and the choices redrawn below
        report = session.state_report(node_id, other_id, tensor)  # plain data
        norms, trace_rows, other_rows = report["norms"], report["trace"], report["diff"]
        layers = 1 + max((row["layer"] for row in norms), default=0)
        return (plot(norms, "layer", "tensor", "norm", layers=layers),
                plot(report["decay"], "layer", "channel rank", "decay", layers=layers),
                heatmap_html(report["heatmap"]),
                plot(trace_rows, "token", "layer", "norm", layers=layers),
                plot(other_rows, "layer", "tensor", "norm", layers=layers), session,
                note(trace_rows, "trace"), note(other_rows, "diff"),
                gr.update(choices=names, value=report["heatmap"]["tensor"]))

    inputs = [c["node"], c["other"], c["tensor"], ctx.state]
    outputs = [c["norms"], c["decay"], c["heat"], c["trace"], c["diff"], ctx.state, c["trace_note"], c["diff_note"],
               c["tensor"]]
    show_heads, heads_in, heads_out = state_heads.wire(ctx, c["heads"], c["node"], c["other"])
    c["show"].click(show, inputs, outputs, api_name="state", show_progress=QUIET).success(
        show_heads, heads_in, heads_out, api_name="state_heads", show_progress=QUIET)
    for control in (c["tensor"], c["node"], c["other"]):  # a change redraws at once
        control.input(show, inputs, outputs, api_visibility="private", show_progress=QUIET,
                      trigger_mode="always_last").success(show_heads, heads_in, heads_out, api_visibility="private",
                                                          show_progress=QUIET)

    def opened(tab: gr.Tab) -> None:
        """Opening the tab draws the selected node's state at once, as "Show state" does (the button stays)."""
        tab.select(show, inputs, outputs, api_visibility="private", show_progress=QUIET,
                   trigger_mode="always_last").success(show_heads, heads_in, heads_out, api_visibility="private",
                                                       show_progress=QUIET)
    return opened
