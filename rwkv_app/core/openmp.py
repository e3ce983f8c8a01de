"""OpenMP thread pools: keep the engine's the only one, so its parallel regions start fast.

torch's CPU ops run their parallel regions on OpenMP (libgomp on Linux). libgomp gives every thread that starts a
parallel region its own pool of worker threads, kept while that thread lives. Once the process's pool threads
outnumber the CPUs, libgomp lets an idle worker spin only 100 times before it sleeps, so every parallel region
then pays to wake its workers. Measured here (2 CPUs, int8 169M shape): after the main thread had loaded the model
(one pool), a decode forward on the engine's thread took 24 ms at batch 1 and 43 ms at batch 16, against 16 and 30
ms with the main thread's pool released; torch.exp on 16 x 3072 floats 70 us against 25.

`release_thread_pool()` frees the calling thread's pool (OpenMP 5's omp_pause_resource_all, a soft pause of the
calling thread's own pool in libgomp); its next parallel region makes a new one. Threads other than the engine's
call it when their torch work is done: the thread that creates an Engine (in its constructor), the model
manager after a load, the UI's callbacks. Other OpenMP runtimes (LLVM's libomp on macOS, Intel's) pause the whole runtime
instead, so there it does nothing.
"""
from __future__ import annotations

import ctypes
import functools
from pathlib import Path

import torch

OMP_PAUSE_SOFT = 1  # omp.h's omp_pause_soft
LIBGOMP = "libgomp"


@functools.cache
def _pause_function():
    """libgomp's omp_pause_resource_all, found among the libraries this process has loaded (torch's own copy,
    loaded with torch, which this module imports); None where there is none (not Linux, or another runtime)."""
    if not torch.backends.openmp.is_available():
        return None
    try:
        maps = Path("/proc/self/maps").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    paths = sorted({line.split()[-1] for line in maps.splitlines()
                    if line.split() and Path(line.split()[-1]).name.startswith(LIBGOMP)})
    for path in paths:
        try:
            function = ctypes.CDLL(path).omp_pause_resource_all
        except (OSError, AttributeError):
            continue
        function.argtypes, function.restype = [ctypes.c_int], ctypes.c_int
        return function
    return None


def release_thread_pool() -> bool:
    """Free the calling thread's OpenMP worker threads; True when libgomp did. Cheap when there is no pool. Call it
    outside any parallel region (torch never calls back into Python from one)."""
    pause = _pause_function()
    return pause is not None and pause(OMP_PAUSE_SOFT) == 0
