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
