"""Side-by-side timing helpers: contenders run interleaved in one process, the median of repeats is kept."""
from __future__ import annotations

import statistics
import time
from typing import Callable

import torch


def median_seconds(run: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def interleaved(runs: dict[str, Callable[[], object]], repeats: int, warmup: int = 1) -> dict[str, float]:
    """Median seconds per contender; rounds alternate contenders so machine noise hits all of them alike."""
    for run in runs.values():
        for _ in range(warmup):
            run()
    samples: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            samples[name].append(median_seconds(run, 1))
    return {name: statistics.median(times) for name, times in samples.items()}


def read_bandwidth_gbs(megabytes: int = 512, repeats: int = 5) -> float:
    """Measured memory read bandwidth (GB/s): summing a buffer far larger than the caches."""
    buffer = torch.ones(megabytes * 2**20 // 4)  # float32
    buffer.sum()
    seconds = min(median_seconds(buffer.sum, 1) for _ in range(repeats))
    return buffer.numel() * 4 / seconds / 1e9


def interleaved_values(runs: dict[str, Callable[[], float]], repeats: int, warmup: int = 1) -> dict[str, float]:
    """Like `interleaved`, for runs that measure themselves: the median of the values they return."""
    for run in runs.values():
        for _ in range(warmup):
            run()
    samples: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            samples[name].append(run())
    return {name: statistics.median(values) for name, values in samples.items()}


def copy_bandwidth_gbs(megabytes: int = 512, repeats: int = 5) -> float:
    """Measured memory copy bandwidth (GB/s), counted as STREAM does: bytes read plus bytes written."""
    source = torch.ones(megabytes * 2**20 // 4)  # float32
    target = torch.empty_like(source)
    target.copy_(source)
    seconds = min(median_seconds(lambda: target.copy_(source), 1) for _ in range(repeats))
    return 2 * source.numel() * 4 / seconds / 1e9
