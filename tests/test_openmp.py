"""OpenMP pools: release_thread_pool frees the calling thread's worker threads (rwkv_app/core/openmp.py)."""
import threading
import time
from pathlib import Path

import pytest
import torch

from rwkv_app.core.openmp import _pause_function, release_thread_pool


def os_threads() -> int:
    return len(list(Path("/proc/self/task").iterdir()))


def settle(expected: int, timeout: float = 5.0) -> int:
    """The process's OS thread count once it reaches `expected` (workers exit asynchronously), or at the timeout."""
    deadline = time.monotonic() + timeout
    while os_threads() != expected and time.monotonic() < deadline:
        time.sleep(0.01)
    return os_threads()


@pytest.mark.skipif(not Path("/proc/self/task").exists() or _pause_function() is None,
                    reason="needs Linux and torch built with libgomp")
@pytest.mark.skipif(torch.get_num_threads() < 2, reason="one intra-op thread makes no pool")
def test_a_thread_that_releases_its_pool_leaves_no_worker_threads_behind():
    counts = {}

    def work():
        counts["before"] = os_threads()
        torch.exp(torch.randn(4_000_000))  # far past the grain size: a parallel region, so a pool
        counts["with pool"] = os_threads()
        counts["released"] = release_thread_pool()
        counts["after"] = settle(counts["before"])
        done.wait()

    done = threading.Event()
    thread = threading.Thread(target=work)
    thread.start()
    deadline = time.monotonic() + 30
    while "after" not in counts and time.monotonic() < deadline:
        time.sleep(0.01)
    done.set()
    thread.join()
    assert counts["with pool"] == counts["before"] + torch.get_num_threads() - 1
    assert counts["released"] is True
    assert counts["after"] == counts["before"]


def test_release_without_a_pool_is_harmless():
    release_thread_pool()
    assert isinstance(release_thread_pool(), bool)
    assert torch.exp(torch.zeros(100_000)).sum().item() == 100_000  # the next parallel region makes a new pool
