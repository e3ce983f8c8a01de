"""RWKV-7's WKV on x86 CPUs in C++ (kernels/wkv_loops/wkv7_sequence.cpp): the reference's token loop, each head's
state held in the core's cache, for inference.

Where it runs (`refusal` is ""): the extension is built here (x86 with AVX512F, see kernels.wkv_loops.load), the
head size is 16, 32, 64 or 128, the inputs are float32/float16/bfloat16, and no gradient is wanted. Elsewhere the
chunked torch form (kernels/rwkv7/cpu.py) runs, which also carries autograd. Measured against it with
`python -m kernels.rwkv7.bench`.
"""
from __future__ import annotations

import torch

from .. import wkv_loops
from ..cpp import extension_refusal
from .reference import initial_state7

HEAD_SIZES = (16, 32, 64, 128)  # the kernel's templates (N / 16 vectors a state row)


def refusal(inputs, state: torch.Tensor | None) -> str:
    """Why wkv7_cpp cannot run this call of (r, log_w, k, v, a, b), or "" where it can: kernels.cpp's conditions
    (CPU, a dtype it has, no gradient wanted, the extension built) and a head size it has."""
    size = inputs[0].shape[-1]
    if size not in HEAD_SIZES:
        return f"it takes head sizes {HEAD_SIZES}, got {size}"
    return extension_refusal((*inputs, state))


def wkv7_cpp(r, log_w, k, v, a, b, state: torch.Tensor | None = None,
             out_state: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Same contract as `wkv7_reference` and `wkv7_cpu`: (B, T, H, N) inputs -> (output (B, T, H, N) in r's dtype,
    final state (B, H, N, N) float32); `state` is read, never written; the final state goes into `out_state` when
    given. Arguments checked by kernels.rwkv7.wkv7; `refusal` must be ""."""
    batch, _, heads, size = r.shape
    dtype = r.dtype
    r, k, v, a, b = (x.float().contiguous() for x in (r, k, v, a, b))  # (B, T, H, N) each; no copy for float32
    w = torch.exp(log_w.float()).contiguous()  # (B, T, H, N): the decay per key channel
    start = initial_state7(batch, heads, size, r.device) if state is None else state.float().contiguous()
    final = torch.empty_like(start) if out_state is None else out_state  # (B, H, N, N)
    output = wkv_loops.wkv7_sequence(r, w, k, v, a, b, start, final)  # (B, T, H, N) float32
    return output.to(dtype), final
