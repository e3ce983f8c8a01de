"""Process memory: capping glibc's malloc arenas in a threaded server (so its memory stops growing once
warmed up), keeping large blocks on the heap (so a batch's tensors reuse memory instead of faulting in fresh
pages every step), giving free heap pages back (malloc_trim) and reading a process's resident set size.

glibc gives threads that contend for the heap their own arenas (up to 8 per core), and each arena keeps
its freed memory in its own fragmented heaps. Gradio runs handlers on up to 40 worker threads, so a
long-running app grows for many rounds before each arena has reached its high-water mark. Two arenas
(the common setting for threaded Python servers, the same as MALLOC_ARENA_MAX=2) keep memory flat at a
negligible cost here: the heavy work runs in torch, outside the Python allocator's locks.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os

M_ARENA_MAX = -8  # glibc's malloc.h
M_MMAP_THRESHOLD = -3
M_TRIM_THRESHOLD = -1
DEFAULT_ARENAS = 2
DEFAULT_HEAP_BLOCK_MB = 64  # blocks up to this size come from the heap (glibc's own ceiling is 32 MiB, adaptive)
ENV = "RWKV_MALLOC_ARENAS"


def default_arenas() -> int:
    """From $RWKV_MALLOC_ARENAS when set (0: glibc's own default), else 2."""
    value = os.environ.get(ENV, "").strip()
    return int(value) if value.isdigit() else DEFAULT_ARENAS


def limit_arenas(arenas: int) -> str:
    """Cap glibc's arenas at `arenas` (call before the server starts threads); says what was done.

    0 leaves glibc alone, and so does a MALLOC_ARENA_MAX already in the environment (glibc read it at start).
    """
    if arenas <= 0:
        return "malloc arenas: glibc's default"
    if os.environ.get("MALLOC_ARENA_MAX"):
        return f"malloc arenas: MALLOC_ARENA_MAX={os.environ['MALLOC_ARENA_MAX']} from the environment"
    done = glibc_mallopt((M_ARENA_MAX, arenas))
    return f"malloc arenas: at most {arenas}" if done else "malloc arenas: not glibc, left alone"


def keep_large_blocks(block_mb: int) -> str:
    """Serve allocations up to `block_mb` MiB from the heap, and keep up to twice that free at its top; says what
    was done. 0 leaves glibc alone.

    glibc maps every block above its mmap threshold (adaptive, at most 32 MiB) fresh from the kernel and unmaps
    it on free, so a tensor of that size made every decode step faults in every page again. Measured here:
    RWKV-7 0.1B shape, int8, batch 16: the state a forward returns is 37.7 MB, 9,200 page faults per forward,
    67 ms a forward against 58 ms with 64 MiB blocks kept on the heap (batch 1 and 8: no change). The price is
    up to 2 x block_mb of freed memory the process keeps instead of returning at once (malloc_trim still does).
    """
    if block_mb <= 0:
        return "malloc large blocks: glibc's default"
    size = block_mb * 2 ** 20
    done = glibc_mallopt((M_MMAP_THRESHOLD, size), (M_TRIM_THRESHOLD, 2 * size))
    return f"malloc large blocks: up to {block_mb} MiB from the heap" if done else \
        "malloc large blocks: not glibc, left alone"


def glibc_mallopt(*settings: tuple[int, int]) -> bool:
    """glibc's mallopt(param, value) for each pair in turn; False where the C library is not glibc (musl, macOS,
    Windows: nothing to set) or glibc refused one."""
    c = libc()
    try:
        return bool(c is not None and c.gnu_get_libc_version and all(c.mallopt(p, v) for p, v in settings))
    except AttributeError:  # not glibc
        return False


def libc():
    """glibc (or whichever C library ctypes finds), None where there is none to load."""
    name = ctypes.util.find_library("c")
    try:
        return ctypes.CDLL(name) if name else None
    except OSError:
        return None


def malloc_trim() -> bool:
    """Give glibc's free heap pages back to the system, so RSS counts what is in use (False off glibc)."""
    try:
        return bool(libc().malloc_trim(0))
    except AttributeError:  # no C library, or not glibc
        return False


def rss_bytes(pid: int | str = "self") -> int:
    """A process's resident set size, from /proc/<pid>/status (0 once it is gone, or where there is no /proc)."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as status:
            return next((int(line.split()[1]) * 1024 for line in status if line.startswith("VmRSS:")), 0)
    except OSError:
        return 0
