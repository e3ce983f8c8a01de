"""The State tab's tables for its plots (rwkv_app/ui/state.py frame): layers are categories, with rows or without."""
import gradio as gr

from rwkv_app.ui.state import frame


def plot_types(data) -> dict:
    return gr.LinePlot(x="token", y="norm", color="layer").postprocess(data).datatypes


def test_layers_are_zero_padded_categories():
    rows = [{"token": t, "layer": layer, "norm": 1.0 + layer} for t in range(2) for layer in (0, 10)]
    data = frame(rows, "token", "layer", "norm", layers=11)
    assert list(data["layer"]) == ["00", "10", "00", "10"]
    assert plot_types(data) == {"token": "quantitative", "layer": "nominal", "norm": "quantitative"}


def test_no_rows_keep_layer_a_category_not_a_number():
    """A number column of no values is a colour scale over an empty range: Vega draws "-Infinity".."Infinity"."""
    data = frame([], "token", "layer", "norm", layers=4)
    assert data.empty and list(data.columns) == ["token", "layer", "norm"]
    assert plot_types(data)["layer"] == "nominal"


def test_a_branching_continuation_keeps_its_continuation_mark():
    from rwkv_app.ui.render import tree_html

    def row(node_id, depth, indent, branches, chained):
        return {"id": node_id, "depth": depth, "indent": indent, "branches": branches, "chained": chained,
                "current": False, "on_path": False, "extra": [], "role": "user", "snippet": node_id}

    html = tree_html([row("root", 0, 0, 1, False), row("hello", 1, 0, 1, False), row("turn", 2, 0, 2, True),
                      row("reply-a", 3, 1, 0, False), row("reply-b", 3, 1, 0, False)])
    turn = html.split('data-id="turn"')[1].split("</div>")[0]
    assert "↳" in turn and "▾" in turn  # continues "hello", and folds its two replies
    hello = html.split('data-id="hello"')[1].split("</div>")[0]
    assert "↳" not in hello and "▾" not in hello and 'class="tog-space"' in hello
