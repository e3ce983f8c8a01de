"""The Gradio web UI: one module per tab, wired to the playground service layer (rwkv_app.services)."""
from .builder import build_app

__all__ = ["build_app"]
