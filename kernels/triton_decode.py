"""Fused single-token kernels for RWKV-4 decode: everything between the matmuls, one launch each.

Per block and token (the seven matmuls stay torch, i.e. cuBLAS):
  ln_mix         [residual add,] layer norm, the token-shift mixes; the new shift goes to the state
  wkv_step       one WKV step from the state, sigmoid(r) * wkv * out_scale; the new state is written
  relu_square    relu(k)^2 * out_scale
  gate_residual  (hidden + sigmoid(r) * v) * residual_scale
All arithmetic is float32 in registers; tensors are read and written in their own dtypes. State
slices are (B, C) views with any strides, e.g. one layer of the model's (B, C, L) state tensors.
Like kernels/wkv_triton.py, these take CPU tensors when defined under TRITON_INTERPRET=1. They launch
on the current CUDA device; a caller whose tensors live on another one wraps the calls in
`wkv_triton.on_device(x)` once (rwkv_app/models/rwkv4/fused_decode.py does, per token).
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from .reference import State
from .wkv_triton import check_device, decay_and_first, wkv_token

ELEMENTWISE_BLOCK = 1024
STEP_BLOCK = 256


@triton.jit
def _store_mix(out_ptr, mix_ptr, offs, cols, mask, shifted, delta):
    """lerp(shifted, x, mix) = shifted + mix * (x - shifted), stored in out's dtype."""
    mix = tl.load(mix_ptr + cols, mask=mask, other=0.0).to(tl.float32)
    tl.store(out_ptr + offs, (shifted + mix * delta).to(out_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _ln_mix_kernel(
    x_ptr, add_ptr, sum_ptr, weight_ptr, bias_ptr,
    shift_in_ptr, shift_out_ptr, shift_stride_b, shift_stride_c,
    mix0_ptr, mix1_ptr, mix2_ptr, out0_ptr, out1_ptr, out2_ptr,
    hidden, eps,
    HAS_ADD: tl.constexpr, N_MIX: tl.constexpr, BLOCK: tl.constexpr,
):
    row = tl.program_id(0).to(tl.int64)
    cols = tl.arange(0, BLOCK)
    mask = cols < hidden
    offs = row * hidden + cols  # into (B, H)
    x = tl.load(x_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    if HAS_ADD:
        x = x + tl.load(add_ptr + offs, mask=mask, other=0.0).to(tl.float32)
        x = x.to(sum_ptr.dtype.element_ty).to(tl.float32)  # the residual stream is kept in the model dtype
        tl.store(sum_ptr + offs, x.to(sum_ptr.dtype.element_ty), mask=mask)
    mean = tl.sum(x, axis=0) / hidden
    centered = tl.where(mask, x - mean, 0.0)
    rstd = 1.0 / tl.sqrt(tl.sum(centered * centered, axis=0) / hidden + eps)
    weight = tl.load(weight_ptr + cols, mask=mask, other=0.0).to(tl.float32)
    bias = tl.load(bias_ptr + cols, mask=mask, other=0.0).to(tl.float32)
    normed = (centered * rstd * weight + bias).to(shift_out_ptr.dtype.element_ty)  # model dtype, as torch rounds it
    shift_offs = row * shift_stride_b + cols * shift_stride_c
    shifted = tl.load(shift_in_ptr + shift_offs, mask=mask, other=0.0).to(tl.float32)
    tl.store(shift_out_ptr + shift_offs, normed, mask=mask)
    delta = normed.to(tl.float32) - shifted
    _store_mix(out0_ptr, mix0_ptr, offs, cols, mask, shifted, delta)
    if N_MIX >= 2:
        _store_mix(out1_ptr, mix1_ptr, offs, cols, mask, shifted, delta)
    if N_MIX >= 3:
        _store_mix(out2_ptr, mix2_ptr, offs, cols, mask, shifted, delta)


@triton.jit
def _wkv_step_kernel(
    time_decay_ptr, time_first_ptr, key_ptr, value_ptr, receptance_ptr, out_ptr,
    num_in_ptr, den_in_ptr, max_in_ptr, num_out_ptr, den_out_ptr, max_out_ptr,
    channels, state_stride_b, state_stride_c, out_scale,
    BLOCK: tl.constexpr,
):
    row = tl.program_id(0).to(tl.int64)
    cols = tl.program_id(1).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = cols < channels
    w, u = decay_and_first(time_decay_ptr, time_first_ptr, cols, mask)
    offs = row * channels + cols  # into (B, C)
    k = tl.load(key_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    v = tl.load(value_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    r = tl.load(receptance_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    state_offs = row * state_stride_b + cols * state_stride_c
    num = tl.load(num_in_ptr + state_offs, mask=mask, other=0.0)
    den = tl.load(den_in_ptr + state_offs, mask=mask, other=0.0)
    max_ = tl.load(max_in_ptr + state_offs, mask=mask, other=0.0)
    wkv, num, den, max_ = wkv_token(num, den, max_, k, v, w, u)
    tl.store(out_ptr + offs, (tl.sigmoid(r) * wkv * out_scale).to(out_ptr.dtype.element_ty), mask=mask)
    tl.store(num_out_ptr + state_offs, num, mask=mask)
    tl.store(den_out_ptr + state_offs, den, mask=mask)
    tl.store(max_out_ptr + state_offs, max_, mask=mask)


@triton.jit
def _relu_square_kernel(x_ptr, out_ptr, numel, scale, BLOCK: tl.constexpr):
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < numel
    x = tl.maximum(tl.load(x_ptr + offs, mask=mask, other=0.0).to(tl.float32), 0.0)
    tl.store(out_ptr + offs, (x * x * scale).to(out_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _gate_residual_kernel(hidden_ptr, receptance_ptr, value_ptr, out_ptr, numel, scale, BLOCK: tl.constexpr):
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < numel
    hidden = tl.load(hidden_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    r = tl.load(receptance_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    v = tl.load(value_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    tl.store(out_ptr + offs, ((hidden + tl.sigmoid(r) * v) * scale).to(out_ptr.dtype.element_ty), mask=mask)


def _launch_ln_mix(x, add, total, weight, bias, eps, mixes, shift_in, shift_out, outs) -> None:
    batch, hidden = x.shape
    block = triton.next_power_of_2(hidden)
    mixes3, outs3 = (list(mixes) + [mixes[0]] * 3)[:3], (list(outs) + [outs[0]] * 3)[:3]  # unused slots: any pointer
    _ln_mix_kernel[(batch,)](
        x, add if add is not None else x, total, weight, bias,
        shift_in, shift_out, shift_out.stride(0), shift_out.stride(1),
        *mixes3, *outs3, hidden, eps,
        HAS_ADD=add is not None, N_MIX=len(mixes), BLOCK=block, num_warps=min(max(block // 256, 1), 16),
    )


def _launch_wkv_step(time_decay, time_first, key, value, receptance, out, state_in, state_out, out_scale) -> None:
    batch, channels = key.shape
    grid = (batch, triton.cdiv(channels, STEP_BLOCK))
    strides = state_out[0].stride()
    _wkv_step_kernel[grid](
        time_decay, time_first, key, value, receptance, out, *state_in, *state_out,
        channels, strides[0], strides[1], out_scale, BLOCK=STEP_BLOCK, num_warps=4,
    )


def _launch_elementwise(kernel, tensors, out, scale) -> None:
    numel = out.numel()
    kernel[(triton.cdiv(numel, ELEMENTWISE_BLOCK),)](*tensors, out, numel, scale, BLOCK=ELEMENTWISE_BLOCK, num_warps=4)


def _check_rows(name: str, x: torch.Tensor, shape: tuple[int, ...], dtype: torch.dtype | None = None) -> None:
    """x must be a contiguous tensor of this shape (and dtype), on a device the kernels accept."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if tuple(x.shape) != tuple(shape):
        raise ValueError(f"{name} must have shape {tuple(shape)}, got {tuple(x.shape)}")
    if dtype is not None and x.dtype != dtype:
        raise ValueError(f"{name} must be {dtype}, got {x.dtype}")
    if not x.is_contiguous():
        raise ValueError(f"{name} must be contiguous")
    check_device(name, x)


def _check_state_slices(name: str, state_in, state_out, shape: tuple[int, int], dtype: torch.dtype) -> None:
    """(B, C) views, any strides, but the same strides in and out."""
    for i, (s_in, s_out) in enumerate(zip(state_in, state_out)):
        for label, s in ((f"{name}_in[{i}]", s_in), (f"{name}_out[{i}]", s_out)):
            if tuple(s.shape) != shape or s.dtype != dtype:
                raise ValueError(f"{label} must be {dtype} of shape {shape}, got {s.dtype} {tuple(s.shape)}")
            check_device(label, s)
        if s_in.stride() != s_out.stride():
            raise ValueError(f"{name}_in[{i}] and {name}_out[{i}] must have the same strides")


def ln_mix(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor,
    eps: float,
    mixes: tuple[torch.Tensor, ...],
    shift_in: torch.Tensor,
    shift_out: torch.Tensor,
    add: torch.Tensor | None = None,
) -> tuple[torch.Tensor, ...]:
    """Residual add, layer norm and token-shift mixes for one token.

    x, add: (B, H) hidden states in the model dtype; weight, bias: (H,); mixes: 1 to 3 (H,) time_mix
    vectors. With h = x + add (or x), y = layer_norm(h): writes y to shift_out (B, H) and returns
    (h, lerp(shift_in, y, mix) for each mix), each (B, H) in x's dtype. shift_in is only read.
    """
    batch, hidden = x.shape
    _check_rows("x", x, (batch, hidden))
    for name, t in (("weight", weight), ("bias", bias), *((f"mixes[{i}]", m) for i, m in enumerate(mixes))):
        _check_rows(name, t, (hidden,))
    if not 1 <= len(mixes) <= 3:
        raise ValueError(f"mixes must hold 1 to 3 vectors, got {len(mixes)}")
    _check_state_slices("shift", (shift_in,), (shift_out,), (batch, hidden), x.dtype)
    if add is not None:
        _check_rows("add", add, (batch, hidden), x.dtype)
    total = torch.empty_like(x) if add is not None else x  # (B, H)
    outs = tuple(torch.empty_like(x) for _ in mixes)  # (B, H) each
    _launch_ln_mix(x, add, total, weight, bias, float(eps), mixes, shift_in, shift_out, outs)
    return (total, *outs)


def wkv_step(
    time_decay: torch.Tensor,
    time_first: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    receptance: torch.Tensor,
    state_in: State,
    state_out: State,
    out_scale: float = 1.0,
) -> torch.Tensor:
    """One WKV step gated by the receptance: returns sigmoid(r) * wkv * out_scale, (B, C) in key's dtype.

    time_decay, time_first: (C,) raw parameters; key, value, receptance: (B, C) pre-sigmoid, one dtype.
    state_in: (num, den, max) float32 (B, C) views, read; the state after the token goes to state_out.
    """
    batch, channels = key.shape
    _check_rows("key", key, (batch, channels))
    for name, t in (("value", value), ("receptance", receptance)):
        _check_rows(name, t, (batch, channels), key.dtype)
    for name, t in (("time_decay", time_decay), ("time_first", time_first)):
        _check_rows(name, t, (channels,))
    _check_state_slices("state", state_in, state_out, (batch, channels), torch.float32)
    out = torch.empty_like(key)  # (B, C)
    _launch_wkv_step(time_decay, time_first, key, value, receptance, out, state_in, state_out, float(out_scale))
    return out


def relu_square(x: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
    """relu(x)^2 * scale for the feed-forward key, x (B, I) -> (B, I) in x's dtype."""
    _check_rows("x", x, tuple(x.shape))
    out = torch.empty_like(x)  # (B, I)
    _launch_elementwise(_relu_square_kernel, (x,), out, float(scale))
    return out


def gate_residual(hidden: torch.Tensor, receptance: torch.Tensor, value: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
    """(hidden + sigmoid(receptance) * value) * scale: the feed-forward's gated residual, each (B, H)."""
    _check_rows("hidden", hidden, tuple(hidden.shape))
    for name, t in (("receptance", receptance), ("value", value)):
        _check_rows(name, t, tuple(hidden.shape), hidden.dtype)
    out = torch.empty_like(hidden)  # (B, H)
    _launch_elementwise(_gate_residual_kernel, (hidden, receptance, value), out, float(scale))
    return out
