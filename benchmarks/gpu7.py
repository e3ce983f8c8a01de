"""The GPU check's RWKV-7 section: the WKV kernels (kernels/rwkv7/wkv7_triton.py) against the float64 reference
loop, then prefill and decode-step timings against the torch paths. Called by benchmarks/gpu.py; needs a CUDA
GPU, neither gradio nor transformers.

Correctness, per dtype (float32/float16/bfloat16 inputs): prefill at (B, T, H, N) = (2, 1, 12, 64), (2, 64, 12, 64)
and (2, 1024, 32, 64) with an incoming state, split in two calls with the state carried; then the fused decode
step, in place on one layer of a stacked (B, L, H, N, N) state. Error: |err| / (1 + |ref|), output and state.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from kernels.rwkv7 import wkv7_cpu, wkv7_cpu_step, wkv7_reference

from .gpu import DEVICE, DTYPES, WKV_TOL, GpuBenchSettings, Row, cuda_seconds, relative_error

CHECK_SHAPES = ((2, 1, 12, 64), (2, 64, 12, 64), (2, 1024, 32, 64))  # (B, T, H, N)
TIME_SHAPES = {"0.1B": 12, "1.5B": 32}  # heads of 64: hidden 768 and 2048
STEP_BATCHES = (1, 8)
STEP_LAYERS = 3


def row_specs7(s: GpuBenchSettings) -> list[Row]:
    grid = ", ".join("x".join(map(str, shape)) for shape in CHECK_SHAPES)
    rows = [Row(("wkv7", d), f"correct: RWKV-7 WKV Triton {d}, (B, T, H, N) = {grid}, state carried; "
                             "decode step in place") for d in DTYPES]
    for shape in TIME_SHAPES:
        label = f"RWKV-7 WKV prefill {shape} (H={TIME_SHAPES[shape]}, N=64) T={s.wkv_len} B=1 {s.dtype}"
        rows += [Row(("wkv7_time", shape, impl), f"{label}, {name}") for impl, name in
                 (("triton", "Triton"), ("chunked", "torch chunked (kernels.rwkv7.wkv7_cpu)"),
                  ("loop", "torch loop (reference)"))]
        rows.append(Row(("wkv7_speedup", shape), f"{label}, Triton speedup over the torch chunked path"))
    rows += [Row(("wkv7_step", batch, impl), f"RWKV-7 WKV decode step 1.5B (H=32, N=64) batch {batch} {s.dtype}, "
                                             f"{name}") for batch in STEP_BATCHES
             for impl, name in (("triton", "Triton fused step"), ("torch", "torch step (kernels.rwkv7.wkv7_cpu_step)"))]
    return rows


def random_inputs7(batch: int, seq_len: int, heads: int, size: int, dtype: torch.dtype):
    """(r, log_w, k, v, a, b), (B, T, H, N) on the GPU, in x070's ranges (log_w >= -exp(-0.5), |kk| = 1)."""
    shape = (batch, seq_len, heads, size)
    r, k, v = (torch.randn(shape, device=DEVICE) for _ in range(3))
    log_w = -math.exp(-0.5) * torch.sigmoid(torch.randn(shape, device=DEVICE) * 3)
    kk = F.normalize(torch.randn(shape, device=DEVICE), dim=-1)
    return tuple(x.to(dtype) for x in (r, log_w, k, v, -kk, kk * torch.rand(shape, device=DEVICE)))


def prefill_error(shape, dtype: torch.dtype) -> float:
    from kernels.rwkv7.wkv7_triton import wkv7_triton

    batch, seq_len, heads, size = shape
    inputs = random_inputs7(*shape, dtype)
    state = wkv7_reference(*random_inputs7(batch, 16, heads, size, torch.float32))[1]  # (B, H, N, N)
    split = max(1, seq_len * 5 // 8)
    first, carried = wkv7_triton(*(x[:, :split] for x in inputs), state)
    outputs, final = [first], carried
    if split < seq_len:
        second, final = wkv7_triton(*(x[:, split:] for x in inputs), carried)
        outputs.append(second)
    expected, expected_final = wkv7_reference(*(x.double() for x in inputs), state.double())
    return max(relative_error(torch.cat(outputs, dim=1), expected.to(dtype)), relative_error(final, expected_final))


def step_error(dtype: torch.dtype) -> float:
    from kernels.rwkv7.wkv7_triton import wkv7_step_triton

    batch, heads, size = 4, 32, 64
    inputs = tuple(x[:, 0] for x in random_inputs7(batch, 1, heads, size, dtype))  # (B, H, N) each
    layers = torch.randn(batch, STEP_LAYERS, heads, size, size, device=DEVICE) * 0.3  # (B, L, H, N, N)
    before = layers.clone()
    output, _ = wkv7_step_triton(*inputs, layers[:, 1], layers[:, 1])
    expected, expected_final = wkv7_reference(*(x[:, None].double() for x in inputs), before[:, 1].double())
    untouched = torch.equal(layers[:, [0, 2]], before[:, [0, 2]])
    return max(relative_error(output, expected[:, 0].to(dtype)), relative_error(layers[:, 1], expected_final),
               0.0 if untouched else float("inf"))


def check7(dtype: torch.dtype) -> tuple[str, str]:
    torch.manual_seed(2)
    error = max(max(prefill_error(shape, dtype) for shape in CHECK_SHAPES), step_error(dtype))
    return f"max err {error:.1e} (tol {WKV_TOL[dtype]:.0e})", "pass" if error <= WKV_TOL[dtype] else "FAIL"


def time_prefill7(s: GpuBenchSettings, peak: float) -> dict:
    from kernels.rwkv7.wkv7_triton import wkv7_triton

    out = {}
    for shape, heads in TIME_SHAPES.items():
        inputs = random_inputs7(1, s.wkv_len, heads, 64, DTYPES[s.dtype])
        seconds = {impl: cuda_seconds(lambda fn=fn: fn(*inputs), s.repeats) for impl, fn in
                   (("triton", wkv7_triton), ("chunked", wkv7_cpu), ("loop", wkv7_reference))}
        moved = 7 * inputs[0].numel() * inputs[0].element_size()  # six inputs read, the output written
        out.update({("wkv7_time", shape, impl): (f"{sec * 1e3:.2f} ms", f"{moved / sec / peak:.1%}", "")
                    for impl, sec in seconds.items()})
        out[("wkv7_speedup", shape)] = (f"{seconds['chunked'] / seconds['triton']:.1f}x", "", "")
    return out


def time_step7(s: GpuBenchSettings, peak: float) -> dict:
    from kernels.rwkv7.wkv7_triton import wkv7_step_triton

    out = {}
    for batch in STEP_BATCHES:
        inputs = tuple(x[:, 0] for x in random_inputs7(batch, 1, 32, 64, DTYPES[s.dtype]))  # (B, H, N) each
        state = torch.zeros(batch, 32, 64, 64, device=DEVICE)  # (B, H, N, N)
        seconds = {"triton": cuda_seconds(lambda: wkv7_step_triton(*inputs, state, state), s.repeats),
                   "torch": cuda_seconds(lambda: wkv7_cpu_step(*inputs, state), s.repeats)}
        moved = 2 * state.numel() * state.element_size()  # the state read and written
        out.update({("wkv7_step", batch, impl): (f"{sec * 1e6:.1f} us", f"{moved / sec / peak:.1%}", "")
                    for impl, sec in seconds.items()})
    return out


def run7(s: GpuBenchSettings, peak: float, log=print) -> dict:
    """{row key: (result, bandwidth, verdict)} for every row of row_specs7."""
    results = {}
    for name, dtype in DTYPES.items():
        log(f"checking the RWKV-7 WKV kernels, {name}")
        text, verdict = check7(dtype)
        results[("wkv7", name)] = (text, "", verdict)
    log("timing the RWKV-7 WKV kernels")
    results.update(time_prefill7(s, peak))
    results.update(time_step7(s, peak))
    return results
