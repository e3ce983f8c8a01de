"""`python -m kernels.int8_cpu.bench [--rows 1 2 4 8 12 16] [--repeats 5]`

kernels/int8_cpu against torch's int8 kernels on the same int8 weights, side by side in one run, with torch's
own thread count: `_weight_int8pack_mm`, and the oneDNN bfloat16 GEMM on a prepacked exact bfloat16 copy (what
Int8Linear uses above 3 rows without our kernel). Shapes: forty 3072 x 768 projections (94 MB of int8, more than
any cache, as a decode step streams them) and three 50277 x 768 heads. Rounds alternate between contenders and
the best is kept. Prints ms per pass over all the weights, and each contender's time over the kernel's.
"""
from __future__ import annotations

import argparse

import torch

from ..rwkv7.bench import best_of_alternating
from . import int8_bf16_mm, load, pack_weight

SHAPES = ((3072, 768, 40), (50277, 768, 3))  # (N, K, how many distinct weights)


def contenders(n: int, k: int, count: int, rows: torch.Tensor) -> dict:
    weights = [torch.randint(-127, 128, (n, k), dtype=torch.int8) for _ in range(count)]  # (N, K) each
    scales = torch.rand(n) / 100  # (N,)
    packed = [pack_weight(w) for w in weights]
    onednn = [torch.ops.mkldnn._reorder_linear_weight(w.to(torch.bfloat16), None) for w in weights]
    scales_bf16 = scales.to(torch.bfloat16)
    return {"kernels/int8_cpu": lambda: [int8_bf16_mm(rows, p, scales) for p in packed],
            "int8pack": lambda: [torch.ops.aten._weight_int8pack_mm(rows, w, scales_bf16) for w in weights],
            "bfloat16 GEMM": lambda: [torch.ops.mkldnn._linear_pointwise(rows, w, None, "none", [], "") * scales
                                      for w in onednn]}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kernels.int8_cpu.bench", description=__doc__)
    parser.add_argument("--rows", type=int, nargs="+", default=[1, 2, 4, 8, 12, 16])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    if load() is None:
        print("kernels/int8_cpu does not run on this machine (see the log line above)")
        return 1
    print(f"{torch.get_num_threads()} threads; ms per pass over the weights (contender / kernel)")
    for n, k, count in SHAPES:
        for m in args.rows:
            runs = contenders(n, k, count, torch.randn(m, k).to(torch.bfloat16))
            ms = {name: 1000 * t for name, t in best_of_alternating(runs, args.repeats).items()}
            mine = ms["kernels/int8_cpu"]
            print(f"{count} x ({n} x {k}), {m:2d} rows: " + "; ".join(
                f"{name} {t:.2f}" + ("" if name == "kernels/int8_cpu" else f" ({t / mine:.2f}x)")
                for name, t in ms.items()), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
