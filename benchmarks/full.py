"""`python -m benchmarks report`: the full CPU report from one run.

Same random 169M-shaped weights in every contender (this project, transformers, the rwkv pip package fed
a BlinkDL .pth), timed side by side with interleaved repeats: prefill at several lengths, decode at batch 1
beside the memory-bandwidth limit, float32 and bfloat16, total throughput of N concurrent generations
through the engine, peak memory of each contender in a fresh process; then the engine load test.
"""
from __future__ import annotations

import os
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from rwkv_app.engine import Engine
from rwkv_app.core.presets import load_sampling_preset
from rwkv_app.core.sampling import SamplingSettings
from .contenders import DTYPES, build_contenders, rwkv_pip_available, write_blinkdl
from .cpu import CpuBenchSettings, build_models, decode_bytes_per_token, load_transformers
from .engine_runs import throughput
from .load import LoadSettings, run_load
from .memory import measure_in_subprocess
from .timing import copy_bandwidth_gbs, interleaved, interleaved_values, read_bandwidth_gbs


@dataclass
class ReportSettings:
    prefill_lens: tuple[int, ...] = (128, 512, 2048)
    dtype_prefill_len: int = 512  # the float32-vs-bfloat16 comparison's prefill length
    prompt_len: int = 16
    decode_tokens: int = 32
    repeats: int = 3
    engine_clients: tuple[int, ...] = (1, 4, 8, 16)
    engine_tokens: int = 48
    dtypes: tuple[str, ...] = ("float32", "bfloat16")
    rwkv: bool = True  # include the rwkv pip package when it is installed
    memory: bool = True
    vocab_size: int = 50277
    hidden_size: int = 768
    num_hidden_layers: int = 12
    load: LoadSettings = field(default_factory=LoadSettings)


STARTED = time.perf_counter()


def log(line: str) -> None:
    print(f"[{time.perf_counter() - STARTED:5.0f} s] {line}", file=sys.stderr, flush=True)


def time_prefill(contenders, lens, vocab: int, repeats: int) -> dict[tuple[str, int], float]:
    """{(contender, T): tokens/s} of a T-token prefill (state + last logits)."""
    rates = {}
    for length in lens:
        log(f"prefill T={length}")
        ids = torch.randint(0, vocab, (1, length), generator=torch.Generator().manual_seed(length))
        seconds = interleaved({c.name: (lambda c=c: c.prefill(ids)) for c in contenders}, repeats)
        rates.update({(name, length): length / s for name, s in seconds.items()})
    return rates


def time_decode(contenders, s: ReportSettings) -> dict[str, float]:
    """{contender: tokens/s} of greedy batch-1 decode steps, a long run minus a short one (prefill cancels)."""
    log("decode batch 1")
    prompt = torch.randint(0, s.vocab_size, (1, s.prompt_len), generator=torch.Generator().manual_seed(2))
    short, extra = 4, s.decode_tokens
    runs = {}
    for c in contenders:
        runs[c.name + "/short"] = lambda c=c: c.steps(prompt, short)
        runs[c.name + "/long"] = lambda c=c: c.steps(prompt, short + extra)
    seconds = interleaved(runs, s.repeats)
    extra_seconds = {c.name: seconds[c.name + "/long"] - seconds[c.name + "/short"] for c in contenders}
    return {name: extra / spent if spent > 0 else None for name, spent in extra_seconds.items()}  # None: noise won


def time_engine(model, s: ReportSettings) -> dict[tuple[str, int], float]:
    """{(sampling, N): total tokens/s} of N concurrent generations through one engine."""
    greedy, balanced = SamplingSettings(), load_sampling_preset("balanced").replace(seed=0)
    rates = {}
    with Engine(model, max_batch=max(s.engine_clients)) as engine:
        for label, settings, clients in (("greedy", greedy, s.engine_clients), ("balanced", balanced, (1, 8))):
            log(f"engine throughput, {label}, {clients} concurrent")
            runs = {n: throughput(engine, n, s.prompt_len, s.engine_tokens, settings, s.vocab_size) for n in clients}
            values = interleaved_values({str(n): run for n, run in runs.items()}, s.repeats)
            rates.update({(label, int(n)): v for n, v in values.items()})
    return rates


def time_dtypes(ours, hf, pth, s: ReportSettings) -> dict:
    """Prefill and decode of every contender in every dtype."""
    results = {}
    for dtype in s.dtypes:
        log(f"contenders in {dtype}")
        contenders = build_contenders(ours, hf, pth, dtype)
        lens = s.prefill_lens if dtype == "float32" else (s.dtype_prefill_len,)
        results[dtype] = {"prefill": time_prefill(contenders, lens, s.vocab_size, s.repeats),
                          "decode": time_decode(contenders, s), "names": [c.name for c in contenders]}
        del contenders
    return results


def measure_memory(names: list[str], dtypes, directory: Path) -> dict[tuple[str, str], dict]:
    found = {}
    for name in names:
        for dtype in dtypes:
            log(f"memory: {name} {dtype} in a fresh process")
            probe = measure_in_subprocess(name, dtype, directory)
            if probe is not None:
                found[(name, dtype)] = probe
    return found


def run_report(s: ReportSettings) -> dict:
    """Everything the tables show, measured in this one run."""
    cpu = CpuBenchSettings(vocab_size=s.vocab_size, hidden_size=s.hidden_size, num_hidden_layers=s.num_hidden_layers)
    load_before = os.getloadavg()[0]
    if load_before > 0.5 and torch.get_num_threads() > 1:
        log(f"other jobs are running (load average {load_before:.1f}): with {torch.get_num_threads()} threads each, "
            "OpenMP stalls can slow every contender many times over; --threads 1 gives steadier figures")
    ours, hf = build_models(cpu)
    with torch.inference_mode(), tempfile.TemporaryDirectory(prefix="rwkv-bench-") as tmp:
        directory = Path(tmp)
        use_rwkv = s.rwkv and rwkv_pip_available()
        pth = write_blinkdl(ours, directory) if use_rwkv else None
        timings = time_dtypes(ours, hf, pth, s)
        bandwidth = {"read": read_bandwidth_gbs(), "copy": copy_bandwidth_gbs()}
        engine = time_engine(ours, s)
        memory = {}
        if s.memory:
            ours.save_pretrained(directory)
            memory = measure_memory(timings["float32"]["names"], s.dtypes, directory)
    load = run_load(ours, s.load, log)
    transformers = load_transformers()
    facts = {"bytes_per_token": {d: decode_bytes_per_token(ours) * DTYPES[d].itemsize // 4 for d in s.dtypes},
             "transformers": None if transformers is None else transformers.__version__,
             "rwkv": rwkv_version() if use_rwkv else None, "bandwidth": bandwidth,
             "loadavg": (load_before, os.getloadavg()[0])}
    return {"timings": timings, "engine": engine, "memory": memory, "load": load, "facts": facts}


def rwkv_version() -> str:
    from importlib.metadata import version

    return version("rwkv")

