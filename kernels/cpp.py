"""RWKV-4's WKV on x86 CPUs in C++ (kernels/wkv_loops/wkv4_sequence.cpp): the reference's token loop, 16 channels'
(num, den, max) in registers for the whole sequence, for inference.

Where it runs (`refusal` is ""): CPU tensors in float32/float16/bfloat16, no gradient wanted, the extension built
here (x86 with AVX512F, see kernels.wkv_loops.load; the first call on a machine builds it, ~20 s). Elsewhere the
chunked torch form (kernels/cpu.py) runs, which also carries autograd. kernels/rwkv7/cpp.py is RWKV-7's, with the
same conditions (`extension_refusal`) plus its head sizes.
"""
from __future__ import annotations

import torch

from . import wkv_loops
from .checks import DTYPES
from .reference import State, initial_state


def extension_refusal(tensors) -> str:
    """Why the C++ WKV kernels cannot take these tensors (the first sets device and dtype; None entries are
    skipped), or "" where they can."""
    first = tensors[0]
    if first.device.type != "cpu":
        return f"it takes CPU tensors, got {first.device.type}"
    if first.dtype not in DTYPES:
        return f"it takes float32, float16 or bfloat16, got {first.dtype}"
    if torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors):
        return "it has no backward pass and a gradient is wanted"
    if wkv_loops.load() is None:
        return f"the C++ extension does not run here ({wkv_loops.unsupported_reason() or 'it did not build'})"
    return ""


def refusal(time_decay, time_first, key, value, state: State | None) -> str:
    """Why wkv_cpp cannot run this call, or "" where it can."""
    return extension_refusal((key, value, time_decay, time_first, *(state or ())))


def wkv_cpp(time_decay: torch.Tensor, time_first: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
            state: State | None = None) -> tuple[torch.Tensor, State]:
    """Same contract as `wkv_reference` and `wkv_cpu`: key/value (B, T, C) -> (output (B, T, C) in key's dtype,
    final (num, den, max) (B, C) float32); `state` is read, never written. Arguments checked by kernels.wkv;
    `refusal` must be ""."""
    batch, _, channels = key.shape
    start = initial_state(batch, channels, key.device) if state is None else state
    start = [s.float().contiguous() for s in start]  # (B, C) each
    final = [torch.empty_like(s) for s in start]  # (B, C) each
    decay, first = time_decay.float().contiguous(), time_first.float().contiguous()  # (C,) each
    k, v = key.float().contiguous(), value.float().contiguous()  # (B, T, C) each; no copy for float32
    output = wkv_loops.wkv4_sequence(decay, first, k, v, start, final)  # (B, T, C) float32
    return output.to(key.dtype), tuple(final)
