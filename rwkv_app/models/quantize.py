"""Weight-only int8 for CPU inference, shared by the model families (dtype "int8").

Each projection's weight (N, K) is stored as int8 with one scale per output channel: w ~= q * scale[:, None],
scale = max|w[n, :]| / 127. Everything else (embeddings, layer norms, time parameters, the residual stream, the
WKV state) stays float32; only the matrix product runs in bfloat16 activations:

- few rows (batch-1 decode, B*T <= PACK_MAX_ROWS): `torch.ops.aten._weight_int8pack_mm`, which reads the int8
  weight directly (a quarter of float32's bytes; what gpt-fast and torchao use on CPU);
- more rows (batched decode in the engine, prefill): one bfloat16 GEMM through oneDNN on a bfloat16 copy of the
  int8 values (exact) in oneDNN's blocked layout, packed once on first use and kept (then 3 bytes per weight,
  under float32's 4), the per-channel scales applied to the GEMM's output. The int8 kernel's cost grows with
  every row (16 rows cost ~3x 1 row), a bfloat16 GEMM's barely grows; the prepacked weight halves the GEMM's
  time against F.linear on the same bfloat16 weight, which repacks it on every call (measured, 169M shape, 2
  threads: a batch-8 decode forward 23 ms against 32, batch 16 30 ms against 41). Where oneDNN has no bfloat16
  (`packed_bf16_supported()`), the plain bfloat16 weight and F.linear.

Measured on this machine (docs/BENCHMARKS.md): int8pack with float32 activations is 10-100x slower than with
bfloat16 ones, and F.linear on a dequantized float32 weight is slower than float32 F.linear, so bfloat16
activations it is. `int8_linear_reference` (dequantize, float32 F.linear) is the oracle the fast path is tested
against. Low-rank branches (RWKV-7's LoRAs, a few percent of the bytes) stay float32.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import InputError

INT8 = "int8"  # the dtype name, in app.py --dtype, the CLI, from_pretrained(dtype=...) and presets/models.yaml
PACK_MAX_ROWS = 3  # up to this many rows the int8 kernel wins; above it, the bfloat16 GEMM (measured; see above)
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
    """The bfloat16 copy of an int8 weight (N, K) for calls of more than PACK_MAX_ROWS rows, made on first need:
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

    def linear(self, rows: torch.Tensor, quantized: torch.Tensor) -> torch.Tensor:
        """(M, K) bfloat16 -> (M, N) bfloat16: rows @ quantized.T, exactly in the int8 values."""
        if self.built is None:
            self.built = bfloat16_weight(quantized, packed_bf16_supported())  # racing threads build the same
        weight, packed = self.built
        if packed:
            return torch.ops.mkldnn._linear_pointwise(rows, weight, None, "none", [], "")  # (M, N)
        return F.linear(rows, weight)  # (M, N)


def bfloat16_weight(quantized: torch.Tensor, pack: bool) -> tuple[torch.Tensor, bool]:
    dense = quantized.to(torch.bfloat16)  # (N, K)
    return (torch.ops.mkldnn._reorder_linear_weight(dense, None), True) if pack else (dense, False)


def int8_linear(x: torch.Tensor, quantized: torch.Tensor, scales: torch.Tensor, scales_bf16: torch.Tensor,
                many_rows: ManyRowsWeight | None = None) -> torch.Tensor:
    """The fast path: bfloat16 activations, float32 accumulation inside the kernels; (..., K) -> (..., N).
    `many_rows`: the caller's kept ManyRowsWeight (else one is made for the call)."""
    rows = x.reshape(-1, x.size(-1)).to(torch.bfloat16)  # (M, K)
    if rows.size(0) <= PACK_MAX_ROWS:
        out = torch.ops.aten._weight_int8pack_mm(rows, quantized, scales_bf16)  # (M, N)
    else:
        many_rows = many_rows or ManyRowsWeight()
        out = many_rows.linear(rows, quantized) * scales  # (M, N) float32 (promoted): the int8 weights, scaled
    return out.view(*x.shape[:-1], quantized.size(0)).to(x.dtype)  # (..., N)


class Int8Linear(nn.Module):
    """A bias-free nn.Linear replacement holding an int8 weight and per-output-channel scales (CPU only)."""

    def __init__(self, quantized: torch.Tensor, scales: torch.Tensor):
        super().__init__()
        self.out_features, self.in_features = quantized.shape
        self.register_buffer("weight_int8", quantized.contiguous())  # (N, K) int8
        self.register_buffer("scales", scales.float().contiguous())  # (N,) float32
        self.register_buffer("scales_bf16", scales.to(torch.bfloat16).contiguous())  # (N,) what the kernel takes
        self.reference = False  # True: the float32 oracle instead of the fast path (tests)
        self.many_rows = ManyRowsWeight()  # the bfloat16 weight for calls of more than PACK_MAX_ROWS rows

    @classmethod
    def from_linear(cls, linear: nn.Linear) -> "Int8Linear":
        if linear.bias is not None:
            raise InputError("int8 quantization covers bias-free projections only")
        return cls(*quantize_per_channel(linear.weight))

    @property
    def weight(self) -> torch.Tensor:
        """The dequantized float32 weight (N, K), for code that reads `.weight` (fingerprints, device checks)."""
        return dequantize(self.weight_int8, self.scales)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.reference:
            return int8_linear_reference(x, self.weight_int8, self.scales)
        return int8_linear(x, self.weight_int8, self.scales, self.scales_bf16, self.many_rows)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, int8 per-channel"


def project(x: torch.Tensor, linear: nn.Module) -> torch.Tensor:
    """x @ W.T for an nn.Linear (through F.linear, skipping the module call) or an Int8Linear."""
    if isinstance(linear, nn.Linear):
        return F.linear(x, linear.weight, linear.bias)
    return linear(x)


@torch.no_grad()
def quantize_model(model: nn.Module) -> nn.Module:
    """Replace every bias-free nn.Linear (the projections and the head; not the KEEP_FLOAT ones) by an Int8Linear,
    in place. The model must be float32 on the CPU. Returns the model, marked `weight_dtype = "int8"`."""
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
        setattr(model.get_submodule(parent_name) if parent_name else model, child, Int8Linear.from_linear(module))
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
    return sum(2 * m.weight_int8.numel() for m in model.modules() if isinstance(m, Int8Linear))
