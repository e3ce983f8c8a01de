"""RWKV-7's WKV as Triton kernels: prefill and a fused single-token decode step, recurrent in registers.

One program per (batch row, head, block of BLOCK_V value channels). The delta rule updates each value row of
the (N, N) state on its own (S[i, :] <- S[i, :] * w + (S[i, :] . a) b + v_i k), so a program keeps its
(BLOCK_V, N) rows of S in float32 registers and walks the sequence: per token it reads r, log_w, k, a, b (N each)
and v (BLOCK_V), writes BLOCK_V outputs, and stores the state once at the end. This is recurrent, not chunked:
exact to float32 (no tensor-core tf32, no triangular solve), one kernel that the interpreter checks end to end,
and B * H * N / BLOCK_V programs (48 at the 0.1B shape, batch 1) in flight. A chunked kernel (the WY form of
kernels/rwkv7/cpu.py, as flash-linear-attention's chunk_rwkv7) would use tensor cores for long prompts; it is
five kernels whose tiling and precision cannot be checked without a GPU here, so it is not written.

The decode step is the same kernel at T = 1 with strided state views read and written (in place allowed: each
program reads its rows before it writes them), so a CUDA graph can capture it on fixed buffers.

Triton fixes interpret-or-compile when a @triton.jit function is defined, from TRITON_INTERPRET: set it before this
module is first imported and the kernels take CPU tensors (the tests do that in a child process).
`kernels.rwkv7.wkv7(impl="auto")` imports this module only for CUDA tensors and only where triton is installed.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from . import check_wkv7_args
from ..wkv_triton import check_device, on_device

BLOCK_V = 16  # value rows per program: (16, 64) float32 state = 16 registers a thread at 2 warps
NUM_WARPS = 2


@triton.jit(do_not_specialize=["seq_len"])  # one compile for every prompt length
def _wkv7_kernel(
    r_ptr, log_w_ptr, k_ptr, v_ptr, a_ptr, b_ptr, out_ptr,
    state_in_ptr, in_stride_b, in_stride_h, state_out_ptr, out_stride_b, out_stride_h,
    seq_len, heads, size,
    HAS_STATE: tl.constexpr, BLOCK_V: tl.constexpr, BLOCK_K: tl.constexpr,
):
    row = tl.program_id(0).to(tl.int64)  # batch * heads + head
    batch, head = row // heads, row % heads
    rows = tl.program_id(1).to(tl.int64) * BLOCK_V + tl.arange(0, BLOCK_V)  # (BLOCK_V,) value channels
    cols = tl.arange(0, BLOCK_K).to(tl.int64)  # (BLOCK_K,) key channels
    row_mask, col_mask = rows < size, cols < size
    tile = rows[:, None] * size + cols[None, :]  # (BLOCK_V, BLOCK_K) into one head's (N, N)
    tile_mask = row_mask[:, None] & col_mask[None, :]
    if HAS_STATE:
        s = tl.load(state_in_ptr + batch * in_stride_b + head * in_stride_h + tile, mask=tile_mask, other=0.0)
    else:
        s = tl.zeros([BLOCK_V, BLOCK_K], dtype=tl.float32)
    offs = (batch * seq_len * heads + head) * size  # into (B, T, H, N), at t = 0
    step = heads * size
    for _ in range(seq_len):
        r = tl.load(r_ptr + offs + cols, mask=col_mask, other=0.0).to(tl.float32)  # (BLOCK_K,)
        w = tl.exp(tl.load(log_w_ptr + offs + cols, mask=col_mask, other=0.0).to(tl.float32))  # (BLOCK_K,)
        k = tl.load(k_ptr + offs + cols, mask=col_mask, other=0.0).to(tl.float32)  # (BLOCK_K,)
        a = tl.load(a_ptr + offs + cols, mask=col_mask, other=0.0).to(tl.float32)  # (BLOCK_K,)
        b = tl.load(b_ptr + offs + cols, mask=col_mask, other=0.0).to(tl.float32)  # (BLOCK_K,)
        v = tl.load(v_ptr + offs + rows, mask=row_mask, other=0.0).to(tl.float32)  # (BLOCK_V,)
        sa = tl.sum(s * a[None, :], axis=1)  # (BLOCK_V,): S a
        s = s * w[None, :] + sa[:, None] * b[None, :] + v[:, None] * k[None, :]  # (BLOCK_V, BLOCK_K)
        out = tl.sum(s * r[None, :], axis=1)  # (BLOCK_V,): S r
        tl.store(out_ptr + offs + rows, out.to(out_ptr.dtype.element_ty), mask=row_mask)
        offs += step
    tl.store(state_out_ptr + batch * out_stride_b + head * out_stride_h + tile, s, mask=tile_mask)


def _launch(inputs, out, state_in, state_out) -> None:
    """inputs and out contiguous (B, T, H, N); state_in (or None) and state_out float32 (B, H, N, N) whose (N, N)
    blocks are contiguous."""
    batch, seq_len, heads, size = inputs[0].shape
    state_ptr = state_out if state_in is None else state_in  # not read when HAS_STATE is False
    grid = (batch * heads, triton.cdiv(size, BLOCK_V))
    _wkv7_kernel[grid](
        *inputs, out, state_ptr, state_ptr.stride(0), state_ptr.stride(1),
        state_out, state_out.stride(0), state_out.stride(1), seq_len, heads, size,
        HAS_STATE=state_in is not None, BLOCK_V=BLOCK_V, BLOCK_K=triton.next_power_of_2(size), num_warps=NUM_WARPS,
    )


def _check_state_view(name: str, state: torch.Tensor) -> None:
    size = state.shape[-1]
    if state.stride(-1) != 1 or state.stride(-2) != size:
        raise ValueError(f"{name}: each head's (N, N) block must be contiguous, got strides {state.stride()}")


def wkv7_triton(r, log_w, k, v, a, b, state: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """RWKV-7 WKV over (B, T, H, N) inputs -> (output (B, T, H, N) in r's dtype, final state (B, H, N, N) float32).

    Same contract as `wkv7_reference`: inputs float32, float16 or bfloat16, same shape and dtype; state an optional
    (B, H, N, N) float32 [batch, head, value, key], read, never written.
    """
    check_wkv7_args((r, log_w, k, v, a, b), state)
    check_device("r", r)
    batch, _, heads, size = r.shape
    inputs = tuple(x.contiguous() for x in (r, log_w, k, v, a, b))  # (B, T, H, N) each
    state_in = None if state is None else state.contiguous()  # (B, H, N, N)
    out = torch.empty_like(inputs[0])  # (B, T, H, N)
    final = torch.empty(batch, heads, size, size, device=r.device, dtype=torch.float32)  # (B, H, N, N)
    with on_device(r):
        _launch(inputs, out, state_in, final)
    return out, final


def wkv7_step_triton(r, log_w, k, v, a, b, state_in: torch.Tensor,
                     state_out: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """One fused decode step: (B, H, N) inputs -> (output (B, H, N) in r's dtype, state_out).

    state_in: (B, H, N, N) float32, any batch/head strides (e.g. one layer of a stacked state) with contiguous
    (N, N) blocks. The new state goes to state_out (same layout rules; default a new tensor); state_out may be
    state_in itself, updated in place, which is what a CUDA graph over fixed buffers wants.
    """
    inputs = (r, log_w, k, v, a, b)
    check_wkv7_args(inputs, state_in, ndim=3)
    if state_in is None:
        raise ValueError("state_in is required for the decode step (initial_state7 gives the empty one)")
    check_device("r", r)
    state_out = torch.empty_like(state_in, memory_format=torch.contiguous_format) if state_out is None else state_out
    check_wkv7_args(inputs, state_out, ndim=3)
    _check_state_view("state_in", state_in)
    _check_state_view("state_out", state_out)
    inputs = tuple(x.contiguous().unsqueeze(1) for x in inputs)  # (B, 1, H, N) each
    out = torch.empty_like(inputs[0])  # (B, 1, H, N)
    with on_device(r):
        _launch(inputs, out, state_in, state_out)
    return out.squeeze(1), state_out
