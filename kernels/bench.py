"""`python -m kernels.bench [--seq-len 512] [--channels 768] [--batch 1] [--repeats 5]`

RWKV-4's WKV on the CPU, side by side in one run, float32, on the 169M shape by default (768 channels), with torch's
own thread count: the torch token-loop reference, the chunked torch path (kernels/cpu.py) and the C++ token loop
(kernels/cpp.py, where the extension runs), for a prefill and a one-token decode step. Runs alternate between the
contenders and the best of `repeats` is kept, so a machine shared with other work slows all alike.
"""
from __future__ import annotations

import argparse

import torch

from .cpp import refusal, wkv_cpp
from .cpu import wkv_cpu
from .reference import wkv_reference
from .rwkv7.bench import best_of_alternating, print_cpp_lines


def random_inputs(batch: int, seq_len: int, channels: int):
    """(time_decay, time_first, key, value) in a trained model's ranges."""
    time_decay = torch.rand(channels) * 9 - 6  # (C,): w from -0.0025 to -20
    time_first = torch.randn(channels) * 0.5  # (C,)
    return time_decay, time_first, torch.randn(batch, seq_len, channels), torch.randn(batch, seq_len, channels)


@torch.inference_mode()
def run(batch: int = 1, seq_len: int = 512, channels: int = 768, repeats: int = 5) -> dict:
    torch.manual_seed(0)
    args = random_inputs(batch, seq_len, channels)
    state = wkv_reference(*random_inputs(batch, 16, channels))[1]  # (num, den, max), (B, C) each
    step = (*args[:2], args[2][:, :1], args[3][:, :1])  # one token
    runs = {"reference": lambda: wkv_reference(*args, state), "cpu": lambda: wkv_cpu(*args, state),
            "reference_step": lambda: wkv_reference(*step, state), "cpu_step": lambda: wkv_cpu(*step, state)}
    cpp_refusal = refusal(*args, state)
    if not cpp_refusal:
        runs.update(cpp=lambda: wkv_cpp(*args, state), cpp_step=lambda: wkv_cpp(*step, state))
    return {"seconds": best_of_alternating(runs, repeats), "cpp_refusal": cpp_refusal}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kernels.bench", description=__doc__.split("\n\n")[1])
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--seq-len", type=int, default=512)
    parser.add_argument("--channels", type=int, default=768)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    result = run(args.batch, args.seq_len, args.channels, args.repeats)
    s = result["seconds"]
    print(f"RWKV-4 WKV, float32, B={args.batch} T={args.seq_len} C={args.channels}, {torch.get_num_threads()} "
          f"threads, best of {args.repeats}")
    print(f"  prefill  token-loop reference {s['reference'] * 1e3:8.2f} ms   chunked cpu {s['cpu'] * 1e3:8.2f} ms   "
          f"{s['reference'] / s['cpu']:.1f}x")
    print(f"  decode   reference (T=1)      {s['reference_step'] * 1e6:8.1f} us   cpu step    "
          f"{s['cpu_step'] * 1e6:8.1f} us   {s['reference_step'] / s['cpu_step']:.1f}x")
    print_cpp_lines(s, result["cpp_refusal"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
