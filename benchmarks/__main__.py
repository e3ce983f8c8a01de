"""`python -m benchmarks cpu [--prefill-len 512] [--repeats 3] [--no-write]`
`python -m benchmarks gpu [--repeats 3] [--no-write] [--placeholder]`
`python -m benchmarks report [--quick] [--repeats 3] [--no-rwkv] [--no-memory] [--no-write]`
`python -m benchmarks rwkv7 [--prefill-len 512] [--decode-tokens 32] [--repeats 3] [--no-write]`
`python -m benchmarks cpu8 [--repeats 3] [--threads N] [--no-rwkv7] [--no-write]`
`python -m benchmarks load [--rounds 3] [--clients 1 4 16] [--no-write]`
`python -m benchmarks soak [--users 16] [--rounds 50] [--model demo] [--no-write] [--report-only]`"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .cpu import CpuBenchSettings, render_markdown, run_cpu_bench
from .memory import use_app_malloc
from .report import write_section

DOCS = Path(__file__).resolve().parents[1] / "docs" / "BENCHMARKS.md"
GPU_TITLE = "GPU: Triton kernels, fused decode, CUDA graphs"
REPORT_TITLE = "Report: this project vs transformers and rwkv, engine throughput, memory (CPU)"
LOAD_TITLE = "Engine load test (CPU)"
CPU8_TITLE = "CPU past float32: int8 weights, bfloat16 prefill, engine scaling (issue 18)"
RWKV7_TITLE = "RWKV-7 (CPU): this project vs BlinkDL's reference"
RELIABILITY = DOCS.parent / "RELIABILITY.md"
SOAK_TITLE = "Soak test: figures"
SOAK_WAVES_TITLE = "Soak test: waves (is anything left behind once every client closed?)"
SOAK_RESTART_TITLE = "Soak test: restarts (kill -9 and restart every N rounds; do saved conversations come back?)"
RELIABILITY_HEADER = "# Reliability\n\nThe soak test's section is written by `python -m benchmarks soak`.\n"


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
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
    report = sub.add_parser("report", help="the full CPU report: this project vs transformers (and the rwkv "
                                           "package), float32/bfloat16, engine throughput, memory, then the load test")
    report.add_argument("--repeats", type=int, default=3)
    report.add_argument("--quick", action="store_true", help="smaller run (prefill T=128/512, fewer tokens, "
                                                             "repeats 1, one load round): a couple of minutes")
    report.add_argument("--no-rwkv", action="store_true", help="leave out the rwkv pip package even if installed")
    report.add_argument("--no-memory", action="store_true", help="skip the per-contender memory subprocesses")
    rwkv7 = sub.add_parser("rwkv7", help="RWKV-7 0.1B shape, float32 CPU: prefill and decode vs the rwkv pip package")
    for field in ("prefill_len", "decode_tokens", "repeats"):
        rwkv7.add_argument("--" + field.replace("_", "-"), type=int, default=3 if field == "repeats" else None)
    cpu8 = sub.add_parser("cpu8", help="int8 decode, default-dtype prefill and engine scaling vs transformers and "
                                       "BlinkDL's rwkv (RWKV-4 169M and RWKV-7 0.1B shapes)")
    cpu8.add_argument("--repeats", type=int, default=3)
    cpu8.add_argument("--no-rwkv7", action="store_true", help="RWKV-4 only")
    load = sub.add_parser("load", help="the engine load test: N concurrent streaming generations, TTFT, RSS")
    load.add_argument("--rounds", type=int, default=3)
    load.add_argument("--clients", type=int, nargs="+", default=[1, 4, 16])
    load.add_argument("--prompt-len", type=int, default=256)
    load.add_argument("--new-tokens", type=int, default=32)
    soak = sub.add_parser("soak", help="the web app under N concurrent gradio_client users for R rounds of mixed "
                                       "actions: errors, TTFT, tokens/s, memory per round, sessions freed")
    soak.add_argument("--users", type=int, default=16)
    soak.add_argument("--rounds", type=int, default=50)
    soak.add_argument("--model", default="demo", help="the app's --model (default: the bundled demo model)")
    soak.add_argument("--seed", type=int, default=0, help="seeds every user's choice of actions and arguments")
    soak.add_argument("--waves", type=int, default=1,
                      help="soaks one after another against the same app, every client closed in between "
                           "(the memory left after each wave's close shows whether anything stays behind)")
    soak.add_argument("--restart-every", type=int, default=0,
                      help="kill -9 and restart the app after every N rounds; every user's saved conversation "
                           "must come back (0: never)")
    soak.add_argument("--min-tokens", type=int, default=16)
    soak.add_argument("--max-tokens", type=int, default=48)
    soak.add_argument("--app-log", type=Path, default=None, help="write the app's own output here")
    soak.add_argument("--report-only", action="store_true", help="exit 0 even when a target is missed")
    soak.add_argument("--no-write", action="store_true", help=f"print only; do not update {RELIABILITY.name}")
    soak.add_argument("--out", type=Path, default=RELIABILITY, help="the markdown file to update")
    for suite in (report, load, cpu8):
        suite.add_argument("--threads", type=int, default=None,
                           help="torch.set_num_threads for every contender (default: torch's own choice); "
                                "on a machine whose cores other jobs share, fewer threads avoid OpenMP stalls")
    for suite in (cpu, gpu, report, load, rwkv7, cpu8):
        suite.add_argument("--no-write", action="store_true", help=f"print only; do not update {DOCS.name}")
        suite.add_argument("--out", type=Path, default=DOCS, help="the markdown file to update")
    return parser.parse_args(argv)


def main_cpu(args: argparse.Namespace) -> int:
    settings = CpuBenchSettings(**{k: v for k, v in vars(args).items() if k in CpuBenchSettings.__dataclass_fields__})
    rows, facts = run_cpu_bench(settings)
    table = render_markdown(rows, facts, settings)
    print(table)
    if not args.no_write:
        write_section(args.out, "CPU: this project vs transformers", "python -m benchmarks cpu", table)
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
            print(f"python -m benchmarks gpu: {problem}", file=sys.stderr)
            return 2
        results, facts = gpu.run_gpu_bench(settings, log=lambda line: print(line, file=sys.stderr, flush=True))
        table = gpu.render_markdown(gpu.fill(rows, results), facts, settings)
    print(table)
    if not args.no_write:
        write_section(args.out, GPU_TITLE, "python -m benchmarks gpu", table)
        print(f"wrote {args.out}")
    return 1 if any(row.verdict == "FAIL" for row in rows) else 0


def report_settings(args: argparse.Namespace):
    from .full import ReportSettings
    from .load import LoadSettings

    if not args.quick:
        return ReportSettings(repeats=args.repeats, rwkv=not args.no_rwkv, memory=not args.no_memory)
    return ReportSettings(prefill_lens=(128, 512), decode_tokens=16, engine_tokens=24, repeats=1,
                          rwkv=not args.no_rwkv, memory=not args.no_memory,
                          load=LoadSettings(rounds=1, new_tokens=16))


def main_report(args: argparse.Namespace) -> int:
    from .full import run_report
    from .full_tables import render_load_section, render_report

    settings = report_settings(args)
    report = run_report(settings)
    table, load = render_report(report, settings), render_load_section(report, settings)
    print(table)
    print(load)
    if not args.no_write:
        write_section(args.out, REPORT_TITLE, "python -m benchmarks report", table)
        write_section(args.out, LOAD_TITLE, "python -m benchmarks report  (or: python -m benchmarks load)",
                      load)
        print(f"wrote {args.out}")
    return 0


def main_rwkv7(args: argparse.Namespace) -> int:
    from .rwkv7 import Rwkv7BenchSettings, measure, render

    given = {k: v for k, v in vars(args).items() if k in ("prefill_len", "decode_tokens", "repeats") and v is not None}
    settings = Rwkv7BenchSettings(**given)
    table = render(measure(settings), settings)
    print(table)
    if not args.no_write:
        write_section(args.out, RWKV7_TITLE, "python -m benchmarks rwkv7", table)
        print(f"wrote {args.out}")
    return 0


def main_cpu8(args: argparse.Namespace) -> int:
    import os

    import torch

    from .cpu8 import Cpu8Settings, measure_rwkv4
    from .cpu8_rwkv7 import run_child
    from .cpu8_tables import render

    settings = Cpu8Settings(repeats=args.repeats, rwkv7=not args.no_rwkv7)
    before = os.getloadavg()
    results = {"rwkv4": measure_rwkv4(settings)}
    if settings.rwkv7:
        try:
            results["rwkv7"] = run_child(settings, torch.get_num_threads())
        except RuntimeError as err:
            print(err, file=sys.stderr)
            results["rwkv7_error"] = str(err).splitlines()[-1][:200]
    results["loadavg"] = (before, os.getloadavg())
    table = render(results, settings)
    print(table)
    if not args.no_write:
        write_section(args.out, CPU8_TITLE, "python -m benchmarks cpu8", table)
        print(f"wrote {args.out}")
    return 0


def main_load(args: argparse.Namespace) -> int:
    from .load import LoadSettings, random_model, render_load, run_load

    settings = LoadSettings(clients=tuple(args.clients), rounds=args.rounds, prompt_len=args.prompt_len,
                            new_tokens=args.new_tokens)
    model = random_model()
    table = render_load(run_load(model, settings, log=lambda line: print(line, file=sys.stderr, flush=True)),
                        settings)
    print(table)
    if not args.no_write:
        write_section(args.out, LOAD_TITLE, "python -m benchmarks load", table)
        print(f"wrote {args.out}")
    return 0


def soak_command(args: argparse.Namespace) -> str:
    command = f"python -m benchmarks soak --users {args.users} --rounds {args.rounds}"
    command += f" --waves {args.waves}" if args.waves > 1 else ""
    command += f" --restart-every {args.restart_every}" if args.restart_every else ""
    return command + (f" --model {args.model}" if args.model != "demo" else "")


def main_soak(args: argparse.Namespace) -> int:
    from .soak import SoakSettings, run_soak
    from .soak_report import missed, render

    settings = SoakSettings(users=args.users, rounds=args.rounds, model=args.model, seed=args.seed,
                            min_tokens=args.min_tokens, max_tokens=args.max_tokens, log_path=args.app_log,
                            waves=args.waves, restart_every=args.restart_every)
    result = run_soak(settings, log=lambda line: print(line, file=sys.stderr, flush=True))
    body = render(result, soak_command(args))
    print(body)
    if not args.no_write:
        title = SOAK_RESTART_TITLE if args.restart_every else SOAK_TITLE if args.waves == 1 else SOAK_WAVES_TITLE
        write_section(args.out, title, soak_command(args), body, header=RELIABILITY_HEADER)
        print(f"wrote {args.out}")
    return 1 if missed(result) and not args.report_only else 0


def main(argv=None) -> int:
    args = parse_args(argv)
    use_app_malloc()  # the engine's figures are the server's (the cpu8 header says so)
    if getattr(args, "threads", None):
        import torch

        torch.set_num_threads(args.threads)
    suites = {"cpu": main_cpu, "gpu": main_gpu, "report": main_report, "load": main_load, "soak": main_soak,
              "rwkv7": main_rwkv7, "cpu8": main_cpu8}
    return suites[args.suite](args)


if __name__ == "__main__":
    sys.exit(main())
