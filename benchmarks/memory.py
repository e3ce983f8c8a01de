"""Memory: the process's resident set (RSS), and each implementation's peak measured in a fresh process.

`python -m benchmarks.memory IMPL DTYPE DIR` loads the checkpoint in DIR (our `save_pretrained` output,
which transformers loads too, and the BlinkDL .pth for the rwkv package), runs a 512-token prefill and 16
decode steps, and prints one JSON line: RSS after imports, after loading, its peak while running, the
process's peak (ru_maxrss, loading included) and the anonymous part of RSS at the end.
A fresh process per contender, because a peak RSS cannot be reset inside one.
"""
from __future__ import annotations

import json
import resource
import subprocess
import sys
import threading
from pathlib import Path


def rss_bytes() -> int:
    """The current resident set size of this process."""
    with open("/proc/self/statm", encoding="ascii") as statm:
        pages = int(statm.read().split()[1])
    return pages * resource.getpagesize()


def status_bytes(field: str) -> int:
    """A size from /proc/self/status (VmHWM, RssAnon, ...), in bytes."""
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise KeyError(field)


def peak_rss_bytes() -> int:
    """The highest RSS this process has had, loading included (VmHWM: unlike ru_maxrss, not inherited from
    the parent that forked it)."""
    return status_bytes("VmHWM")


def anon_rss_bytes() -> int:
    """Resident anonymous memory: RSS without file-backed pages (a memory-mapped checkpoint)."""
    return status_bytes("RssAnon")


class PeakSampler:
    """The highest RSS seen while the block runs, sampled every `interval` seconds by a background thread."""

    def __init__(self, interval: float = 0.002):
        self.interval, self.peak = interval, rss_bytes()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def _watch(self) -> None:
        while not self._stop.wait(self.interval):
            self.peak = max(self.peak, rss_bytes())

    def __enter__(self) -> PeakSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_bytes())


def load(impl: str, dtype: str, directory: Path):
    from .contenders import DTYPES, PTH_NAME, hf_style, load_rwkv_pip, rwkv_pip_style

    if impl == "ours":
        from rwkv_app.models.rwkv4.modeling import RwkvForCausalLM

        return hf_style(RwkvForCausalLM.from_pretrained(directory, dtype=dtype, device="cpu").eval(), impl)
    if impl == "transformers":
        import transformers

        transformers.logging.set_verbosity_error()
        model = transformers.RwkvForCausalLM.from_pretrained(directory, dtype=DTYPES[dtype])
        return hf_style(model.eval(), impl)
    if impl == "rwkv":
        return rwkv_pip_style(load_rwkv_pip(directory / PTH_NAME, dtype))
    raise SystemExit(f"unknown implementation {impl!r}")


def probe(impl: str, dtype: str, directory: Path) -> dict:
    import torch

    torch.set_grad_enabled(False)
    baseline = rss_bytes()
    contender = load(impl, dtype, directory)
    loaded = rss_bytes()
    vocab = json.loads((directory / "config.json").read_text(encoding="utf-8"))["vocab_size"]
    prompt = torch.randint(0, vocab, (1, 512), generator=torch.Generator().manual_seed(1))
    with PeakSampler() as running:
        contender.prefill(prompt)
        contender.steps(prompt[:, :16], 16)
    return {"impl": impl, "dtype": dtype, "baseline": baseline, "loaded": loaded, "running_peak": running.peak,
            "peak": peak_rss_bytes(), "anon": anon_rss_bytes()}


def measure_in_subprocess(impl: str, dtype: str, directory: Path, timeout: float = 600) -> dict | None:
    """probe() in a fresh interpreter; None (with the reason on stderr) if it fails."""
    command = [sys.executable, "-m", "benchmarks.memory", impl, dtype, str(directory)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout,
                          cwd=Path(__file__).resolve().parents[1])
    if done.returncode != 0:
        print(f"memory probe {impl} {dtype} failed: {done.stderr.strip()[-500:]}", file=sys.stderr)
        return None
    return json.loads(done.stdout.strip().splitlines()[-1])


if __name__ == "__main__":
    print(json.dumps(probe(sys.argv[1], sys.argv[2], Path(sys.argv[3]))))


def use_app_malloc() -> str:
    """glibc's malloc set up as app.py sets it (arenas, large blocks on the heap), so the engine's figures are the
    server's; says what was done."""
    from rwkv_app.services.malloc import DEFAULT_ARENAS, DEFAULT_HEAP_BLOCK_MB, keep_large_blocks, limit_arenas

    return f"{limit_arenas(DEFAULT_ARENAS)}; {keep_large_blocks(DEFAULT_HEAP_BLOCK_MB)} (as app.py)"
