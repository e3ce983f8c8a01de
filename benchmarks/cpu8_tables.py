"""Markdown for `python -m benchmarks cpu8`: the header names the machine, threads and load average."""
from __future__ import annotations

import os
import platform
import statistics

import torch

from rwkv_app.models.cpu_dtype import cpu_bf16_flags, cpu_default_dtype
from rwkv_app.services.malloc import DEFAULT_ARENAS, DEFAULT_HEAP_BLOCK_MB
from .cpu8 import CHUNKED_WKV, PER_OP, TORCH_INT8

GOALS = {"decode": 2.5, "prefill": 2.5, "engine/8": 5.0, "engine/16": 8.0}  # issue 18's targets
GREEDY_GOAL = 32  # issue 18: int8's greedy continuation on random 169M weights equals float32's this long


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
        return names[0] if names else platform.processor() or platform.machine()
    except OSError:
        return platform.processor() or platform.machine()


def header(loadavg: tuple[tuple[float, ...], tuple[float, ...]]) -> str:
    before, after = loadavg
    flags = ", ".join(cpu_bf16_flags()) or "no bfloat16 dot-product flags"
    return (f"Machine: {cpu_name()}, {os.cpu_count()} logical CPUs ({flags}); torch {torch.__version__}, "
            f"**{torch.get_num_threads()} threads** in every row. Load average (1, 5, 15 min) "
            f"before: {', '.join(f'{x:.2f}' for x in before)}; after: {', '.join(f'{x:.2f}' for x in after)} "
            f"(other jobs share this machine while it runs). glibc malloc as app.py sets it ({DEFAULT_ARENAS} "
            f"arenas, blocks up to {DEFAULT_HEAP_BLOCK_MB} MiB from the heap). CPU default dtype: "
            f"**{cpu_default_dtype()['dtype']}** ({cpu_default_dtype()['reason']}).")


def ratio(a: float | None, b: float | None) -> str:
    return f"{a / b:.2f}x" if a and b else "n/a"


def row(label: str, ours: float, base: float | None, goal: float | None) -> str:
    mark = "" if goal is None or base is None else (" ✅" if ours / base >= goal else " ❌")
    goal_text = f"{goal:.1f}x" if goal else ""
    return f"| {label} | {ours:.1f} | {base:.1f} | {ratio(ours, base)}{mark} | {goal_text} |" if base else \
        f"| {label} | {ours:.1f} | n/a | n/a | {goal_text} |"


def engine_rows(engine: dict, family: str) -> list[str]:
    lines = []
    for label in ("greedy", "balanced"):
        one = engine.get(f"{label}/1")
        for n, goal in ((8, GOALS["engine/8"]), (16, GOALS["engine/16"])):
            if f"{label}/{n}" in engine:
                lines.append(row(f"{family} engine, {n} concurrent vs 1, {label} (total tokens/s)",
                                 engine[f"{label}/{n}"], one, goal))
    return lines


SIDE_BY_SIDE = (  # (result key of the other engine runs, decode key, what ours is, what it is set beside)
    ("engine_per_op", PER_OP, "C++ layer step", "per-op path"),
    ("engine_torch_int8", TORCH_INT8, "kernels/int8_cpu", "torch's int8 kernels"),
)


def kernel_rows(r: dict, family: str) -> list[str]:
    """The int8 model as it runs against itself with one part swapped back, same weights, same run: the per-op path
    (cpu_decode = "ops") and torch's int8 kernels (quantize_model(kernel=False))."""
    lines, d = [], r["decode"]
    for engine_key, decode_key, ours, theirs in SIDE_BY_SIDE:
        if decode_key in d:
            lines.append(row(f"{family} decode batch 1, int8: {ours} vs {theirs} (tokens/s)", d["int8"],
                             d[decode_key], None))
        other = r.get(engine_key, {})
        for n in sorted(int(key.split("/")[1]) for key in other):
            lines.append(row(f"{family} engine, {n} concurrent, greedy: {ours} vs {theirs} (total tokens/s)",
                             r["engine"][f"greedy/{n}"], other[f"greedy/{n}"], None))
    return lines


def render_rwkv4(r: dict, settings) -> list[str]:
    d, p, dt = r["decode"], r["prefill"], r["default_dtype"]
    hf = d.get("transformers")
    lines = [row("RWKV-4 decode batch 1, int8 vs transformers float32 (tokens/s)", d["int8"], hf, GOALS["decode"]),
             row("RWKV-4 decode batch 1, int8 vs rwkv pip `cpu fp32i8`", d["int8"], d.get("rwkv fp32i8"), None),
             row("RWKV-4 decode batch 1, int8 vs our float32", d["int8"], d["float32"], None),
             row("RWKV-4 decode batch 1, our bfloat16 vs our float32", d["bfloat16"], d["float32"], None),
             row(f"RWKV-4 prefill T={settings.prefill_len}, default ({dt}) vs transformers float32 (tokens/s)",
                 p["default"], p.get("transformers"), GOALS["prefill"]),
             row(f"RWKV-4 prefill T={settings.prefill_len}, our bfloat16 vs our float32", p["bfloat16"],
                 p["float32"], None),
             row(f"RWKV-4 prefill T={settings.prefill_len}, default ({dt}): C++ WKV vs chunked torch WKV", p["default"],
                 p.get(CHUNKED_WKV), None)]
    lines += engine_rows(r["engine"], f"RWKV-4 ({dt})") + kernel_rows(r, "RWKV-4")
    for n, t in sorted(r.get("sampler", {}).items()):
        lines.append(row(f"sampler, {n} rows, balanced preset: batched vs row by row (steps/s)",
                         1 / t["batched"], 1 / t["row by row"], None))
    f32 = r.get("engine_float32_greedy", {})
    if f32:
        lines.append(row("RWKV-4 engine, 8 concurrent vs 1, greedy, float32 weights", f32["greedy/8"],
                         f32["greedy/1"], None))
    return lines


def render_rwkv7(r: dict, settings) -> list[str]:
    d, p, dt = r["decode"], r["prefill"], r["default_dtype"]
    lines = [row("RWKV-7 decode batch 1, int8 vs rwkv pip `cpu fp32` (x070 has no i8 mode)", d["int8"],
                 d["rwkv fp32"], None),
             row("RWKV-7 decode batch 1, int8 vs our float32", d["int8"], d["float32"], None),
             row(f"RWKV-7 prefill T={settings.prefill_len}, default ({dt}) vs rwkv pip `cpu fp32`", p["default"],
                 p["rwkv fp32"], None),
             row(f"RWKV-7 prefill T={settings.prefill_len}, default ({dt}) vs our float32", p["default"],
                 p["float32"], None),
             row(f"RWKV-7 prefill T={settings.prefill_len}, default ({dt}): C++ WKV vs chunked torch WKV", p["default"],
                 p.get(CHUNKED_WKV), None)]
    if "engine_error" in r:
        return lines + [f"| RWKV-7 engine | not measured: {r['engine_error']} | | | |"]
    return lines + engine_rows(r["engine"], f"RWKV-7 ({dt})") + kernel_rows(r, "RWKV-7")


def greedy_line(label: str, matches: dict[str, list[int]], settings) -> str:
    """One quality line: per variant, the greedy tokens equal to float32's before the first difference, per prompt."""
    def one(name: str, counts: list[int]) -> str:
        reached = sum(c >= GREEDY_GOAL for c in counts)
        return f"{name} {', '.join(map(str, counts))} (median {statistics.median(counts):g}; {reached} of " \
               f"{len(counts)} prompts reach {GREEDY_GOAL})"
    return (f"- {label}, greedy tokens equal to float32 before the first difference (of {settings.greedy_tokens}), "
            f"per fixed random 10-token prompt: " + "; ".join(one(n, c) for n, c in matches.items()) + ".")


def render(results: dict, settings) -> str:
    lines = [header(results["loadavg"]), "",
             "| metric | this project | baseline | ratio | goal |", "|---|---:|---:|---:|---:|"]
    lines += render_rwkv4(results["rwkv4"], settings)
    if "rwkv7" in results:
        lines += render_rwkv7(results["rwkv7"], settings)
    elif "rwkv7_error" in results:
        lines.append(f"| RWKV-7 | not measured: {results['rwkv7_error']} | | | |")
    r4 = results["rwkv4"]
    bpc = r4["demo_bpc"]
    lines += ["", "Quality:", "",
              f"- Demo model (RWKV-4 Austen), held-out bits per char: float32 {bpc['float32']:.4f}, int8 "
              f"{bpc['int8']:.4f} ({100 * (bpc['int8'] / bpc['float32'] - 1):+.3f}%), bfloat16 "
              f"{bpc['bfloat16']:.4f} ({100 * (bpc['bfloat16'] / bpc['float32'] - 1):+.3f}%).",
              greedy_line("Random 169M weights (RWKV-4)", r4["greedy_match"], settings)]
    if "rwkv7" in results:
        lines.append(greedy_line("Random 0.1B weights (RWKV-7)", results["rwkv7"]["greedy_match"], settings))
    lines.append("- The trained demo model's int8 greedy continuation equals float32's for 32+ tokens "
                 "(tests/test_quantize.py). Random weights give near-flat logits; how far a greedy continuation "
                 "follows float32 there measures how much a change to the weights moves the logits, and the float32 "
                 "controls (every projection's weights times 1 + e N(0, 1)) show the scale: int8's per-channel "
                 "rounding is ~8e-3 of a weight, bfloat16's ~1e-3.")
    lines += ["", f"Decode: {settings.decode_tokens} greedy steps at batch 1 (a long run minus a short one). Engine: "
              f"N generations of {settings.engine_prompt}-token prompts and {settings.engine_tokens} new tokens "
              "submitted at once through one Engine; total tokens/s. Medians of interleaved repeats."]
    return "\n".join(lines) + "\n"
