"""The WKV recurrence as a Triton kernel: one program per (batch row, block of channels).

Each program keeps its channels' state (num, den, max) in float32 registers and walks the sequence,
reading key/value in their own dtype and writing the output in key's dtype; only the final state is
stored. The sequence length is a runtime argument, so a new prompt length does not recompile.

Triton fixes interpret-or-compile when a @triton.jit function is defined, from TRITON_INTERPRET:
set TRITON_INTERPRET=1 before this module is first imported and the kernels run on CPU tensors
(the kernel tests do that in a child process). `kernels.wkv(impl="auto")` imports this module
only for CUDA tensors and only where triton is installed.
"""
from __future__ import annotations

import contextlib

import torch
import triton
import triton.language as tl

from .checks import check_args
from .cpu import MAX_TIME_DECAY
from .reference import EMPTY_MAX, State

# Globals read inside kernels must be constexpr.
_MAX_TIME_DECAY = tl.constexpr(MAX_TIME_DECAY)  # w = -exp(min(time_decay, 69)): finite, as in the CPU path
_EMPTY_MAX = tl.constexpr(EMPTY_MAX)

BLOCK_C = 64  # channels per program: C = 40 is one masked block, C = 96 two
NUM_WARPS = 2


@triton.jit
def wkv_token(num, den, max_, k, v, w, u):
    """The reference loop's body on float32 blocks: the output for (k, v) and the state after them."""
    uk = u + k
    q = tl.maximum(max_, uk)
    e1 = tl.exp(max_ - q)
    e2 = tl.exp(uk - q)
    out = (e1 * num + e2 * v) / (e1 * den + e2)
    decayed = max_ + w
    q = tl.maximum(decayed, k)
    e1 = tl.exp(decayed - q)
    e2 = tl.exp(k - q)
    return out, e1 * num + e2 * v, e1 * den + e2, q


@triton.jit
def decay_and_first(time_decay_ptr, time_first_ptr, cols, mask):
    """w = -exp(time_decay) and u = time_first for these channels, float32 whatever the parameter dtype."""
    time_decay = tl.load(time_decay_ptr + cols, mask=mask, other=0.0).to(tl.float32)
    w = -tl.exp(tl.minimum(time_decay, _MAX_TIME_DECAY))
    u = tl.load(time_first_ptr + cols, mask=mask, other=0.0).to(tl.float32)
    return w, u


@triton.jit(do_not_specialize=["seq_len"])  # one compile for every prompt length
def _wkv_forward_kernel(
    time_decay_ptr, time_first_ptr, key_ptr, value_ptr, out_ptr,
    num_in_ptr, den_in_ptr, max_in_ptr, num_out_ptr, den_out_ptr, max_out_ptr,
    seq_len, channels,
    HAS_STATE: tl.constexpr, BLOCK: tl.constexpr,
):
    batch = tl.program_id(0).to(tl.int64)
    cols = tl.program_id(1).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)  # (BLOCK,) int64
    mask = cols < channels
    w, u = decay_and_first(time_decay_ptr, time_first_ptr, cols, mask)
    state_offs = batch * channels + cols  # into (B, C)
    if HAS_STATE:
        num = tl.load(num_in_ptr + state_offs, mask=mask, other=0.0)
        den = tl.load(den_in_ptr + state_offs, mask=mask, other=0.0)
        max_ = tl.load(max_in_ptr + state_offs, mask=mask, other=_EMPTY_MAX)
    else:
        num = tl.zeros([BLOCK], dtype=tl.float32)
        den = tl.zeros([BLOCK], dtype=tl.float32)
        max_ = tl.full([BLOCK], _EMPTY_MAX, tl.float32)
    offs = batch * seq_len * channels + cols  # into (B, T, C), at t = 0
    k = tl.load(key_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    v = tl.load(value_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    for t in range(seq_len):
        # Prefetch token t + 1 while token t is computed.
        more = mask & (t + 1 < seq_len)
        k_next = tl.load(key_ptr + offs + channels, mask=more, other=0.0).to(tl.float32)
        v_next = tl.load(value_ptr + offs + channels, mask=more, other=0.0).to(tl.float32)
        out, num, den, max_ = wkv_token(num, den, max_, k, v, w, u)
        tl.store(out_ptr + offs, out.to(out_ptr.dtype.element_ty), mask=mask)
        offs += channels
        k = k_next
        v = v_next
    tl.store(num_out_ptr + state_offs, num, mask=mask)
    tl.store(den_out_ptr + state_offs, den, mask=mask)
    tl.store(max_out_ptr + state_offs, max_, mask=mask)


def _launch_wkv_forward(time_decay, time_first, key, value, out, state_in: State | None, state_out: State) -> None:
    """Launch on contiguous tensors: key/value/out (B, T, C), state_in/state_out float32 (B, C) each."""
    batch, seq_len, channels = key.shape
    state_ptrs = state_in if state_in is not None else state_out  # not read when HAS_STATE is False
    grid = (batch, triton.cdiv(channels, BLOCK_C))
    _wkv_forward_kernel[grid](
        time_decay, time_first, key, value, out, *state_ptrs, *state_out,
        seq_len, channels, HAS_STATE=state_in is not None, BLOCK=BLOCK_C, num_warps=NUM_WARPS,
    )


def interpreted() -> bool:
    """True when this module's kernels were defined under TRITON_INTERPRET=1 (they then take CPU tensors)."""
    return not isinstance(_wkv_forward_kernel, triton.runtime.JITFunction)


def check_device(name: str, x: torch.Tensor) -> None:
    """Compiled kernels need CUDA tensors; interpreted ones take any."""
    if not x.is_cuda and not interpreted():
        raise RuntimeError(f"{name} is on {x.device}: the Triton kernels need CUDA tensors "
                           "(or TRITON_INTERPRET=1 set before kernels/wkv_triton.py is first imported)")


def on_device(x: torch.Tensor):
    """Triton launches on the current CUDA device: make it x's (a no-op for CPU tensors)."""
    return torch.cuda.device(x.device) if x.is_cuda else contextlib.nullcontext()


def wkv_triton(
    time_decay: torch.Tensor,
    time_first: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    state: State | None = None,
) -> tuple[torch.Tensor, State]:
    """WKV over key/value (B, T, C) -> (output (B, T, C) in key's dtype, final (num, den, max) (B, C) float32).

    Same contract as `wkv_reference`: time_decay, time_first (C,) raw parameters (any float dtype);
    key/value float32, float16 or bfloat16; state an optional (num, den, max), read, never written.
    """
    check_args(time_decay, time_first, key, value, state)
    check_device("key", key)
    batch, _, channels = key.shape
    key, value = key.contiguous(), value.contiguous()  # (B, T, C)
    state_in = None if state is None else tuple(s.contiguous() for s in state)  # (B, C) each
    out = torch.empty_like(key)  # (B, T, C)
    state_out = tuple(torch.empty(batch, channels, device=key.device, dtype=torch.float32) for _ in range(3))
    with on_device(key):
        _launch_wkv_forward(time_decay.contiguous(), time_first.contiguous(), key, value, out, state_in, state_out)
    return out, state_out
