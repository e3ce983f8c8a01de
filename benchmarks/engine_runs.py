"""Measurements through the engine: total throughput of N concurrent generations, and the load test's clients.

Every client is a thread that submits at the same moment as the others (a barrier) and consumes its own
stream, as a web app's request handlers would.
"""
from __future__ import annotations

import gc
import os
import statistics
import threading
import time
from dataclasses import dataclass, field

import torch

from rwkv_app.engine import Engine, ErrorFinish
from rwkv_app.core.generation import TokenEvent
from rwkv_app.core.sampling import SamplingSettings
from .memory import rss_bytes


@dataclass
class ClientResult:
    submitted: float = 0.0
    first: float | None = None
    finished: float | None = None
    tokens: int = 0
    error: str | None = None

    @property
    def ttft(self) -> float:
        return self.first - self.submitted

    @property
    def rate(self) -> float:
        """Tokens/s this client saw after its first token."""
        return (self.tokens - 1) / max(self.finished - self.first, 1e-9)


def prompts(n: int, length: int, vocab: int, seed: int) -> list[list[int]]:
    generator = torch.Generator().manual_seed(seed)
    return [torch.randint(0, vocab, (length,), generator=generator).tolist() for _ in range(n)]


def client(engine: Engine, prompt: list[int], settings: SamplingSettings, start: threading.Barrier,
           result: ClientResult) -> None:
    try:
        start.wait()
        result.submitted = time.perf_counter()
        for event in engine.submit(prompt, sampling=settings, eos_token_id=None):
            now = time.perf_counter()
            if isinstance(event, TokenEvent):
                result.first = result.first or now
                result.tokens += 1
            elif isinstance(event, ErrorFinish):
                result.error = event.error
        result.finished = time.perf_counter()
    except Exception as err:  # counted as an error in the report
        result.error = f"{type(err).__name__}: {err}"


def run_clients(engine: Engine, batch: list[list[int]], settings: SamplingSettings) -> tuple[list[ClientResult], float]:
    """All clients at once; their results and the wall time from the common start to the last finish."""
    results = [ClientResult() for _ in batch]
    start = threading.Barrier(len(batch) + 1)
    threads = [threading.Thread(target=client, args=(engine, p, settings, start, r)) for p, r in zip(batch, results)]
    for thread in threads:
        thread.start()
    start.wait()
    began = time.perf_counter()
    for thread in threads:
        thread.join()
    return results, time.perf_counter() - began


def throughput(engine: Engine, n: int, prompt_len: int, new_tokens: int, settings: SamplingSettings,
               vocab: int, seed: int = 0):
    """A callable for `interleaved`: n concurrent generations of `new_tokens` each; returns tokens/s."""
    batch = prompts(n, prompt_len, vocab, seed)
    settings = settings.replace(max_new_tokens=new_tokens)

    def run() -> float:
        results, seconds = run_clients(engine, batch, settings)
        errors = [r.error for r in results if r.error]
        if errors:
            raise RuntimeError(f"engine run with {n} clients failed: {errors[0]}")
        return sum(r.tokens for r in results) / seconds
    return run


@dataclass
class LoadRound:
    clients: int
    ttft: list[float]
    rates: list[float]
    errors: int
    rss_after: int
    seconds: float


@dataclass
class LoadResult:
    rounds: list[LoadRound] = field(default_factory=list)
    loadavg: tuple[float, float] = (0.0, 0.0)  # the machine's 1-minute load average before and after

    def of(self, clients: int) -> list[LoadRound]:
        return [r for r in self.rounds if r.clients == clients]

    def median_ttft(self, clients: int) -> float:
        return statistics.median(t for r in self.of(clients) for t in r.ttft)


def load_test(engine: Engine, clients: tuple[int, ...], rounds: int, prompt_len: int, new_tokens: int,
              vocab: int, settings: SamplingSettings, log=print) -> LoadResult:
    """`rounds` times over: each client count in turn, every client streaming one generation."""
    out, before = LoadResult(), os.getloadavg()[0]
    for index in range(rounds):
        for n in clients:
            batch = prompts(n, prompt_len, vocab, seed=1000 * index + n)
            results, seconds = run_clients(engine, batch, settings.replace(max_new_tokens=new_tokens))
            gc.collect()
            ok = [r for r in results if r.error is None and r.first is not None]
            out.rounds.append(LoadRound(n, [r.ttft for r in ok], [r.rate for r in ok],
                                        len(results) - len(ok), rss_bytes(), seconds))
            log(f"load round {index + 1}/{rounds}: {n} clients in {seconds:.1f} s, "
                f"median TTFT {statistics.median(r.ttft for r in ok) if ok else float('nan'):.2f} s, "
                f"{len(results) - len(ok)} errors, RSS {rss_bytes() / 2**20:.0f} MiB")
    out.loadavg = (before, os.getloadavg()[0])
    return out
