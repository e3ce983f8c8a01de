"""Weight-only int8 for CPU inference, shared by the model families (dtype "int8").

Each projection's weight (N, K) is stored as int8 with one scale per output channel: w ~= q * scale[:, None],
scale = max|w[n, :]| / 127. Everything else (embeddings, layer norms, time parameters, the residual stream, the
WKV state) stays float32; only the matrix product runs in bfloat16 activations:

- decode (up to KERNEL_MAX_ROWS rows) on x86 with AVX512-BF16: kernels/int8_cpu, a C++ kernel built at first use
  that widens each int8 weight to bfloat16 once per call and multiplies it into every row (VDPBF16PS). It reads
  each weight byte once for the whole batch: 2.5x int8pack at 1 row, 1.35x the bfloat16 GEMM at 8 rows, even
  with it at 16 (docs/BENCHMARKS.md, fifth pass);
- elsewhere, few rows (batch-1 decode, B*T <= PACK_MAX_ROWS): `torch.ops.aten._weight_int8pack_mm`, which reads
  the int8 weight directly (a quarter of float32's bytes; what gpt-fast and torchao use on CPU);
- more rows (prefill; batched decode where our kernel does not run): one bfloat16 GEMM through oneDNN on a
  bfloat16 copy of the int8 values (exact) in oneDNN's blocked layout, packed once on first use and kept (then 3
  bytes per weight, under float32's 4), the per-channel scales applied to the GEMM's output. int8pack's cost grows
  with every row (16 rows cost ~3x 1 row), a bfloat16 GEMM's barely grows; the prepacked weight halves the GEMM's
  time against F.linear on the same bfloat16 weight, which repacks it on every call (measured, 169M shape, 2
  threads: a batch-8 decode forward 23 ms against 32, batch 16 30 ms against 41). Where oneDNN has no bfloat16
  (`packed_bf16_supported()`), the plain bfloat16 weight and F.linear.

Measured on this machine (docs/BENCHMARKS.md): int8pack with float32 activations is 10-100x slower than with
bfloat16 ones, and F.linear on a dequantized float32 weight is slower than float32 F.linear, so bfloat16
activations it is. `int8_linear_reference` (dequantize, float32 F.linear) is the oracle the fast path is tested
against. Low-rank branches (RWKV-7's LoRAs, a few percent of the bytes) stay float32.
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from kernels import int8_cpu

from ..errors import InputError

INT8 = "int8"  # the dtype name, in app.py --dtype, the CLI, from_pretrained(dtype=...) and presets/models.yaml
PACK_MAX_ROWS = 3  # up to this many rows the int8 kernel wins; above it, the bfloat16 GEMM (measured; see above)
KERNEL_MAX_ROWS = int8_cpu.MAX_ROWS  # up to this many rows kernels/int8_cpu wins where it runs (measured; see above)
KEEP_FLOAT = ("lora",)  # module-name fragments whose linears stay float32


def is_int8(dtype) -> bool:
    return isinstance(dtype, str) and dtype.lower() == INT8


def quantize_per_channel(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, K) float weight -> (int8 (N, K), float32 scales (N,)), symmetric, one scale per output channel."""
    weight = weight.detach().float()  # (N, K)
    scales = weight.abs().amax(dim=1).clamp(min=1e-12) / 127  # (N,)
    quantized = torch.round(weight / scales[:, None]).clamp(-127, 127).to(torch.int8)  # (N, K)
    return quantized, scales


def dequantize(quantized: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
    return quantized.float() * scales.float()[:, None]  # (N, K) float32


def int8_linear_reference(x: torch.Tensor, quantized: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
    """The float32 oracle: dequantize, then F.linear; (..., K) -> (..., N) in x's dtype."""
    return F.linear(x.float(), dequantize(quantized, scales)).to(x.dtype)  # (..., N)


def packed_bf16_supported() -> bool:
    """Whether oneDNN here runs bfloat16 matmuls on a prepacked weight (x86 with AVX512 or AMX)."""
    return torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()


class ManyRowsWeight:
    """The bfloat16 copy of an int8 weight (N, K) for calls the int8 kernels leave to a GEMM, made on first need:
    the int8 values exactly (bfloat16 holds every integer up to 256), prepacked for oneDNN where it can be.
    A cache: a deep copy or a pickle of its module starts without it (oneDNN's tensors have no storage to copy)."""

    def __init__(self):
        self.built = None  # (weight, packed): one attribute, so a racing thread sees both or neither

    def __deepcopy__(self, memo) -> "ManyRowsWeight":
        return ManyRowsWeight()

    def __getstate__(self) -> dict:
        return {}

    def __setstate__(self, state: dict) -> None:
        self.__init__()

    def linear(self, rows: torch.Tensor, int8_weight: Callable[[], torch.Tensor]) -> torch.Tensor:
        """(M, K) bfloat16 -> (M, N) bfloat16: rows @ W.T, exactly in the int8 values of W = int8_weight(),
        which is called only to build the copy."""
        if self.built is None:
            self.built = bfloat16_weight(int8_weight(), packed_bf16_supported())  # racing threads build the same
        weight, packed = self.built
        if packed:
            return torch.ops.mkldnn._linear_pointwise(rows, weight, None, "none", [], "")  # (M, N)
        return F.linear(rows, weight)  # (M, N)


def int8_kernel_off() -> str:
    """Why kernels/int8_cpu does not run on this machine ("" where it does or will, once built); no build."""
    return int8_cpu.unsupported_reason()


def kernel_runs(quantized: torch.Tensor) -> bool:
    """Whether kernels/int8_cpu is built here and takes this weight."""
    return int8_cpu.takes(quantized) and int8_cpu.load() is not None


def bfloat16_weight(quantized: torch.Tensor, pack: bool) -> tuple[torch.Tensor, bool]:
    dense = quantized.to(torch.bfloat16)  # (N, K)
    return (torch.ops.mkldnn._reorder_linear_weight(dense, None), True) if pack else (dense, False)


class Int8Linear(nn.Module):
    """A bias-free nn.Linear replacement holding an int8 weight and per-output-channel scales (CPU only). The int8
    weight is stored once, in the layout its fast path reads: kernels/int8_cpu's blocks where that kernel runs
    (`packed`), else (N, K) for `_weight_int8pack_mm`; `weight_int8` gives (N, K) either way."""

    def __init__(self, quantized: torch.Tensor, scales: torch.Tensor, kernel: bool = True):
        super().__init__()
        self.out_features, self.in_features = quantized.shape
        self.packed = kernel and kernel_runs(quantized)  # kernel=False: torch's kernels only (benchmarks)
        stored = int8_cpu.pack_weight(quantized) if self.packed else quantized.contiguous()
        self.register_buffer("stored_int8", stored)  # (N/16, K/2, 16, 2) if packed else (N, K), int8
        self.register_buffer("scales", scales.float().contiguous())  # (N,) float32
        self.register_buffer("scales_bf16", scales.to(torch.bfloat16).contiguous())  # (N,) what int8pack takes
        self.reference = False  # True: the float32 oracle instead of the fast path (tests)
        self.many_rows = ManyRowsWeight()  # the bfloat16 weight for calls the int8 kernels leave to a GEMM

    @classmethod
    def from_linear(cls, linear: nn.Linear, kernel: bool = True) -> "Int8Linear":
        if linear.bias is not None:
            raise InputError("int8 quantization covers bias-free projections only")
        return cls(*quantize_per_channel(linear.weight), kernel=kernel)

    @property
    def weight_int8(self) -> torch.Tensor:
        """The int8 weight as (N, K) (a copy when packed)."""
        return int8_cpu.unpack_weight(self.stored_int8, self.out_features) if self.packed else self.stored_int8

    @property
    def weight(self) -> torch.Tensor:
        """The dequantized float32 weight (N, K), for code that reads `.weight` (fingerprints, device checks)."""
        return dequantize(self.weight_int8, self.scales)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(..., K) -> (..., N) in x's dtype: bfloat16 activations, float32 sums inside the kernels."""
        if self.reference:
            return int8_linear_reference(x, self.weight_int8, self.scales)
        rows = x.reshape(-1, self.in_features)  # (M, K)
        out = self.product(rows).view(*x.shape[:-1], self.out_features)  # (..., N)
        return out if out.dtype == x.dtype else out.to(x.dtype)

    def product(self, rows: torch.Tensor) -> torch.Tensor:
        """(M, K) -> (M, N) float32 or bfloat16, scales applied: the kernel that is fastest for M rows."""
        if self.packed and rows.size(0) <= KERNEL_MAX_ROWS and int8_cpu.load() is not None:
            return int8_cpu.int8_bf16_mm(rows, self.stored_int8, self.scales)  # (M, N) float32
        rows = rows.to(torch.bfloat16)  # (M, K)
        if not self.packed and rows.size(0) <= PACK_MAX_ROWS:
            return torch.ops.aten._weight_int8pack_mm(rows, self.stored_int8, self.scales_bf16)  # (M, N) bfloat16
        return self.many_rows.linear(rows, lambda: self.weight_int8) * self.scales  # (M, N) float32 (promoted)

    def extra_repr(self) -> str:
        layout = "kernels/int8_cpu blocks" if self.packed else "(N, K)"
        return f"in_features={self.in_features}, out_features={self.out_features}, int8 per-channel, {layout}"


def project(x: torch.Tensor, linear: nn.Module) -> torch.Tensor:
    """x @ W.T for an nn.Linear (through F.linear, skipping the module call) or an Int8Linear."""
    if isinstance(linear, nn.Linear):
        return F.linear(x, linear.weight, linear.bias)
    return linear(x)


@torch.no_grad()
def quantize_model(model: nn.Module, kernel: bool = True) -> nn.Module:
    """Replace every bias-free nn.Linear (the projections and the head; not the KEEP_FLOAT ones) by an Int8Linear,
    in place. The model must be float32 on the CPU. Returns the model, marked `weight_dtype = "int8"`. The first
    Int8Linear builds kernels/int8_cpu (once per machine) where it runs; kernel=False keeps torch's int8 kernels
    (the benchmarks' side-by-side)."""
    if getattr(model, "weight_dtype", None) == INT8:
        return model
    for param in model.parameters():
        if param.device.type != "cpu" or param.dtype != torch.float32:
            raise InputError(f"int8 weights are for float32 models on the CPU; got {param.dtype} on {param.device} "
                             "(on CUDA use float16 or bfloat16)")
    targets = [(name, module) for name, module in model.named_modules()
               if isinstance(module, nn.Linear) and module.bias is None
               and not any(part in name for part in KEEP_FLOAT)]
    for name, module in targets:
        parent_name, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent_name) if parent_name else model, child,
                Int8Linear.from_linear(module, kernel))
    model.weight_dtype = INT8
    return model


def set_reference(model: nn.Module, reference: bool) -> None:
    """Run every Int8Linear through the float32 oracle (True) or the fast path (False)."""
    for module in model.modules():
        if isinstance(module, Int8Linear):
            module.reference = reference


def many_rows_bytes(model: nn.Module) -> int:
    """Bytes the Int8Linears' bfloat16 many-rows copies take once built (2 per int8 weight; the first prefill or
    batched decode builds them), for a memory budget that counts what the model will hold (0 for other models)."""
    return sum(2 * m.out_features * m.in_features for m in model.modules() if isinstance(m, Int8Linear))
