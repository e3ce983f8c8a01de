"""State tab: plots of the recurrent state at a node, the decay per layer, the last generation, a diff."""
from __future__ import annotations

import gradio as gr
import pandas as pd

from ..services import state_inspector as state_data
from .common import guarded
from .render import heatmap_html

NOTE = ("Values are the state as stored, in float32. This model rescales activations only (`rescale_every`); the "
        "state is never rescaled (token shifts are stored after the layer norm, WKV sums come from unrescaled "
        "key/value projections), so the plots mean the same in every dtype.")


def build(ctx, refresh):
    gr.Markdown(NOTE)
    with gr.Row():
        node = gr.Dropdown([], label="Node (default: the current one)", elem_id="st-node",
                           allow_custom_value=True)  # API clients pass ids from /tree
        other = gr.Dropdown([], label="Compare with node (for the difference)", allow_custom_value=True)
        tensor = gr.Radio(list(state_data.DEFAULT_TENSORS), value="num", label="Heatmap of")
        show = gr.Button("Show state", variant="primary", elem_id="st-show")
    with gr.Row():
        norms = gr.LinePlot(x="layer", y="norm", color="tensor", title="Per-layer norm of each state tensor",
                            elem_id="st-norms")
        decay = gr.LinePlot(x="channel rank", y="decay", color="layer",
                            title="Effective decay exp(-exp(time_decay)) per layer (channels sorted)")
    heat = gr.HTML(elem_id="st-heatmap")
    with gr.Row():
        trace = gr.LinePlot(x="token", y="norm", color="layer",
                            title="WKV numerator norm per layer over the node's tokens (last generation)")
        diff = gr.LinePlot(x="layer", y="norm", color="tensor", title="Norm of (compared node - node) per layer")
    wire(ctx, locals())
    return {"node": node, "other": other}


def frame(rows, *columns):
    return pd.DataFrame(rows, columns=list(columns))


def wire(ctx, c):
    @guarded
    def show(node_id, other_id, tensor, session, request: gr.Request):
        session = ctx.ensure(session, request)
        tree = session.tree
        node_id = tree.node(node_id).id if node_id else session.current  # another session's id is unknown here
        report = state_data.state_report(tree, node_id, tensor, tree.node(other_id).id if other_id else None)
        return (frame(report["norms"], "layer", "tensor", "norm"),
                frame(report["decay"], "layer", "channel rank", "decay"),
                heatmap_html(report["heatmap"]),
                frame(report["trace"], "token", "layer", "norm"),
                frame(report["diff"], "layer", "tensor", "norm"), session)

    c["show"].click(show, [c["node"], c["other"], c["tensor"], ctx.state],
                    [c["norms"], c["decay"], c["heat"], c["trace"], c["diff"], ctx.state], api_name="state")
