"""RWKV-4 WKV kernels: the float32 reference, the fast CPU path, and `wkv`, which checks and dispatches.

    output, (num, den, max) = wkv(time_decay, time_first, key, value, state=None, impl="auto")

impl: "reference" (the token-by-token oracle), "cpu" (chunked torch ops, any device), "triton"
(CUDA tensors only; `wkv_triton` in kernels/wkv_triton.py, whose kernels also run on CPU tensors under
TRITON_INTERPRET=1 for tests), or "auto": triton for CUDA tensors when the triton package is present,
else cpu. kernels/triton_decode.py holds the fused single-token decode kernels (rwkv_app/fused_decode.py).
Nothing here imports triton until a CUDA tensor asks for it.
"""
from __future__ import annotations

import functools
import importlib.util

import torch

from .cpu import wkv_cpu, wkv_cpu_step
from .reference import State, wkv_reference

__all__ = ["IMPLS", "triton_available", "wkv", "wkv_cpu", "wkv_cpu_step", "wkv_reference"]

IMPLS = ("auto", "reference", "cpu", "triton")
DTYPES = (torch.float32, torch.float16, torch.bfloat16)


@functools.cache
def _triton_impl():
    """`wkv_triton` from kernels/wkv_triton.py, or None where the triton package is absent or does not import."""
    if importlib.util.find_spec("triton") is None or importlib.util.find_spec(f"{__name__}.wkv_triton") is None:
        return None
    try:
        from .wkv_triton import wkv_triton
    except ImportError:  # a triton build that does not fit this platform: the CPU path, silently
        return None
    return wkv_triton


def triton_available() -> bool:
    """Whether the Triton kernels can be used (for CUDA tensors); imports triton on first call."""
    return _triton_impl() is not None


def _check_tensor(name: str, x, ndim: int) -> None:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() != ndim:
        raise ValueError(f"{name} must be {ndim}-D, got shape {tuple(x.shape)}")
    if x.dtype not in DTYPES:
        raise ValueError(f"{name} dtype must be float32, float16 or bfloat16, got {x.dtype}")


def _check_state(state, batch: int, channels: int, device: torch.device) -> None:
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


def _check_args(time_decay, time_first, key, value, state) -> None:
    """Raise TypeError/ValueError naming the argument at fault."""
    _check_tensor("key", key, 3)
    _check_tensor("value", value, 3)
    batch, seq_len, channels = key.shape
    if value.shape != key.shape or value.dtype != key.dtype:
        raise ValueError(f"value must match key: got {tuple(value.shape)} {value.dtype} vs {tuple(key.shape)} {key.dtype}")
    if seq_len < 1:
        raise ValueError(f"key must hold at least one token (T >= 1), got shape {tuple(key.shape)}")
    for name, x in (("time_decay", time_decay), ("time_first", time_first)):
        _check_tensor(name, x, 1)
        if x.shape[0] != channels:
            raise ValueError(f"{name} must have shape (C,) = ({channels},), got {tuple(x.shape)}")
    for name, x in (("value", value), ("time_decay", time_decay), ("time_first", time_first)):
        if x.device != key.device:
            raise ValueError(f"{name} is on {x.device}, but key is on {key.device}")
    if state is not None:
        _check_state(state, batch, channels, key.device)


def _pick(impl: str, key: torch.Tensor):
    """The function that `impl` names; "auto" is triton for CUDA tensors when available, else cpu."""
    if impl not in IMPLS:
        raise ValueError(f"impl must be one of {IMPLS}, got {impl!r}")
    if impl == "auto":
        impl = "triton" if key.is_cuda and _triton_impl() is not None else "cpu"
    if impl == "triton":
        if not key.is_cuda:
            raise RuntimeError(f"impl='triton': the Triton kernels are not available for {key.device.type} tensors "
                               "(CUDA only; the kernel tests call kernels.wkv_triton directly under TRITON_INTERPRET=1)")
        triton_impl = _triton_impl()
        if triton_impl is None:
            raise RuntimeError("impl='triton': the Triton kernels are not available: the triton package is not installed")
        return triton_impl
    return wkv_reference if impl == "reference" else wkv_cpu


def wkv(
    time_decay: torch.Tensor,
    time_first: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    state: State | None = None,
    *,
    impl: str = "auto",
) -> tuple[torch.Tensor, State]:
    """RWKV-4 WKV linear attention.

    time_decay, time_first: (C,) raw parameters (decay w = -exp(time_decay)).
    key, value: (B, T, C), float32/float16/bfloat16, same shape and dtype.
    state: optional (num, den, max), float32 (B, C) each; read, never modified.
    Returns output (B, T, C) in key's dtype and the final (num, den, max), float32 (B, C) each.
    """
    _check_args(time_decay, time_first, key, value, state)
    return _pick(impl, key)(time_decay, time_first, key, value, None if state is None else tuple(state))
