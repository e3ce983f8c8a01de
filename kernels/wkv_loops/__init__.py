"""Both families' WKV token loops in C++ for x86 CPUs with AVX512F, float32, inference only: a build of their own
(no int8 and no bfloat16 instruction in it, so a CPU without AVX512-BF16 runs it too), made at first use.

    out = wkv4_sequence(time_decay, time_first, k, v, state_in, state_out)     # kernels/cpp.py calls it
    out = wkv7_sequence(r, w, k, v, a, b, state_in, state_out)                # kernels/rwkv7/cpp.py calls it

wkv4_sequence.cpp and wkv7_sequence.cpp hold the loops, cpu_math.h what they share with kernels/int8_cpu's layer
steps (e^x for 16 floats, RWKV-4's WKV for one token); their oracles are kernels/reference.py and
kernels/rwkv7/reference.py. `load()` returns None (after one log line) where the machine cannot build or run it:
not x86 Linux with AVX512F, no compiler, or RWKV_WKV_LOOPS=0 in the environment; the chunked torch forms run then.
"""
from __future__ import annotations

from pathlib import Path

import torch

from ..cpp_build import Extension

SOURCES = [Path(__file__).with_name(name) for name in ("bindings.cpp", "wkv4_sequence.cpp", "wkv7_sequence.cpp")]
CPU_FLAG = "avx512f"
OFF_SWITCH = "RWKV_WKV_LOOPS"  # "0": never build or use it
EXTENSION = Extension("rwkv_wkv_loops", tuple(SOURCES), ("-O3", "-fopenmp", "-mavx512f"), CPU_FLAG, OFF_SWITCH,
                      "C++ WKV loops", "the chunked torch WKV runs")


def load():
    """The built extension, or None (logged once) where this machine cannot build or run it."""
    return EXTENSION.load()


def unsupported_reason() -> str:
    return EXTENSION.unsupported_reason()


def wkv4_sequence(*args) -> torch.Tensor:
    """RWKV-4's WKV over T tokens (wkv4_sequence.cpp; its caller and the arguments' meaning: kernels/cpp.py)."""
    return _extension().wkv4_sequence(*args)


def wkv7_sequence(*args) -> torch.Tensor:
    """RWKV-7's WKV over T tokens (wkv7_sequence.cpp; its caller and the arguments' meaning: kernels/rwkv7/cpp.py)."""
    return _extension().wkv7_sequence(*args)


def _extension():
    extension = load()
    if extension is None:
        raise RuntimeError("the C++ WKV loops are not available here (see kernels.wkv_loops.load)")
    return extension
