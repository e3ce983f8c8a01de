"""The recurrent state in Hugging Face's layout, and the checks a state passed in must pass.

A state is a list of five tensors of shape (batch, channels, num_hidden_layers):
  [0] ffn_shift  feed-forward token shift, model dtype, hidden_size channels
  [1] att_shift  attention token shift, model dtype, hidden_size channels
  [2] num        WKV numerator, float32, attention_hidden_size channels
  [3] den        WKV denominator, float32, attention_hidden_size channels
  [4] max        WKV running max of the exponents, float32, starts at EMPTY_MAX
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from kernels.reference import EMPTY_MAX

from .config import RwkvConfig
from ...errors import InputError

STATE_NAMES = ("ffn_shift", "att_shift", "num", "den", "max")


@dataclass
class LayerState:
    """One layer's slice of the state; tensors are (B, C)."""

    ffn_shift: torch.Tensor | None
    att_shift: torch.Tensor | None
    wkv: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None


def init_state(config: RwkvConfig, batch: int, dtype: torch.dtype, device: torch.device | str) -> list[torch.Tensor]:
    """The state before any token: zeros, with the running max very negative."""
    H, A, L = config.hidden_size, config.attention_hidden_size, config.num_hidden_layers
    shift = [torch.zeros(batch, H, L, dtype=dtype, device=device) for _ in range(2)]  # (B, H, L)
    wkv = [torch.zeros(batch, A, L, dtype=torch.float32, device=device) for _ in range(3)]  # (B, A, L)
    wkv[2].fill_(EMPTY_MAX)
    return shift + wkv


def clone_state(state: list[torch.Tensor]) -> list[torch.Tensor]:
    """Forking a branch is a clone: the copy shares no storage with the original."""
    return [tensor.clone() for tensor in state]


def check_state(state, config: RwkvConfig, batch: int, device: torch.device) -> None:
    """Raise InputError naming the offending entry if `state` is not a valid state for this batch."""
    if not isinstance(state, (list, tuple)) or len(state) != 5:
        got = f"{type(state).__name__} of length {len(state)}" if isinstance(state, (list, tuple)) else type(state).__name__
        raise InputError(f"state must be a list of 5 tensors {STATE_NAMES}, got {got}")
    H, A, L = config.hidden_size, config.attention_hidden_size, config.num_hidden_layers
    for index, tensor in enumerate(state):
        name = f"state[{index}] ({STATE_NAMES[index]})"
        if not isinstance(tensor, torch.Tensor):
            raise InputError(f"{name} must be a tensor, got {type(tensor).__name__}")
        if not tensor.is_floating_point():
            raise InputError(f"{name} must be a floating point tensor, got {tensor.dtype}")
        expected = (batch, H if index < 2 else A, L)
        if tuple(tensor.shape) != expected:
            raise InputError(
                f"{name} has shape {tuple(tensor.shape)}, expected {expected} "
                f"(batch, {'hidden_size' if index < 2 else 'attention_hidden_size'}, num_hidden_layers)"
            )
        if tensor.device != device:
            raise InputError(f"{name} is on {tensor.device} but the model runs on {device}")


def split_layers(state: list[torch.Tensor] | None, num_layers: int, dtype: torch.dtype) -> list[LayerState]:
    """Views of each layer's slice, converted to the dtypes the blocks compute in; nothing is written back."""
    if state is None:
        return [LayerState(None, None, None) for _ in range(num_layers)]
    ffn = state[0].to(dtype).unbind(-1)  # L x (B, H)
    att = state[1].to(dtype).unbind(-1)  # L x (B, H)
    num, den, mx = (s.float().unbind(-1) for s in state[2:])  # L x (B, A)
    return [LayerState(ffn[i], att[i], (num[i], den[i], mx[i])) for i in range(num_layers)]


def stack_layers(layers: list[LayerState]) -> list[torch.Tensor]:
    """Reassemble per-layer states into the five (B, C, L) tensors; a fresh state, never the caller's.

    Each is a (B, C, L) view of layer-major memory (L, B, C): the next token's split_layers then hands every layer
    a contiguous (B, C) slice, where a (B, C, L)-contiguous tensor's would be strided (measured: a batch-16 int8
    decode forward of the 169M shape ~5% faster). Callers that need contiguous memory ask for it (session files,
    the CUDA step copy)."""
    def stacked(parts: list[torch.Tensor]) -> torch.Tensor:
        return torch.stack(parts, dim=0).permute(1, 2, 0)  # (L, B, C) memory as (B, C, L)

    ffn = stacked([layer.ffn_shift for layer in layers])  # (B, H, L)
    att = stacked([layer.att_shift for layer in layers])  # (B, H, L)
    wkv = [stacked([layer.wkv[k] for layer in layers]) for k in range(3)]  # 3 x (B, A, L)
    return [ffn, att] + wkv
