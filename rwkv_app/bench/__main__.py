"""`python -m rwkv_app.bench cpu [--prefill-len 512] [--repeats 3] [--no-write]`"""
from __future__ import annotations

import argparse
from pathlib import Path

from .cpu import CpuBenchSettings, render_markdown, run_cpu_bench
from .report import write_section

DOCS = Path(__file__).resolve().parents[2] / "docs" / "BENCHMARKS.md"


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m rwkv_app.bench", description=__doc__)
    sub = parser.add_subparsers(dest="suite", required=True)
    cpu = sub.add_parser("cpu", help="this project vs transformers on CPU, float32, 169M-shaped random weights")
    defaults = CpuBenchSettings()
    for field in ("prefill_len", "prompt_len", "decode_tokens", "repeats", "vocab_size", "hidden_size",
                  "num_hidden_layers"):
        cpu.add_argument("--" + field.replace("_", "-"), type=int, default=getattr(defaults, field))
    cpu.add_argument("--no-write", action="store_true", help=f"print only; do not update {DOCS.name}")
    cpu.add_argument("--out", type=Path, default=DOCS, help="the markdown file to update")
    return parser.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    settings = CpuBenchSettings(**{k: v for k, v in vars(args).items() if k in CpuBenchSettings.__dataclass_fields__})
    rows, facts = run_cpu_bench(settings)
    table = render_markdown(rows, facts, settings)
    print(table)
    if not args.no_write:
        write_section(args.out, "CPU: this project vs transformers", "python -m rwkv_app.bench cpu", table)
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
