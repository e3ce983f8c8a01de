"""The CPU default dtype: the fastest at equal quality on this machine (presets/models.yaml's `cpu: auto`).

Measured (docs/BENCHMARKS.md, 169M shape): on a CPU with bfloat16 dot-product instructions (AVX512-BF16 or
AMX) "int8" (int8 weights, bfloat16 matmuls; rwkv_app/models/quantize.py) decodes faster than float32 (a quarter
of the bytes per token) and prefills ~2x faster (bfloat16 GEMMs), at the demo model's float32 bits per character
within 0.01%. Without those instructions bfloat16 GEMMs are emulated, so float32 stays the default.
"""
from __future__ import annotations

import platform

from kernels.cpu_flags import cpu_flags

BF16_FLAGS = ("avx512_bf16", "amx_bf16")  # /proc/cpuinfo flags of CPUs with native bfloat16 dot products
AUTO = "auto"


def cpu_bf16_flags(cpuinfo: str | None = None) -> list[str]:
    """The BF16_FLAGS this CPU reports (Linux /proc/cpuinfo; empty where it cannot be read)."""
    flags = cpu_flags(cpuinfo)
    return [flag for flag in BF16_FLAGS if flag in flags]


def cpu_default_dtype(cpuinfo: str | None = None) -> dict[str, str]:
    """{"dtype": ..., "reason": ...}: plain data for the manager and the Models tab."""
    flags = cpu_bf16_flags(cpuinfo)
    if flags:
        return {"dtype": "int8", "reason": f"this CPU has {', '.join(flags)}: int8 weights with bfloat16 matmuls "
                                            "decode and prefill fastest at float32's quality"}
    return {"dtype": "float32", "reason": f"no bfloat16 dot-product instructions found ({platform.machine()}): "
                                          "float32 is fastest"}
