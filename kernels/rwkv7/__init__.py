"""RWKV-7 WKV kernels: the float32 reference, the chunked CPU path, Triton, and `wkv7`, which checks and dispatches.

    output, state = wkv7(r, log_w, k, v, a, b, state=None, impl="auto")

r, log_w, k, v, a, b: (B, T, H, N); state: (B, H, N, N) float32 indexed [batch, head, value, key].
See kernels/rwkv7/reference.py for the recurrence. impl: "reference" (the token loop, the oracle), "cpu" (the
chunked WY form in torch ops, any device, differentiable; kernels/rwkv7/cpu.py), "cpp" (the token loop in C++ on
x86 CPUs, inference only; kernels/rwkv7/cpp.py), "triton" (CUDA tensors only; kernels/rwkv7/wkv7_triton.py, whose
kernels also take CPU tensors under TRITON_INTERPRET=1 for tests), or "auto": triton for CUDA tensors when the
triton package imports, cpp where it takes the call (see cpp.refusal), else cpu. Nothing here imports triton until
a CUDA tensor asks for it.
"""
from __future__ import annotations

import functools
import importlib.util

import torch

from .cpp import refusal as cpp_refusal
from .cpp import wkv7_cpp
from .cpu import wkv7_cpu, wkv7_cpu_step
from .reference import initial_state7, wkv7_reference

__all__ = ["IMPLS7", "check_wkv7_args", "initial_state7", "triton7_available", "wkv7", "wkv7_cpp", "wkv7_cpu",
           "wkv7_cpu_step", "wkv7_reference"]

IMPLS7 = ("auto", "reference", "cpu", "cpp", "triton")
DTYPES7 = (torch.float32, torch.float16, torch.bfloat16)
NAMES = ("r", "log_w", "k", "v", "a", "b")


@functools.cache
def _triton_impl():
    """`wkv7_triton` from kernels/rwkv7/wkv7_triton.py, or None where triton is absent or does not import."""
    if importlib.util.find_spec("triton") is None:
        return None
    try:
        from .wkv7_triton import wkv7_triton
    except ImportError:  # a triton build that does not fit this platform: the CPU path, silently
        return None
    return wkv7_triton


def triton7_available() -> bool:
    """Whether the RWKV-7 Triton kernels can be used (for CUDA tensors); imports triton on first call."""
    return _triton_impl() is not None


def check_wkv7_args(inputs, state, ndim: int = 4, dtypes=DTYPES7) -> None:
    """Raise TypeError/ValueError naming the argument at fault. inputs: (r, log_w, k, v, a, b), each (B, T, H, N)
    (or (B, H, N) with ndim=3, the decode step), same shape, dtype and device (log_w may be float32);
    state None or (B, H, N, N) float32."""
    layout = "(B, T, H, N)" if ndim == 4 else "(B, H, N)"
    for name, x in zip(NAMES, inputs):
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
        if x.dim() != ndim:
            raise ValueError(f"{name} must be {ndim}-D {layout}, got shape {tuple(x.shape)}")
        if x.dtype not in dtypes:
            raise ValueError(f"{name} dtype must be one of {', '.join(str(d) for d in dtypes)}, got {x.dtype}")
    r = inputs[0]
    for name, x in zip(NAMES[1:], inputs[1:]):
        # log_w may stay float32 in a half-precision model: the decay compounds over tokens
        dtype_ok = x.dtype == r.dtype or (name == "log_w" and x.dtype == torch.float32)
        if x.shape != r.shape or not dtype_ok or x.device != r.device:
            raise ValueError(f"{name} must match r: got {tuple(x.shape)} {x.dtype} on {x.device}, "
                             f"r is {tuple(r.shape)} {r.dtype} on {r.device}")
    if ndim == 4 and r.shape[1] < 1:
        raise ValueError(f"r must hold at least one token (T >= 1), got shape {tuple(r.shape)}")
    if state is not None:
        batch, heads, size = r.shape[0], r.shape[-2], r.shape[-1]
        if not isinstance(state, torch.Tensor):
            raise TypeError(f"state must be a torch.Tensor, got {type(state).__name__}")
        if tuple(state.shape) != (batch, heads, size, size):
            raise ValueError(f"state must have shape (B, H, N, N) = {(batch, heads, size, size)}, "
                             f"got {tuple(state.shape)}")
        if state.dtype != torch.float32 and state.dtype != torch.promote_types(r.dtype, torch.float32):
            raise ValueError(f"state must be float32, got {state.dtype}")
        if state.device != r.device:
            raise ValueError(f"state is on {state.device}, but r is on {r.device}")


def _pick(impl: str, inputs, state):
    """The function that `impl` names; "auto" is triton for CUDA tensors when available, else cpp where it takes
    the call, else cpu."""
    if impl not in IMPLS7:
        raise ValueError(f"impl must be one of {IMPLS7}, got {impl!r}")
    r = inputs[0]
    if impl == "auto":
        if r.is_cuda and _triton_impl() is not None:
            impl = "triton"
        else:
            return wkv7_cpu if cpp_refusal(inputs, state) else wkv7_cpp
    if impl == "cpp":
        reason = cpp_refusal(inputs, state)
        if reason:
            raise RuntimeError(f"impl='cpp': the RWKV-7 C++ kernel cannot run this call: {reason}")
        return wkv7_cpp
    if impl == "triton":
        if not r.is_cuda:
            raise RuntimeError(f"impl='triton': the RWKV-7 Triton kernels are not available for {r.device.type} "
                               "tensors (CUDA only; the kernel tests call wkv7_triton directly under "
                               "TRITON_INTERPRET=1)")
        triton_impl = _triton_impl()
        if triton_impl is None:
            raise RuntimeError("impl='triton': the RWKV-7 Triton kernels are not available: triton is not installed")
        return triton_impl
    return wkv7_reference if impl == "reference" else wkv7_cpu


def wkv7(r, log_w, k, v, a, b, state: torch.Tensor | None = None, *, impl: str = "auto",
         out_state: torch.Tensor | None = None):
    """RWKV-7 WKV: output (B, T, H, N) in r's dtype and the final state (B, H, N, N) float32.

    r, log_w, k, v, a, b: (B, T, H, N), float32/float16/bfloat16 (float64 for gradient checks on the CPU paths),
    same shape and dtype; log_w is the log of the decay (<= 0), a = -kk, b = kk * iclr.
    state: optional incoming (B, H, N, N) float32, indexed [batch, head, value, key]; read, never modified.
    out_state: optional (B, H, N, N) float32 tensor, not overlapping `state`, that the final state is written
    into and returned as (the model hands each layer a slice of one layer-major buffer: no stacking copy).
    """
    inputs = (r, log_w, k, v, a, b)
    check_wkv7_args(inputs, state, dtypes=(*DTYPES7, torch.float64))
    check_out_state(out_state, r)
    impl_fn = _pick(impl, inputs, state)
    if r.dtype == torch.float64 and impl_fn not in (wkv7_reference, wkv7_cpu):
        raise ValueError("float64 inputs are for the reference and cpu paths (gradient checks); triton takes "
                         "float32, float16 or bfloat16")
    if impl_fn in (wkv7_cpu, wkv7_cpp):
        return impl_fn(*inputs, state, out_state=out_state)
    output, final = impl_fn(r, log_w, k, v, a, b, state)
    return output, final if out_state is None else out_state.copy_(final)


def check_out_state(out_state, r: torch.Tensor) -> None:
    """Raise TypeError/ValueError unless `out_state` is None or a contiguous float32 (B, H, N, N) tensor on r's
    device."""
    if out_state is None:
        return
    batch, _, heads, size = r.shape
    if not isinstance(out_state, torch.Tensor):
        raise TypeError(f"out_state must be a torch.Tensor, got {type(out_state).__name__}")
    if tuple(out_state.shape) != (batch, heads, size, size) or out_state.dtype != torch.float32 \
            or out_state.device != r.device or not out_state.is_contiguous():
        raise ValueError(f"out_state must be contiguous float32 of shape {(batch, heads, size, size)} on "
                         f"{r.device}, got {out_state.dtype} {tuple(out_state.shape)} on {out_state.device}"
                         f"{'' if out_state.is_contiguous() else ', not contiguous'}")
