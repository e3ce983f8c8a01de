"""The float32 reference for RWKV-4's WKV: Hugging Face's `rwkv_linear_attention_cpu`, token by token.

A state is the triple (num, den, max): the running numerator N = e^max * num and denominator
D = e^max * den, with max the running maximum of the log-weights, so num and den never overflow.
This loop is the oracle every fast path is tested against.
"""
from __future__ import annotations

import torch

State = tuple[torch.Tensor, torch.Tensor, torch.Tensor]

# The max of an empty state: e^(-1e38 - anything finite) is exactly 0, and -1e38 stays finite in float32.
EMPTY_MAX = -1e38


def accumulate_dtype(dtype: torch.dtype) -> torch.dtype:
    """float32 for float32/float16/bfloat16 inputs; float64 stays float64 (used by the gradient tests)."""
    return torch.promote_types(dtype, torch.float32)


def initial_state(batch: int, channels: int, device: torch.device, dtype: torch.dtype = torch.float32) -> State:
    """The empty state: num = 0, den = 0, max = -1e38, each (B, C)."""
    num = torch.zeros(batch, channels, device=device, dtype=dtype)  # (B, C)
    den = torch.zeros(batch, channels, device=device, dtype=dtype)  # (B, C)
    max_ = torch.full((batch, channels), EMPTY_MAX, device=device, dtype=dtype)  # (B, C)
    return num, den, max_


def wkv_reference(
    time_decay: torch.Tensor,
    time_first: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    state: State | None = None,
) -> tuple[torch.Tensor, State]:
    """WKV over key/value (B, T, C) -> (output (B, T, C) in key's dtype, final (num, den, max) (B, C) float32).

    time_decay and time_first are the raw (C,) parameters; the per-token decay is w = -exp(time_decay).
    state is an optional incoming (num, den, max); it is read, never written.
    """
    acc = accumulate_dtype(key.dtype)
    batch, seq_len, channels = key.shape
    w = -torch.exp(time_decay.to(acc))  # (C,)
    u = time_first.to(acc)  # (C,)
    if state is None:
        state = initial_state(batch, channels, key.device, acc)
    num, den, max_ = (s.to(acc) for s in state)  # (B, C) each
    outputs = []
    for t in range(seq_len):
        kt = key[:, t].to(acc)  # (B, C)
        vt = value[:, t].to(acc)  # (B, C)
        # Output: the state so far plus the current token, weighted by e^(u + k).
        q = torch.maximum(max_, kt + u)  # (B, C)
        e1 = torch.exp(max_ - q)  # (B, C)
        e2 = torch.exp(kt + u - q)  # (B, C)
        outputs.append((e1 * num + e2 * vt) / (e1 * den + e2))  # (B, C)
        # Update: decay the state by e^w, then add the current token with weight e^k.
        q = torch.maximum(max_ + w, kt)  # (B, C)
        e1 = torch.exp(max_ + w - q)  # (B, C)
        e2 = torch.exp(kt - q)  # (B, C)
        num = e1 * num + e2 * vt  # (B, C)
        den = e1 * den + e2  # (B, C)
        max_ = q
    output = torch.stack(outputs, dim=1).to(key.dtype)  # (B, T, C)
    return output, (num, den, max_)
