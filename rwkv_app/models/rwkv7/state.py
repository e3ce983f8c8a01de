"""RWKV-7's recurrent state: three batch-first tensors, so rows stack, split and select like any batch.

    state[0]  att_shift  (B, L, C)        the last input of each layer's time mix (token shift), model dtype
    state[1]  ffn_shift  (B, L, C)        the last input of each layer's channel mix, model dtype
    state[2]  wkv        (B, L, H, N, N)  each head's WKV matrix, float32, indexed [value, key] as BlinkDL's

L = num_hidden_layers, C = hidden_size, H = num_heads, N = head_dim. All start at zero. The WKV state stays
float32 whatever the weights' dtype.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ...errors import InputError
from .config import Rwkv7Config

STATE_NAMES = ("att_shift", "ffn_shift", "wkv")


@dataclass
class LayerState7:
    """One layer's slice of the state (None before the first token)."""

    att_shift: torch.Tensor | None  # (B, C)
    ffn_shift: torch.Tensor | None  # (B, C)
    wkv: torch.Tensor | None  # (B, H, N, N) float32
    wkv_out: torch.Tensor | None = None  # (B, H, N, N) float32: where the layer writes its new WKV state, if given


def state_shapes(config: Rwkv7Config, batch: int) -> tuple[tuple[int, ...], ...]:
    L, C, H, N = config.num_hidden_layers, config.hidden_size, config.num_heads, config.head_dim
    return (batch, L, C), (batch, L, C), (batch, L, H, N, N)


def init_state7(config: Rwkv7Config, batch: int, dtype: torch.dtype, device: torch.device | str) -> list[torch.Tensor]:
    """The state before any token: zeros, the token shifts in `dtype`, the WKV matrices in float32."""
    shapes = state_shapes(config, batch)
    dtypes = (dtype, dtype, torch.float32)
    return [torch.zeros(shape, dtype=dt, device=device) for shape, dt in zip(shapes, dtypes)]


def check_state7(state, config: Rwkv7Config, batch: int, device: torch.device) -> None:
    """Raise InputError naming the offending entry if `state` is not a valid RWKV-7 state for this batch."""
    if not isinstance(state, (list, tuple)) or len(state) != len(STATE_NAMES):
        got = f"{type(state).__name__} of length {len(state)}" if isinstance(state, (list, tuple)) else type(state).__name__
        raise InputError(f"an RWKV-7 state is a list of 3 tensors {STATE_NAMES}, got {got}")
    for index, (tensor, expected) in enumerate(zip(state, state_shapes(config, batch))):
        name = f"state[{index}] ({STATE_NAMES[index]})"
        if not isinstance(tensor, torch.Tensor) or not tensor.is_floating_point():
            raise InputError(f"{name} must be a floating point tensor, got {getattr(tensor, 'dtype', type(tensor).__name__)}")
        if tuple(tensor.shape) != expected:
            raise InputError(f"{name} has shape {tuple(tensor.shape)}, expected {expected}")
        if tensor.device != device:
            raise InputError(f"{name} is on {tensor.device} but the model runs on {device}")


def split_layers7(state: list[torch.Tensor] | None, num_layers: int, dtype: torch.dtype,
                  wkv_buffer: torch.Tensor | None = None) -> list[LayerState7]:
    """Per-layer views in the dtypes the blocks compute in; the caller's tensors are never written.
    `wkv_buffer` (L, B, H, N, N): each layer's new WKV state goes to its slice (see stack_layers7)."""
    outs = [None if wkv_buffer is None else wkv_buffer[i] for i in range(num_layers)]  # L x (B, H, N, N)
    if state is None:
        return [LayerState7(None, None, None, outs[i]) for i in range(num_layers)]
    att = state[0].to(dtype).unbind(1)  # L x (B, C)
    ffn = state[1].to(dtype).unbind(1)  # L x (B, C)
    wkv = state[2].float().unbind(1)  # L x (B, H, N, N)
    return [LayerState7(att[i], ffn[i], wkv[i], outs[i]) for i in range(num_layers)]


def new_wkv_buffer(config: Rwkv7Config, batch: int, device: torch.device | str) -> torch.Tensor | None:
    """Uninitialised layer-major (L, B, H, N, N) float32 memory for a forward's new WKV states; None in grad mode
    (autograd does not follow writes into slices of one buffer: the layers' states are stacked instead)."""
    if torch.is_grad_enabled():
        return None
    L, H, N = config.num_hidden_layers, config.num_heads, config.head_dim
    return torch.empty((L, batch, H, N, N), dtype=torch.float32, device=device)


def stack_layers7(layers: list[LayerState7], wkv_buffer: torch.Tensor | None) -> list[torch.Tensor]:
    """The three batch-first tensors from per-layer states: a fresh state, never the caller's.

    The WKV tensor is a (B, L, H, N, N) view of `wkv_buffer`'s layer-major memory (outside grad mode), which
    every layer wrote its new state into: no copy of the largest tensor (37.7 MB at batch 16 of the 0.1B shape),
    and the next token's split_layers7 hands each layer a contiguous (B, H, N, N) slice. Callers that need
    contiguous memory ask for it (session files; the family's row() copies)."""
    att = torch.stack([layer.att_shift for layer in layers], dim=1)  # (B, L, C)
    ffn = torch.stack([layer.ffn_shift for layer in layers], dim=1)  # (B, L, C)
    if wkv_buffer is None:  # grad mode
        return [att, ffn, torch.stack([layer.wkv for layer in layers], dim=1)]  # (B, L, H, N, N)
    for index, layer in enumerate(layers):
        if layer.wkv is not layer.wkv_out:
            raise RuntimeError(f"layer {index} did not write its WKV state into the forward's buffer")
    return [att, ffn, wkv_buffer.transpose(0, 1)]  # (B, L, H, N, N) view of (L, B, H, N, N)
