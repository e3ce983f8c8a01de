"""int8 weights times bfloat16 rows on x86 CPUs with AVX512-BF16: a C++ kernel built at first use.

    packed = pack_weight(quantized)              # once: (N, K) int8 -> (ceil(N/16), K/2, 16, 2) int8
    out = int8_bf16_mm(rows, packed, scales)     # (M, K) float32/bfloat16, (N,) float32 scales -> (M, N) float32
    quantized = unpack_weight(packed, N)         # back to (N, K)

Why: torch's `_weight_int8pack_mm` converts each weight for every row (its cost grows with every row), and a
bfloat16 GEMM reads 2 bytes a weight. This kernel reads a packed copy in blocks of 16 output channels (each 32
bytes: two input positions for each channel), widens each 32 bytes to bfloat16 once and multiplies them into up
to 16 rows with VDPBF16PS (float32 sums), so a decode step reads each weight byte once for the whole batch
(measured in docs/BENCHMARKS.md, "fifth pass"). The oracle is
`rwkv_app.models.quantize.int8_linear_reference` (dequantize, float32 F.linear), and tests/test_int8_kernel.py
holds the kernel to it.

The same extension holds the one-token layer steps built on that kernel (rwkv4_step.cpp, rwkv7_step.cpp, sharing
layer_step.h): a whole block for one token per row in one call; their callers and reference are in
rwkv_app/models/cpu_decode.py. (Each family's WKV over a sequence is kernels/wkv_loops, a build of its own that
needs only AVX512F; the layer steps share its cpu_math.h.)

`load()` builds the extension with torch.utils.cpp_extension (a C++ compiler and ninja; cached under
TORCH_EXTENSIONS_DIR, ~30 s the first time on 2 cores) and returns None, after one log line, where it cannot: not
x86 Linux with AVX512-BF16, no compiler, or RWKV_INT8_KERNEL=0 in the environment. Callers then keep torch's kernels.
"""
from __future__ import annotations

from pathlib import Path

import torch

from ..cpp_build import Extension

MAX_ROWS = 16  # rows the kernel takes per pass (kMaxRows); more rows loop, but a GEMM is faster there
# The extension's sources; they share the headers beside them (ninja rebuilds what a changed header reaches).
SOURCES = [Path(__file__).with_name(name) for name in ("int8_bf16_mm.cpp", "rwkv4_step.cpp", "rwkv7_step.cpp")]
CPU_FLAG = "avx512_bf16"
OFF_SWITCH = "RWKV_INT8_KERNEL"  # "0": never build or use the kernel
EXTENSION = Extension("rwkv_int8_cpu", tuple(SOURCES),
                      ("-O3", "-fopenmp", "-mavx512f", "-mavx512bw", "-mavx512vl", "-mavx512bf16"), CPU_FLAG,
                      OFF_SWITCH, "int8 CPU kernel", "int8 models use torch's kernels")


BLOCK = 16  # output channels per packed block (the kernel's kBlock)


def takes(quantized: torch.Tensor) -> bool:
    """Whether the kernel takes this weight: an (N, K) int8 CPU tensor with an even K."""
    return quantized.dim() == 2 and quantized.dtype == torch.int8 and quantized.device.type == "cpu" \
        and quantized.size(1) % 2 == 0


def pack_weight(quantized: torch.Tensor) -> torch.Tensor:
    """(N, K) int8 -> (ceil(N/16), K/2, 16, 2) int8, the last block zero-padded."""
    if not takes(quantized):
        raise ValueError(f"the int8 kernel takes an (N, K) int8 CPU weight with an even K, got "
                         f"{quantized.dtype} {tuple(quantized.shape)}")
    n, k = quantized.shape
    padded = torch.zeros(-(-n // BLOCK) * BLOCK, k, dtype=torch.int8)  # (N16, K)
    padded[:n] = quantized
    return padded.view(-1, BLOCK, k // 2, 2).permute(0, 2, 1, 3).contiguous()  # (N16/16, K/2, 16, 2)


def unpack_weight(packed: torch.Tensor, out_features: int) -> torch.Tensor:
    """The inverse of pack_weight: (ceil(N/16), K/2, 16, 2) -> (N, K) int8."""
    blocks, pairs = packed.shape[:2]
    return packed.permute(0, 2, 1, 3).reshape(blocks * BLOCK, pairs * 2)[:out_features].contiguous()  # (N, K)


def int8_bf16_mm(rows: torch.Tensor, packed: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
    """(M, K) float32 or bfloat16 rows (rounded to bfloat16 inside), a pack_weight result, (N,) contiguous float32
    scales -> (M, N) float32: rows @ (q * scales).T, float32 sums. Requires `load()`. The argument checks are
    the extension's (one call from Python per product: this runs ~85 times a decode step)."""
    return _extension().int8_bf16_mm(rows, packed, scales)  # (M, N)


def load():
    """The built extension, or None (logged once) where this machine cannot build or run it."""
    return EXTENSION.load()


def unsupported_reason() -> str:
    return EXTENSION.unsupported_reason()


def rwkv4_layer_step(*args) -> None:
    """One RWKV-4 layer for one token per row, in place (kernels/int8_cpu/rwkv4_step.cpp; its caller and the
    arguments' meaning: rwkv_app/models/rwkv4/cpu_decode.py). Requires `load()`."""
    _extension().rwkv4_layer_step(*args)


def rwkv7_layer_step(*args) -> None:
    """One RWKV-7 layer for one token per row, in place (kernels/int8_cpu/rwkv7_step.cpp; its caller and the
    arguments' meaning: rwkv_app/models/rwkv7/cpu_decode.py). Requires `load()`."""
    _extension().rwkv7_layer_step(*args)


def _extension():
    extension = load()
    if extension is None:
        raise RuntimeError("the int8 kernel is not available here (see kernels.int8_cpu.load)")
    return extension
