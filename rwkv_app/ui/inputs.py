"""Gradio's Slider, Dropdown and Radio, refusing an API caller's value outside them by the input's name.

Gradio refuses a value outside a slider's range or not among the choices itself, before any callback runs, but it
prints a traceback in the server log for each and names one end of the range only ("Value 0 is less than minimum
value 1."). These say "Max new tokens: 0 is outside 1 to 512" (or "Preset: 'nope' is not one of balanced, ...") as
an error for the caller and one line in the log. They keep Gradio's names, so the page and the API see Gradio's own
components. (Gradio writes a type stub, inputs.pyi, beside a module that subclasses its components; .gitignore
leaves it out.)
"""
from __future__ import annotations

import logging

import gradio as gr

log = logging.getLogger("rwkv_app.ui")


def refuse_value(component, problem: str):
    text = f"{component.label}: {problem}"
    log.warning("refused %s", text)
    raise gr.Error(text, print_exception=False)


def shown(value) -> str:
    return repr(value)[:60] if isinstance(value, str) else f"{value}"[:60]


def check_choice(component, payload) -> None:
    if payload is None or getattr(component, "allow_custom_value", False):
        return
    values = [value for _, value in component.choices]
    if payload not in values:
        refuse_value(component, f"{shown(payload)} is not one of {', '.join(str(v) for v in values)}")


class Slider(gr.Slider):
    def preprocess(self, payload):
        if isinstance(payload, (int, float)) and not isinstance(payload, bool) and \
                not self.minimum <= payload <= self.maximum:
            refuse_value(self, f"{shown(payload)} is outside {self.minimum:g} to {self.maximum:g}")
        return super().preprocess(payload)


class Dropdown(gr.Dropdown):
    def preprocess(self, payload):
        if not self.multiselect:
            check_choice(self, payload)
        return super().preprocess(payload)


class Radio(gr.Radio):
    def preprocess(self, payload):
        check_choice(self, payload)
        return super().preprocess(payload)
