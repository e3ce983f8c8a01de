"""The WKV kernels' argument checks, shared by `kernels.wkv` and `wkv_triton` (which is also called directly)."""
from __future__ import annotations

import torch

DTYPES = (torch.float32, torch.float16, torch.bfloat16)


def check_tensor(name: str, x, ndim: int) -> None:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() != ndim:
        raise ValueError(f"{name} must be {ndim}-D, got shape {tuple(x.shape)}")
    if x.dtype not in DTYPES:
        raise ValueError(f"{name} dtype must be float32, float16 or bfloat16, got {x.dtype}")


def check_state(state, batch: int, channels: int, device: torch.device) -> None:
    if not isinstance(state, (tuple, list)) or len(state) != 3:
        raise TypeError(f"state must be a tuple (num, den, max) of three tensors, got {type(state).__name__}")
    for name, s in zip(("state[0] (num)", "state[1] (den)", "state[2] (max)"), state):
        if not isinstance(s, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(s).__name__}")
        if s.dtype != torch.float32:
            raise ValueError(f"{name} must be float32, got {s.dtype}")
        if tuple(s.shape) != (batch, channels):
            raise ValueError(f"{name} must have shape (B, C) = {(batch, channels)}, got {tuple(s.shape)}")
        if s.device != device:
            raise ValueError(f"{name} is on {s.device}, but key is on {device}")


def check_args(time_decay, time_first, key, value, state) -> None:
    """Raise TypeError/ValueError naming the argument at fault."""
    check_tensor("key", key, 3)
    check_tensor("value", value, 3)
    batch, seq_len, channels = key.shape
    if value.shape != key.shape or value.dtype != key.dtype:
        raise ValueError(f"value must match key: got {tuple(value.shape)} {value.dtype} vs {tuple(key.shape)} {key.dtype}")
    if seq_len < 1:
        raise ValueError(f"key must hold at least one token (T >= 1), got shape {tuple(key.shape)}")
    for name, x in (("time_decay", time_decay), ("time_first", time_first)):
        check_tensor(name, x, 1)
        if x.shape[0] != channels:
            raise ValueError(f"{name} must have shape (C,) = ({channels},), got {tuple(x.shape)}")
    for name, x in (("value", value), ("time_decay", time_decay), ("time_first", time_first)):
        if x.device != key.device:
            raise ValueError(f"{name} is on {x.device}, but key is on {key.device}")
    if state is not None:
        check_state(state, batch, channels, key.device)
