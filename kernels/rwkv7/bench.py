"""`python -m kernels.rwkv7.bench [--seq-len 512] [--heads 12] [--head-size 64] [--batch 1] [--repeats 5] [--chunk 32]`

The chunked CPU path and the C++ token loop (kernels/rwkv7/cpp.py, where the extension runs) against the torch
token-loop reference, side by side in one run, float32, on the 0.1B shape by default (12 heads of 64), with torch's
own thread count; also the decode steps against a one-token reference call. Runs alternate between the contenders
and the best of `repeats` is kept, so a machine shared with other work slows all alike. Target: the chunked prefill
>= 5x faster than the loop at T = 512.
"""
from __future__ import annotations

import argparse
import math
import time

import torch
import torch.nn.functional as F

from .cpp import refusal, wkv7_cpp
from .cpu import CHUNK, wkv7_cpu, wkv7_cpu_step
from .reference import wkv7_reference

TARGET = 5.0


def random_inputs(batch: int, seq_len: int, heads: int, size: int):
    """(r, log_w, k, v, a, b), (B, T, H, N) float32, in x070's ranges (log_w >= -exp(-0.5), |kk| = 1)."""
    shape = (batch, seq_len, heads, size)
    r, k, v = (torch.randn(shape) for _ in range(3))  # (B, T, H, N)
    log_w = -math.exp(-0.5) * torch.sigmoid(torch.randn(shape) * 3)  # (B, T, H, N)
    kk = F.normalize(torch.randn(shape), dim=-1)  # (B, T, H, N)
    return r, log_w, k, v, -kk, kk * torch.rand(shape)


def best_of_alternating(runs: dict, repeats: int) -> dict:
    """{name: fn} -> {name: best seconds}, one warm-up each, then `repeats` rounds that call every fn in turn."""
    for fn in runs.values():
        fn()
    best = dict.fromkeys(runs, float("inf"))
    for _ in range(repeats):
        for name, fn in runs.items():
            start = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - start)
    return best


@torch.inference_mode()
def run(batch: int = 1, seq_len: int = 512, heads: int = 12, size: int = 64, repeats: int = 5,
        chunk: int = CHUNK) -> dict:
    torch.manual_seed(0)
    inputs = random_inputs(batch, seq_len, heads, size)
    state = wkv7_reference(*random_inputs(batch, 16, heads, size))[1]  # (B, H, N, N)
    step_inputs = tuple(x[:, :1] for x in inputs)  # (B, 1, H, N)
    runs = {
        "reference": lambda: wkv7_reference(*inputs, state),
        "cpu": lambda: wkv7_cpu(*inputs, state, chunk=chunk),
        "reference_step": lambda: wkv7_reference(*step_inputs, state),
        "cpu_step": lambda: wkv7_cpu_step(*(x[:, 0] for x in step_inputs), state),
    }
    cpp_refusal = refusal(inputs, state)
    if not cpp_refusal:
        runs.update(cpp=lambda: wkv7_cpp(*inputs, state), cpp_step=lambda: wkv7_cpp(*step_inputs, state))
    seconds = best_of_alternating(runs, repeats)
    return {"seconds": seconds, "prefill_speedup": seconds["reference"] / seconds["cpu"],
            "step_speedup": seconds["reference_step"] / seconds["cpu_step"], "cpp_refusal": cpp_refusal}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kernels.rwkv7.bench", description=__doc__.split("\n\n")[1])
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--seq-len", type=int, default=512)
    parser.add_argument("--heads", type=int, default=12)
    parser.add_argument("--head-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--chunk", type=int, default=CHUNK, help="tokens per chunk of the CPU path")
    args = parser.parse_args(argv)
    result = run(args.batch, args.seq_len, args.heads, args.head_size, args.repeats, args.chunk)
    s = result["seconds"]
    print(f"RWKV-7 WKV, float32, B={args.batch} T={args.seq_len} H={args.heads} N={args.head_size}, "
          f"{torch.get_num_threads()} threads, chunk {args.chunk}, best of {args.repeats}")
    print(f"  prefill  token-loop reference {s['reference'] * 1e3:8.2f} ms   chunked cpu {s['cpu'] * 1e3:8.2f} ms   "
          f"{result['prefill_speedup']:.1f}x (target >= {TARGET:.0f}x: "
          f"{'met' if result['prefill_speedup'] >= TARGET else 'missed'})")
    print(f"  decode   reference (T=1)      {s['reference_step'] * 1e6:8.1f} us   cpu step    "
          f"{s['cpu_step'] * 1e6:8.1f} us   {result['step_speedup']:.1f}x")
    print_cpp_lines(s, result["cpp_refusal"])
    return 0


def print_cpp_lines(s: dict, refusal: str) -> None:
    """The C++ token loop's lines (both families' benches): beside the chunked path, or why it did not run."""
    if refusal:
        print(f"  C++ token loop: not run ({refusal})")
        return
    print(f"  prefill  C++ token loop      {s['cpp'] * 1e3:8.2f} ms   {s['cpu'] / s['cpp']:.1f}x the chunked cpu path")
    print(f"  decode   C++ token loop (T=1) {s['cpp_step'] * 1e6:8.1f} us   {s['cpu_step'] / s['cpp_step']:.1f}x the "
          f"cpu step")


if __name__ == "__main__":
    raise SystemExit(main())
