"""The server's cap on glibc's malloc arenas: on by default, changed by a flag or the environment."""
import ctypes.util
import platform

import app
from rwkv_app.services import malloc


def test_arenas_default_to_two_and_follow_the_environment(monkeypatch):
    monkeypatch.delenv(malloc.ENV, raising=False)
    assert malloc.default_arenas() == 2 and app.parse_args([]).malloc_arenas == 2
    monkeypatch.setenv(malloc.ENV, "0")
    assert app.parse_args([]).malloc_arenas == 0
    assert app.parse_args(["--malloc-arenas", "4"]).malloc_arenas == 4


def test_limit_arenas_says_what_it_did(monkeypatch):
    monkeypatch.delenv("MALLOC_ARENA_MAX", raising=False)
    assert malloc.limit_arenas(0) == "malloc arenas: glibc's default"
    glibc = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc" and ctypes.util.find_library("c")
    assert malloc.limit_arenas(2) == ("malloc arenas: at most 2" if glibc else "malloc arenas: not glibc, left alone")
    monkeypatch.setenv("MALLOC_ARENA_MAX", "3")
    assert malloc.limit_arenas(2) == "malloc arenas: MALLOC_ARENA_MAX=3 from the environment"


def test_rss_of_this_process_and_of_one_that_is_gone():
    assert malloc.rss_bytes() > 2 ** 20  # this Python with torch imported holds well over 1 MiB
    assert malloc.rss_bytes(2 ** 31 - 1) == 0  # no such process
    glibc = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"
    assert malloc.malloc_trim() in ((True, False) if glibc else (False,))


def test_keep_large_blocks_says_what_it_did():
    assert malloc.keep_large_blocks(0) == "malloc large blocks: glibc's default"
    glibc = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc" and ctypes.util.find_library("c")
    done = malloc.keep_large_blocks(malloc.DEFAULT_HEAP_BLOCK_MB)
    assert done == (f"malloc large blocks: up to {malloc.DEFAULT_HEAP_BLOCK_MB} MiB from the heap" if glibc
                    else "malloc large blocks: not glibc, left alone")
    assert app.parse_args([]).malloc_heap_mb == malloc.DEFAULT_HEAP_BLOCK_MB
    assert app.parse_args(["--malloc-heap-mb", "0"]).malloc_heap_mb == 0
