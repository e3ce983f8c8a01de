"""`python -m rwkv_app.bench cpu [--prefill-len 512] [--repeats 3] [--no-write]`
`python -m rwkv_app.bench gpu [--repeats 3] [--no-write] [--placeholder]`"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .cpu import CpuBenchSettings, render_markdown, run_cpu_bench
from .report import write_section

DOCS = Path(__file__).resolve().parents[2] / "docs" / "BENCHMARKS.md"
GPU_TITLE = "GPU: Triton kernels, fused decode, CUDA graphs"


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m rwkv_app.bench", description=__doc__)
    sub = parser.add_subparsers(dest="suite", required=True)
    cpu = sub.add_parser("cpu", help="this project vs transformers on CPU, float32, 169M-shaped random weights")
    defaults = CpuBenchSettings()
    for field in ("prefill_len", "prompt_len", "decode_tokens", "repeats", "vocab_size", "hidden_size",
                  "num_hidden_layers"):
        cpu.add_argument("--" + field.replace("_", "-"), type=int, default=getattr(defaults, field))
    gpu = sub.add_parser("gpu", help="Triton kernels vs the reference at real shapes, then GPU timings "
                                     "(169M and 1.5B shapes); exits 2 without a CUDA GPU")
    gpu.add_argument("--repeats", type=int, default=3)
    gpu.add_argument("--decode-tokens", type=int, default=64)
    gpu.add_argument("--placeholder", action="store_true",
                     help="measure nothing: write the table with every row 'not measured yet'")
    for suite in (cpu, gpu):
        suite.add_argument("--no-write", action="store_true", help=f"print only; do not update {DOCS.name}")
        suite.add_argument("--out", type=Path, default=DOCS, help="the markdown file to update")
    return parser.parse_args(argv)


def main_cpu(args: argparse.Namespace) -> int:
    settings = CpuBenchSettings(**{k: v for k, v in vars(args).items() if k in CpuBenchSettings.__dataclass_fields__})
    rows, facts = run_cpu_bench(settings)
    table = render_markdown(rows, facts, settings)
    print(table)
    if not args.no_write:
        write_section(args.out, "CPU: this project vs transformers", "python -m rwkv_app.bench cpu", table)
        print(f"wrote {args.out}")
    return 0


def gpu_missing() -> str | None:
    """Why the GPU suite cannot run here, or None."""
    import torch

    import kernels

    if not torch.cuda.is_available():
        return "no CUDA GPU here (torch.cuda.is_available() is False); nothing measured"
    if not kernels.triton_available():
        return "the triton package is not installed (pip install -r requirements.txt); nothing measured"
    return None


def main_gpu(args: argparse.Namespace) -> int:
    from . import gpu

    settings = gpu.GpuBenchSettings(repeats=args.repeats, decode_tokens=args.decode_tokens)
    rows = gpu.row_specs(settings)
    if args.placeholder:
        table = gpu.render_markdown(rows, None, settings)
    else:
        problem = gpu_missing()
        if problem:
            print(f"python -m rwkv_app.bench gpu: {problem}", file=sys.stderr)
            return 2
        results, facts = gpu.run_gpu_bench(settings, log=lambda line: print(line, file=sys.stderr, flush=True))
        table = gpu.render_markdown(gpu.fill(rows, results), facts, settings)
    print(table)
    if not args.no_write:
        write_section(args.out, GPU_TITLE, "python -m rwkv_app.bench gpu", table)
        print(f"wrote {args.out}")
    return 1 if any(row.verdict == "FAIL" for row in rows) else 0


def main(argv=None) -> int:
    args = parse_args(argv)
    return main_cpu(args) if args.suite == "cpu" else main_gpu(args)


if __name__ == "__main__":
    sys.exit(main())
