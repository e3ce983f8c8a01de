"""`python -m benchmarks load`: N concurrent streaming generations through the engine, round after round.

Reports per-generation tokens/s and time to first token (TTFT) for N = 1, 4, 16 clients submitting at
the same moment (256-token prompts, the balanced preset), that no request failed, and the process's RSS
after each round (it must not grow). Random 169M-shaped weights, float32, CPU.
"""
from __future__ import annotations

import os
import statistics
from dataclasses import dataclass

import torch

from rwkv_app.models.rwkv4.config import RwkvConfig
from rwkv_app.engine import Engine
from rwkv_app.models.rwkv4.modeling import RwkvForCausalLM
from rwkv_app.core.presets import load_sampling_preset
from .cpu import SHAPE_169M, environment
from .engine_runs import LoadResult, load_test

GROWTH_LIMIT = 32 * 2**20  # bytes of RSS growth from the first round to the last still called "no growth"


@dataclass
class LoadSettings:
    clients: tuple[int, ...] = (1, 4, 16)
    rounds: int = 3
    prompt_len: int = 256
    new_tokens: int = 32
    max_batch: int = 32
    prefill_budget: int = 256


def random_model() -> RwkvForCausalLM:
    """The cpu suite's random 169M-shaped model (same seed, same weights), without transformers' copy."""
    torch.manual_seed(0)
    return RwkvForCausalLM(RwkvConfig(**SHAPE_169M)).eval()


def run_load(model, s: LoadSettings, log=print) -> LoadResult:
    settings = load_sampling_preset("balanced")
    with Engine(model, max_batch=s.max_batch, max_queue=max(s.clients), prefill_budget=s.prefill_budget) as engine:
        load_test(engine, (1,), 1, s.prompt_len, 4, model.config.vocab_size, settings, log=lambda _: None)  # warm-up
        return load_test(engine, s.clients, s.rounds, s.prompt_len, s.new_tokens, model.config.vocab_size,
                         settings, log=log)


def render_load(result: LoadResult, s: LoadSettings) -> str:
    single = result.median_ttft(s.clients[0])
    lines = [
        f"{s.rounds} rounds; in each, for N = {', '.join(map(str, s.clients))}, N clients submit at the same moment "
        f"and each streams one generation of {s.new_tokens} tokens from its own random {s.prompt_len}-token prompt "
        f"(balanced preset). Engine: max_batch {s.max_batch}, prefill budget {s.prefill_budget} tokens per step. "
        f"Random 169M-shaped weights, float32, CPU: {environment()}; load average (1 min) "
        f"{result.loadavg[0]:.1f} at the start, {result.loadavg[1]:.1f} at the end, on {os.cpu_count()} cores.",
        "",
        "| clients | median TTFT | max TTFT | median TTFT vs 1 client | floor for N prompts at once | "
        "per-generation tok/s (median) | total tok/s | errors |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for n in s.clients:
        rounds = result.of(n)
        ttft = [t for r in rounds for t in r.ttft]
        rates = [x for r in rounds for x in r.rates]
        total = statistics.median(n * s.new_tokens / r.seconds for r in rounds)
        errors = sum(r.errors for r in rounds)
        lines.append(f"| {n} | {statistics.median(ttft):.2f} s | {max(ttft):.2f} s | "
                     f"{statistics.median(ttft) / single:.1f}x | ~{(n + 1) / 2:.1f}x | "
                     f"{statistics.median(rates):.1f} | {total:.1f} | {errors} |")
    rss = [r.rss_after for r in result.rounds if r.clients == s.clients[-1]]
    grew = rss[-1] - rss[0]
    verdict = "no growth" if grew < GROWTH_LIMIT else "GROWTH"
    lines += ["", f"RSS after each round: {', '.join(f'{b / 2**20:.0f} MiB' for b in rss)}; "
                  f"{grew / 2**20:+.0f} MiB from the first round to the last ({verdict}; "
                  f"limit {GROWTH_LIMIT // 2**20} MiB). Errors: {sum(r.errors for r in result.rounds)}.",
              "", LOAD_NOTES]
    return "\n".join(lines) + "\n"


LOAD_NOTES = """TTFT: from submit to the first streamed token, as the client sees it. Per-generation tok/s: tokens
after the first over the time from the first to the last, per client. "Floor": with N equal prompts
arriving at once on a compute-bound machine, even the best schedule (one prompt after another, in order)
gives the median client (N+1)/2 prompts' worth of prefill before its first token; all N at once in one
batch gives every client N prompts' worth."""
