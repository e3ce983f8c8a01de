"""RWKV-7 WKV kernels: the float32 reference and `wkv7`, which checks and dispatches.

    output, state = wkv7(r, log_w, k, v, a, b, state=None, impl="auto")

r, log_w, k, v, a, b: (B, T, H, N); state: (B, H, N, N) float32 indexed [batch, head, value, key].
See kernels/rwkv7/reference.py for the recurrence.
"""
from __future__ import annotations

import torch

from .reference import initial_state7, wkv7_reference

__all__ = ["IMPLS7", "initial_state7", "wkv7", "wkv7_reference"]

IMPLS7 = ("auto", "reference")


def wkv7(r, log_w, k, v, a, b, state: torch.Tensor | None = None, *, impl: str = "auto"):
    """RWKV-7 WKV: output (B, T, H, N) in r's dtype and the final state (B, H, N, N) float32."""
    if impl not in IMPLS7:
        raise ValueError(f"impl must be one of {IMPLS7}, got {impl!r}")
    return wkv7_reference(r, log_w, k, v, a, b, state)
