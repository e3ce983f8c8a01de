"""The report's markdown: what `run_report` measured, as tables, with the targets checked against it."""
from __future__ import annotations

import os

from .cpu import environment
from .load import render_load

NAMES = {"ours": "this project", "transformers": "transformers", "rwkv": "rwkv (pip)"}
MIB = 2**20


def fmt(value: float | None, unit: str = "tok/s") -> str:
    return "" if value is None else f"{value:,.1f} {unit}".strip()


def ratio(a: float | None, b: float | None) -> str:
    return "" if a is None or b is None else f"{a / b:.2f}x"


def limit(facts: dict, dtype: str) -> float:
    """Decode tokens/s if every weight byte were read once per token at the measured copy bandwidth."""
    return facts["bandwidth"]["copy"] * 1e9 / facts["bytes_per_token"][dtype]


def header(report: dict, s) -> str:
    facts = report["facts"]
    bw, per_token = facts["bandwidth"], facts["bytes_per_token"]
    rwkv = f"rwkv {facts['rwkv']} (strategy `cpu fp32` / `cpu bf16`, JIT on)" if facts["rwkv"] else \
        "rwkv pip package not installed (its columns are left out)"
    weights = ", ".join(f"{per_token[d] / 1e6:.0f} MB in {d}" for d in per_token)
    before, after = facts["loadavg"]
    return (f"Random weights, {s.num_hidden_layers} layers x {s.hidden_size} wide, vocab {s.vocab_size}, CPU. "
            f"{environment()}; transformers {facts['transformers']}; {rwkv}. Load average (1 min) "
            f"{before:.1f} at the start, {after:.1f} at the end, on {os.cpu_count()} cores.\n"
            f"Measured memory bandwidth: copy {bw['copy']:.1f} GB/s (bytes read + written, as STREAM counts), "
            f"read {bw['read']:.1f} GB/s. Weights read per decoded token: {weights}.\n")


def float32_table(report: dict, s) -> list[str]:
    t = report["timings"]["float32"]
    names = t["names"]
    cols = [n for n in names if n != "ours"]
    lines = ["| float32, batch 1 | this project | " + " | ".join(f"{NAMES[n]} | ratio" for n in cols) + " |",
             "|---|---:|" + "---:|---:|" * len(cols)]
    rows = [(f"prefill T={length}", {n: t["prefill"].get((n, length)) for n in names}) for length in s.prefill_lens]
    rows.append(("decode, greedy forward steps", t["decode"]))
    for label, values in rows:
        ours = values.get("ours")
        cells = " | ".join(f"{fmt(values.get(n))} | {ratio(ours, values.get(n))}" for n in cols)
        lines.append(f"| {label} | {fmt(ours)} | {cells} |")
    ceiling = limit(report["facts"], "float32")
    cells = " | ".join(f" | {ratio(ceiling, t['decode'].get(n))}" for n in cols)
    lines.append(f"| decode limit: weights / copy bandwidth | {fmt(ceiling)} | {cells} |")
    return lines


def dtype_table(report: dict, s) -> list[str]:
    names = report["timings"]["float32"]["names"]
    lines = ["| metric | dtype | " + " | ".join(NAMES[n] for n in names) + " | decode limit |",
             "|---|---|" + "---:|" * (len(names) + 1)]
    for dtype, t in report["timings"].items():
        prefill = {n: t["prefill"].get((n, s.dtype_prefill_len)) for n in names}
        lines.append(f"| prefill T={s.dtype_prefill_len} | {dtype} | " + " | ".join(fmt(prefill[n]) for n in names)
                     + " | |")
        lines.append(f"| decode batch 1 | {dtype} | " + " | ".join(fmt(t["decode"].get(n)) for n in names)
                     + f" | {fmt(limit(report['facts'], dtype))} |")
    return lines


def engine_table(report: dict) -> list[str]:
    rates = report["engine"]
    lines = ["| concurrent generations | sampling | total tok/s | per generation | vs 1 generation |",
             "|---:|---|---:|---:|---:|"]
    for (label, n), value in sorted(rates.items(), key=lambda kv: (kv[0][0] != "greedy", kv[0][1])):
        lines.append(f"| {n} | {label} | {value:,.1f} | {value / n:,.1f} | {value / rates[(label, 1)]:.2f}x |")
    return lines


def memory_table(report: dict) -> list[str]:
    lines = ["| contender | dtype | RSS after load | peak RSS while running | process peak RSS (load included) "
             "| anonymous RSS at the end |", "|---|---|---:|---:|---:|---:|"]
    for (name, dtype), m in report["memory"].items():
        lines.append(f"| {NAMES[name]} | {dtype} | {m['loaded'] / MIB:,.0f} MiB | {m['running_peak'] / MIB:,.0f} MiB"
                     f" | {m['peak'] / MIB:,.0f} MiB | {m['anon'] / MIB:,.0f} MiB |")
    return lines


def targets(report: dict, load_settings) -> list[str]:
    engine, t = report["engine"], report["timings"]["float32"]["decode"]
    eight = engine.get(("greedy", 8), 0) / engine[("greedy", 1)]
    hf = t.get("transformers")
    decode = None if hf is None or t["ours"] is None else t["ours"] / hf
    best = None if hf is None else limit(report["facts"], "float32") / hf
    load = report["load"]
    n = load_settings.clients[-1]
    ttft = load.median_ttft(n) / load.median_ttft(load_settings.clients[0])
    verdict = lambda ok: "met" if ok else "missed"  # noqa: E731
    return [
        "| target | measured | verdict |", "|---|---:|---|",
        f"| 8 concurrent generations >= 5x one generation's throughput | {eight:.2f}x | {verdict(eight >= 5)} |",
        f"| decode batch 1 >= 1.5x transformers (float32) | {'' if decode is None else f'{decode:.2f}x'} "
        f"(limit {'' if best is None else f'{best:.2f}x'}) | {'' if decode is None else verdict(decode >= 1.5)} |",
        f"| {n}-client TTFT < 2x single-client ({load_settings.prompt_len}-token prompts, median) | {ttft:.1f}x "
        f"(floor ~{(n + 1) / 2:.1f}x) | {verdict(ttft < 2)} |",
    ]


def render_report(report: dict, s) -> str:
    lines = [header(report, s), *float32_table(report, s), "", "float32 vs bfloat16 weights:", "",
             *dtype_table(report, s), "",
             f"Engine: N concurrent generations, {s.prompt_len}-token prompts, {s.engine_tokens} new tokens each, "
             "submitted at once; total tokens/s from submit to the last token (prefill included):", "",
             *engine_table(report), ""]
    if report["memory"]:
        lines += ["Memory, each contender in a fresh process (imports alone: "
                  f"{min(m['baseline'] for m in report['memory'].values()) / MIB:,.0f} MiB): load the checkpoint, "
                  "prefill 512 tokens, decode 16. RSS counts the resident pages of a memory-mapped checkpoint too; "
                  "the anonymous part leaves those out:", "",
                  *memory_table(report), ""]
    lines += ["Targets (issue 6):", "", *targets(report, s.load), "", REPORT_NOTES]
    return "\n".join(lines) + "\n"


def render_load_section(report: dict, s) -> str:
    return render_load(report["load"], s.load)


REPORT_NOTES = """Prefill: one forward over a T-token prompt returning the state and the last position's logits.
Decode: greedy one-token forward steps at batch 1, tokens/s from the difference of a long and a short
run. Medians of interleaved repeats. "Decode limit": every weight is read once per decoded token, so no
batch-1 implementation can beat bytes-per-token over the machine's memory bandwidth; its ratio column is
the best ratio any float32 implementation could reach against that contender here. A batch of N
generations reads the weights once per step for all N, which is where the engine's throughput comes from."""
