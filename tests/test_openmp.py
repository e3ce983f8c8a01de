"""OpenMP pools: release_thread_pool frees the calling thread's worker threads (rwkv_app/core/openmp.py)."""
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from rwkv_app.core.openmp import _pause_function, release_thread_pool

ROOT = Path(__file__).resolve().parents[1]
# In a fresh interpreter (no other test's threads starting or ending meanwhile): a thread runs a parallel op (its
# pool appears), releases it, and the process's OS thread count comes back to what it was.
PROBE = """
import json, threading, time
from pathlib import Path
import torch
from rwkv_app.core.openmp import release_thread_pool

def os_threads():
    return len(list(Path("/proc/self/task").iterdir()))

counts = {}
def work():
    counts["before"] = os_threads()
    torch.exp(torch.randn(4_000_000))  # far past the grain size: a parallel region, so a pool
    counts["with pool"] = os_threads()
    counts["released"] = release_thread_pool()
    deadline = time.monotonic() + 5
    while os_threads() != counts["before"] and time.monotonic() < deadline:  # workers exit asynchronously
        time.sleep(0.01)
    counts["after"] = os_threads()

thread = threading.Thread(target=work)
thread.start()
thread.join()
print(json.dumps({**counts, "threads": torch.get_num_threads()}))
"""


@pytest.mark.skipif(not Path("/proc/self/task").exists() or _pause_function() is None,
                    reason="needs Linux and torch built with libgomp")
@pytest.mark.skipif(torch.get_num_threads() < 2, reason="one intra-op thread makes no pool")
def test_a_thread_that_releases_its_pool_leaves_no_worker_threads_behind():
    done = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    counts = json.loads(done.stdout.strip().splitlines()[-1])
    assert counts["with pool"] == counts["before"] + counts["threads"] - 1
    assert counts["released"] is True
    assert counts["after"] == counts["before"]


def test_release_without_a_pool_is_harmless():
    release_thread_pool()
    assert isinstance(release_thread_pool(), bool)
    assert torch.exp(torch.zeros(100_000)).sum().item() == 100_000  # the next parallel region makes a new pool
