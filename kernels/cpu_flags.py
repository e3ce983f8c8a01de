"""The CPU's feature flags, read once from Linux's /proc/cpuinfo (empty elsewhere): which kernels can run here."""
from __future__ import annotations

import functools
from pathlib import Path


def cpu_flags(cpuinfo: str | None = None) -> frozenset[str]:
    """The flags in `cpuinfo` (text in /proc/cpuinfo's format), or this machine's."""
    return parse_flags(cpuinfo) if cpuinfo is not None else machine_flags()


@functools.cache
def machine_flags() -> frozenset[str]:
    try:
        return parse_flags(Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace"))
    except OSError:
        return frozenset()


def parse_flags(cpuinfo: str) -> frozenset[str]:
    flags = set()
    for line in cpuinfo.splitlines():
        if line.startswith("flags"):
            flags.update(line.split(":", 1)[-1].split())
    return frozenset(flags)
