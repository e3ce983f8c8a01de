"""RWKV-4 WKV kernels: the float32 reference, the fast CPU path, and `wkv`, which checks and dispatches.

    output, (num, den, max) = wkv(time_decay, time_first, key, value, state=None, impl="auto")

impl: "reference" (the token-by-token oracle), "cpu" (chunked torch ops, any device, differentiable), "cpp" (the
token loop in C++ on x86 CPUs, inference only; kernels/cpp.py), "triton" (CUDA tensors only; `wkv_triton` in
kernels/wkv_triton.py, whose kernels also run on CPU tensors under TRITON_INTERPRET=1 for tests), or "auto":
triton for CUDA tensors when the triton package is present, else cpp where it takes the call (see cpp.refusal),
else cpu. kernels/triton_decode.py holds the fused single-token decode kernels (rwkv_app/models/rwkv4/fused_decode.py).
Nothing here imports triton until a CUDA tensor asks for it.
"""
from __future__ import annotations

import functools
import importlib.util

import torch

from .checks import DTYPES, check_args
from .cpp import refusal as cpp_refusal
from .cpp import wkv_cpp
from .cpu import wkv_cpu, wkv_cpu_step
from .reference import State, wkv_reference

__all__ = ["IMPLS", "triton_available", "wkv", "wkv_cpp", "wkv_cpu", "wkv_cpu_step", "wkv_reference"]

IMPLS = ("auto", "reference", "cpu", "cpp", "triton")


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


def _pick(impl: str, args):
    """The function that `impl` names for args (time_decay, time_first, key, value, state); "auto" is triton for
    CUDA tensors when available, else cpp where it takes the call, else cpu."""
    if impl not in IMPLS:
        raise ValueError(f"impl must be one of {IMPLS}, got {impl!r}")
    key = args[2]
    if impl == "auto":
        if key.is_cuda and _triton_impl() is not None:
            impl = "triton"
        else:
            return wkv_cpu if cpp_refusal(*args) else wkv_cpp
    if impl == "cpp":
        reason = cpp_refusal(*args)
        if reason:
            raise RuntimeError(f"impl='cpp': the RWKV-4 C++ kernel cannot run this call: {reason}")
        return wkv_cpp
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
    check_args(time_decay, time_first, key, value, state)
    args = (time_decay, time_first, key, value, None if state is None else tuple(state))
    return _pick(impl, args)(*args)
