"""The State tab's per-head section, for a model whose state holds a matrix per layer and head (RWKV-7): layer x head
grids of the matrices' norms, of the decay and in-context learning rate at the node's last token and of the
difference from another node, and the chosen head's matrix. Hidden for a model without heads (RWKV-4); it follows
the visitor's model (the Models tab can switch families)."""
from __future__ import annotations

import html

import gradio as gr

from .common import QUIET, guarded
from .inputs import Dropdown
from .grids import figure, grid_svg

HELP = """**Per head.** Each layer's WKV state is one matrix **S** per head; the grids show every layer x head, the
matrix below is the chosen head's (its cell is outlined in each grid).

<details><summary>How to read them</summary>

S's rows are value channels, its columns key channels (the token's receptance r reads it as S·r). Every token updates
it by the delta rule S ← S (diag(w) − k̂ (a ⊙ k̂)ᵀ) + v kᵀ, where k̂ is the token's normalised key.
**Norm**: ‖S‖ (Frobenius) of each layer x head. **Decay w** and **in-context learning rate a** belong to a token, not
to a state: they are shown for the node's last token (run again from the state before it), each head's mean over its
key channels. w is the fraction of S kept per token (from 0.545 to 1: near 1 remembers long); a is how much of what S
holds under the token's key is erased before the new value is written (0: only add, 1: overwrite).
**Difference**: ‖S(compared node) − S(node)‖ per layer x head.
</details>"""
CSS = """
.st-grids { display: flex; flex-wrap: wrap; gap: 14px 22px; align-items: flex-start; }
.st-panel { margin: 0; max-width: 100%; }
.st-panel figcaption { font-size: 13px; font-weight: 600; margin-bottom: 4px; max-width: 340px; }
.st-panel svg { display: block; max-width: 100%; height: auto; }
.st-panel .st-cap { font-size: 12px; max-width: 340px; margin: 2px 0 0 0; color: var(--body-text-color-subdued); }
"""
NO_DIFF = "Choose a node in \"Compare with node\" to see how each head's matrix differs."
NO_TOKEN = "This node has no token of its own (the root or a loaded state): no update to show."
HEAD_NAMES = ("layer", "head")


def build(ctx):
    layout = ctx.playground.state_heads()  # the served model's; each redraw follows the visitor's own model
    shown = layout is not None
    layers, heads = (layout["layers"], layout["heads"]) if shown else (1, 1)
    help_text = gr.Markdown(HELP if shown else "", elem_id="st-heads-help")  # empty (and so is the rest) without heads
    with gr.Row():
        # custom values: an API client's number out of range gets the service's message, not Gradio's
        layer = Dropdown(numbers(layers), value=0, label="Layer", visible=shown, allow_custom_value=True,
                            elem_id="st-layer")
        head = Dropdown(numbers(heads), value=0, label="Head", visible=shown, allow_custom_value=True,
                           elem_id="st-head")
    grids = gr.HTML(elem_id="st-head-grids")
    matrix = gr.HTML(elem_id="st-head-matrix")
    return {"help": help_text, "layer": layer, "head": head, "grids": grids, "matrix": matrix}


def numbers(count: int) -> list[tuple[str, int]]:
    """A picker's choices: 0 .. count - 1 (a dropdown, not a slider: a model may have a single head)."""
    return [(str(i), i) for i in range(count)]


def rates_panels(rates: dict, chosen: tuple[int, int]) -> list[str]:
    if not rates["values"]:
        return [figure("Decay and in-context learning rate", "", NO_TOKEN)]
    token = html.escape(repr(rates["token"]))
    titles = {"decay": f"Decay w at the last token, {token}", "iclr": f"In-context learning rate a at {token}"}
    return [figure(titles.get(name, html.escape(name)), grid_svg(values, names=HEAD_NAMES, prefixes=("L", "h"),
                                                                  selected=chosen), rates["meanings"].get(name, ""))
            for name, values in rates["values"].items()]


def grids_html(report: dict) -> str:
    chosen = (report["layer"], report["head"])
    panels = [figure(f"State norm ‖S‖ per layer x head ({report['tensor']})",
                     grid_svg(report["norms"], names=HEAD_NAMES, prefixes=("L", "h"), selected=chosen, digits=1))]
    panels += rates_panels(report["rates"], chosen)
    diff = (grid_svg(report["diff"], names=HEAD_NAMES, prefixes=("L", "h"), selected=chosen, digits=1)
            if report["diff"] else "")
    panels.append(figure("Difference ‖S(compared) − S(node)‖", diff, "" if report["diff"] else NO_DIFF))
    return f'<div class="st-grids">{"".join(panels)}</div>'


def matrix_html(report: dict) -> str:
    values, rows, columns = report["matrix"], report["rows"], report["columns"]
    title = (f"Layer {report['layer']}, head {report['head']}: its matrix S "
             f"({report['size']} x {report['size']}, rows: {rows} channel, columns: {columns} channel)")
    body = grid_svg(values, names=(rows, columns), prefixes=("", ""), diverging=True)
    caption = f"{report['tensor']}[{report['layer']}, {report['head']}]: red positive, blue negative, white 0."
    return f'<div class="st-grids">{figure(html.escape(title), body, caption)}</div>'


def wire(ctx, c, node, other):
    """The section's callback (the tab chains it after its own redraws) and its redraw when a picker changes."""
    @guarded
    def show_heads(node_id, other_id, layer, head, session, request: gr.Request):
        session = ctx.ensure(session, request)
        report = session.head_report(node_id, other_id, layer, head)  # plain data; None: no heads
        if report is None:
            return "", gr.update(visible=False), gr.update(visible=False), "", "", session
        return (HELP, gr.update(choices=numbers(report["layers"]), value=report["layer"], visible=True),
                gr.update(choices=numbers(report["heads"]), value=report["head"], visible=True),
                grids_html(report), matrix_html(report), session)

    inputs = [node, other, c["layer"], c["head"], ctx.state]
    outputs = [c["help"], c["layer"], c["head"], c["grids"], c["matrix"], ctx.state]
    for picker in (c["layer"], c["head"]):
        picker.input(show_heads, inputs, outputs, api_visibility="private", show_progress=QUIET,
                     trigger_mode="always_last")
    return show_heads, inputs, outputs
