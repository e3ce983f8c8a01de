"""The model manager: loads models by preset name, Hub repo id, local path or `demo` (the bundled demo model),
shares them between sessions, and keeps as many loaded as a memory budget allows, evicting the least recently
used idle one.

    manager = ModelManager(budget_bytes=8 * 2**30)
    with manager.use("rwkv-4-169m-pile", progress=print) as loaded:
        loaded.model, loaded.tokenizer

Thread-safe: two sessions asking for the same model trigger one load, and a model in use is never evicted.
"""
from __future__ import annotations

import math
import threading
import time
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Callable, Iterator

import torch

from ..weights.auto import CAUSAL_LM, detect_family
from ..weights.checkpoints import expected_shapes
from ..models.rwkv4.config import CONFIG_NAME, RwkvConfig
from .default_model import DEMO_DIRS, DEMO_NAME, resolve_demo
from ..errors import InputError, RwkvError
from ..weights.hub import resolve_model_dir, resolve_model_file
from .model_presets import ModelPreset, load_model_presets
from ..models.cpu_dtype import AUTO, cpu_default_dtype
from ..core.openmp import release_thread_pool
from ..models.quantize import int8_kernel_off, many_rows_bytes
from kernels import int8_cpu, wkv_loops
from ..models.variants import RWKV4
from ..weights.pretrained import load_dtype, resolve_device
from ..weights.progress import Progress, progress_tqdm_class
from ..tokenizers.tokenizer import TOKENIZER_FILE, TokenizerError
from ..tokenizers.tokenizer_select import align_eos, tokenizer_in

Clock = Callable[[], float]


class ModelLoadError(RwkvError):
    """A model could not be loaded; the manager and every model already loaded are unaffected."""


class MemoryBudgetError(ModelLoadError):
    """The model does not fit in the manager's memory budget, even after evicting idle models."""


@dataclass(frozen=True)
class ModelKey:
    source: str  # the Hub repo id or local path actually loaded
    revision: str | None
    device: str
    dtype: str
    filename: str | None = None  # one file of the repo (a preset's `filename`), fetched alone

    def describe(self) -> str:
        at = f"@{self.revision}" if self.revision else ""
        file = f"/{self.filename}" if self.filename else ""
        return f"{self.source}{file}{at} ({self.dtype} on {self.device})"


@dataclass
class LoadedModel:
    key: ModelKey
    model: torch.nn.Module  # a causal LM of any family (its `family` says how to handle its state)
    tokenizer: object | None
    nbytes: int
    preset: ModelPreset | None = None
    users: int = 0
    last_used: float = field(default_factory=time.monotonic)


class ModelManager:
    def __init__(self, budget_bytes: int | None = None, cache_dir: str | Path | None = None,
                 local_files_only: bool | None = None, presets: dict[str, ModelPreset] | None = None,
                 clock: Clock = time.monotonic):
        self.budget_bytes = budget_bytes
        self.cache_dir = cache_dir
        self.local_files_only = local_files_only
        self.presets = load_model_presets() if presets is None else presets
        self._clock = clock
        self._lock = threading.Lock()
        self._loaded: dict[ModelKey, LoadedModel] = {}
        self._loading: dict[ModelKey, Future] = {}
        self._reserved: dict[ModelKey, int] = {}  # bytes promised to loads in flight
        self.loads = 0  # how many loads actually ran (tests check that concurrent requests share one)

    # ---- public API ------------------------------------------------------------------------------
    @contextmanager
    def use(self, source: str, revision: str | None = None, device: str | None = None, dtype: str | None = None,
            progress: Progress | None = None) -> Iterator[LoadedModel]:
        """Borrow a model (loading it if needed); it cannot be evicted until the block ends."""
        loaded = self.acquire(source, revision, device, dtype, progress)
        try:
            yield loaded
        finally:
            self.release(loaded)

    def acquire(self, source: str, revision: str | None = None, device: str | None = None,
                dtype: str | None = None, progress: Progress | None = None) -> LoadedModel:
        key, preset = self.key_for(source, revision, device, dtype)
        while True:
            with self._lock:
                if key in self._loaded:
                    return self._borrow(self._loaded[key])
                pending = self._loading.get(key)
                if pending is None:
                    pending = self._loading[key] = Future()
                    break
            error = pending.exception()  # another thread is loading it: wait, then look again
            if error is not None:
                raise error
        return self._load_and_register(key, preset, pending, progress)

    def release(self, loaded: LoadedModel) -> None:
        with self._lock:
            loaded.users = max(0, loaded.users - 1)
            loaded.last_used = self._clock()

    def unload(self, key: ModelKey) -> bool:
        """Drop an idle model now; False if it is in use or not loaded."""
        with self._lock:
            loaded = self._loaded.get(key)
            if loaded is None or loaded.users:
                return False
            del self._loaded[key]
        return True

    def loaded(self) -> list[dict]:
        """What is in memory: for the UI's model panel."""
        with self._lock:
            return [{"model": m.key.describe(), "source": m.key.source, "device": m.key.device,
                     "dtype": m.key.dtype, "bytes": m.nbytes, "in_use": m.users} for m in self._loaded.values()]

    def cpu_default(self) -> dict[str, str]:
        """The dtype presets marked `cpu: auto` load in on this machine, and why, and why kernels/int8_cpu would not
        run here ("" where it does): plain data for the Models tab."""
        return {**cpu_default_dtype(), "int8_kernel_off": int8_kernel_off()}

    def bytes_in_use(self) -> int:
        with self._lock:
            return sum(m.nbytes for m in self._loaded.values())

    # ---- choosing ------------------------------------------------------------------------------
    def key_for(self, source: str, revision: str | None, device: str | None,
                dtype: str | None) -> tuple[ModelKey, ModelPreset | None]:
        preset = self.presets.get(source)
        target = preset.repo if preset else resolve_demo(str(source))  # "demo": the bundled demo-model/ folder
        if not preset and target == source and "/" not in str(source) and not Path(source).exists():
            raise InputError(f"unknown model {str(source)[:80]!r}: not a preset ({', '.join(self.presets)}), a "
                             f"bundled demo ({', '.join([DEMO_NAME, *DEMO_DIRS])}), a local path or a Hub repo "
                             "id 'org/name'")
        resolved_device = resolve_device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        name = dtype or auto_dtype(resolved_device, preset)
        load_dtype(name)  # validates the name
        revision = revision or (preset.revision if preset else None)
        filename = preset.filename if preset else None
        return ModelKey(target, revision, str(resolved_device), str(name).replace("torch.", ""), filename), preset

    # ---- loading -------------------------------------------------------------------------------
    def _borrow(self, loaded: LoadedModel) -> LoadedModel:
        loaded.users += 1
        loaded.last_used = self._clock()
        return loaded

    def _load_and_register(self, key: ModelKey, preset: ModelPreset | None, pending: Future,
                           progress: Progress | None) -> LoadedModel:
        try:
            loaded = self._load(key, preset, progress or (lambda *args: None))
        except BaseException as err:
            error = err if isinstance(err, RwkvError) else ModelLoadError(f"could not load {key.describe()}: {err}")
            with self._lock:
                del self._loading[key]
                self._reserved.pop(key, None)
            pending.set_exception(error)
            raise error from (None if error is err else err)
        with self._lock:
            self._loaded[key] = self._borrow(loaded)
            self.loads += 1
            del self._loading[key]
            self._reserved.pop(key, None)
        pending.set_result(loaded)
        return loaded

    def _load(self, key: ModelKey, preset: ModelPreset | None, progress: Progress) -> LoadedModel:
        if not Path(key.source).exists():  # a local folder or file (the bundled demos) is read, not fetched
            progress("download", 0.0, f"fetching {key.source}")
        fetch = partial(resolve_model_file, filename=key.filename) if key.filename else resolve_model_dir
        path = fetch(key.source, revision=key.revision, cache_dir=self.cache_dir,
                     local_files_only=self.local_files_only, tqdm_class=progress_tqdm_class(progress))
        family = detect_family(path)
        needed = estimate_bytes(path, load_dtype(key.dtype), family)
        self._make_room(needed, key)
        progress("load", 0.0, f"loading weights ({needed / 2**30:.2f} GiB)")
        model = CAUSAL_LM[family].from_pretrained(path, dtype=key.dtype, device=key.device)
        if torch.device(key.device).type == "cpu":
            prepare_cpu_kernels(progress)
        tokenizer = load_tokenizer(path)
        align_eos(model, tokenizer)
        release_thread_pool()  # the engine's thread keeps the only OpenMP pool (core/openmp.py)
        progress("ready", 1.0, f"{key.describe()} ready")
        return LoadedModel(key, model, tokenizer, model_bytes(model), preset, last_used=self._clock())

    def _make_room(self, needed: int, key: ModelKey) -> None:
        """Evict idle models, least recently used first, until `needed` fits; else MemoryBudgetError."""
        if self.budget_bytes is None:
            return
        with self._lock:
            if needed > self.budget_bytes:
                raise MemoryBudgetError(f"{key.describe()} needs {gib(needed)}, more than the whole memory budget "
                                        f"of {gib(self.budget_bytes)}")
            idle = sorted((m for m in self._loaded.values() if not m.users), key=lambda m: m.last_used)
            used = sum(m.nbytes for m in self._loaded.values()) + sum(self._reserved.values())
            while used + needed > self.budget_bytes and idle:
                victim = idle.pop(0)
                del self._loaded[victim.key]
                used -= victim.nbytes
            if used + needed > self.budget_bytes:
                raise MemoryBudgetError(f"{key.describe()} needs {gib(needed)} but models in use hold {gib(used)} "
                                        f"of the {gib(self.budget_bytes)} budget; try again when they are free")
            self._reserved[key] = needed


def prepare_cpu_kernels(progress: Progress) -> None:
    """Build (once per machine, ~30 s, then cached) or load the C++ CPU kernels at model load, not in a visitor's
    first request: int8 decode (kernels/int8_cpu), and both families' WKV token loops that prefill in every dtype
    (kernels/wkv_loops)."""
    extensions = [e for e in (int8_cpu, wkv_loops) if not e.unsupported_reason()]
    if extensions:
        progress("load", 0.9, "loading the C++ CPU kernels (built once per machine, about 30 s)")
    for extension in extensions:
        extension.load()


def auto_dtype(device: torch.device, preset: ModelPreset | None) -> str:
    """CUDA: float16 (rescaling keeps it finite), bfloat16 where a preset asks; CPU: float32 unless a preset says."""
    if preset is not None:
        name = preset.dtype_for(device.type)
        if name == AUTO:  # the machine's fastest at equal quality
            return cpu_default_dtype()["dtype"] if device.type == "cpu" else "float16"
        return name
    return "float16" if device.type == "cuda" else "float32"


def estimate_bytes(path: Path, dtype: torch.dtype, family: str = RWKV4) -> int:
    """Memory the loaded weights will take: from an RWKV-4 config.json when there is one, else the weight files'
    size."""
    directory = path if path.is_dir() else path.parent
    if family == RWKV4 and (directory / CONFIG_NAME).exists():
        config = RwkvConfig.from_json_file(directory / CONFIG_NAME)
        elements = sum(math.prod(shape) for shape in expected_shapes(config).values())
        return elements * torch.empty(0, dtype=dtype).element_size()
    files = [path] if path.is_file() else [p for p in directory.iterdir() if p.suffix in (".pth", ".bin", ".safetensors")]
    return sum(p.stat().st_size for p in files)


def model_bytes(model: torch.nn.Module) -> int:
    """Parameters and buffers, plus an int8 model's bfloat16 copies for many-row calls (built on first use)."""
    seen, total = set(), 0
    for tensor in list(model.parameters()) + list(model.buffers()):
        if tensor.data_ptr() not in seen:
            seen.add(tensor.data_ptr())
            total += tensor.numel() * tensor.element_size()
    return total + many_rows_bytes(model)


def load_tokenizer(path: Path):
    """The checkpoint's tokenizer (tokenizer.json, or the World vocabulary for RWKV-7), or None when it ships
    none that can be told (an RWKV-4 BlinkDL file or bare weights without tokenizer.json)."""
    try:
        return tokenizer_in(path)
    except TokenizerError:
        directory = path if path.is_dir() else path.parent
        if (directory / TOKENIZER_FILE).exists():
            raise  # a tokenizer.json that does not load is an error, not a missing tokenizer
        return None


def gib(nbytes: int) -> str:
    return f"{nbytes / 2**30:.2f} GiB"
