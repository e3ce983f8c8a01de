"""The shared part of the playground: the model manager, one Engine per loaded model, the operator's limits.

One Playground per server process; it hands out a UserSession per browser session. Models are loaded once
(through the ModelManager) and shared by every session that uses them; a session holds its model borrowed
until it switches model or ends.

The web app registers each UserSession under its browser session's id (`session_for(client)`) and frees it
as soon as that browser session ends (`client_gone(client)`, from Gradio's unload event), rather than when
its per-session state expires.
"""
from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from . import views
from .default_model import bundled_demos, public_name  # public_name: the UI's name for a model source
from ..engine import Engine
from ..errors import InputError, NotCachedError, RwkvError
from ..models.family import family_of
from .manager import LoadedModel, ModelManager, ModelKey, auto_dtype, gib
from ..core.presets import list_sampling_presets
from ..state_tree import SessionTree, StateBudget

MIB = 2 ** 20
# Bytes a parameter takes once loaded. int8: the int8 weight (1) plus the bfloat16 copy prefill builds on first use
# (2; rwkv_app/models/quantize.py, many_rows_bytes).
DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2, "int8": 3}
FIT_FRACTION = 0.8  # a model "fits" when its weights take at most this share of the machine's memory
SAVE_WAIT_S = 3.0  # the most a reopening waits for the visitor's closed tabs to save their last generation (a
# cancelled stream ends within one engine step, or runner.STOP_WAIT_S when the engine is slow to retire it)


def machine_memory(device_type: str) -> int:
    """Bytes of memory the weights would live in: the first GPU's on cuda, physical RAM elsewhere."""
    if device_type == "cuda" and torch.cuda.is_available():
        return torch.cuda.get_device_properties(0).total_memory
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


@dataclass(frozen=True)
class PlaygroundOptions:
    device: str | None = None
    dtype: str | None = None
    allow_any_model: bool = False  # visitors may load any Hub repo id or server-side directory
    max_upload_mb: float = 64.0  # session files
    max_prompt_chars: int = 20_000  # a longer message or prompt is refused with a clear error
    max_new_tokens: int = 512  # the most one request may ask for
    max_batch: int = 16
    max_queue: int = 32
    session_state_mb: float = 64.0  # kept states per session (LRU beyond it; a dropped one is recomputed)
    session_ttl_s: int = 3600  # a session idle this long is freed even if its tab stays open


class Playground:
    def __init__(self, options: PlaygroundOptions | None = None, manager: ModelManager | None = None,
                 store=None):
        self.options = options or PlaygroundOptions()
        self.manager = manager or ModelManager()
        self.store = store  # a SessionStore (services/session_store.py): visitors' conversations; None: not saved
        self.default_source: str | None = None
        self._engines: dict[ModelKey, Engine] = {}
        self._lock = threading.Lock()
        self.sessions = 0  # live sessions (tests check that closing frees them)
        self._clients: dict[str, object] = {}  # browser session id -> its live UserSession
        self._ending: set = set()  # closed UserSessions whose generation is still ending (it saves as it ends)

    # ---- models --------------------------------------------------------------------------------------
    def start(self, source: str, progress=None) -> LoadedModel:
        """Load the default model (the server's own choice: any source is allowed here)."""
        loaded = self.manager.acquire(source, device=self.options.device, dtype=self.options.dtype,
                                      progress=progress)
        self.manager.release(loaded)
        SessionTree(loaded.model, loaded.tokenizer, budget=self.state_budget())  # a budget too small fails now
        self.default_source = source
        return loaded

    def state_budget(self) -> StateBudget:
        """The operator's cap on one visitor's kept states (the tree drops the least recently used beyond it)."""
        return StateBudget(max_bytes=max(1, int(self.options.session_state_mb * 2 ** 20)))

    def model_choices(self) -> list[str]:
        """The presets, then the bundled demos (they need no network)."""
        return list(self.manager.presets) + [name for name in bundled_demos() if name not in self.manager.presets]

    def check_source(self, source: str) -> str:
        """What a visitor may load: a preset name, the current default, or (operator flag) any id or path."""
        source = (source or "").strip()
        if not source:
            raise InputError("choose a model first")
        if source in self.manager.presets or source == self.default_source:
            return source
        if self.default_source and source == public_name(self.default_source):
            return self.default_source  # the name the visitor was shown
        if source in bundled_demos():
            return source  # always on offer (they need no network); the manager resolves the name to its folder
        if not self.options.allow_any_model:
            raise InputError(f"unknown model {source[:80]!r}: choose one of the presets or demos "
                             f"({', '.join(self.model_choices())}); loading other repo ids or server paths is "
                             "off on this server (the operator enables it with --allow-any-model)")
        if "/" not in source and not Path(source).exists():
            raise InputError(f"unknown model {source[:80]!r}: not a preset, a Hub repo id 'org/name' or a directory")
        return source

    def acquire(self, source: str, progress=None) -> LoadedModel:
        source = self.check_source(source)
        try:
            return self.manager.acquire(source, device=self.options.device, dtype=self.options.dtype,
                                        progress=progress)
        except NotCachedError as err:  # the operator's advice (cache path, switches) goes to the log, not the page
            logging.getLogger("rwkv_app.services").warning("cannot load %s: %s", source, err)
            raise InputError(f"{err.repo_label} is not downloaded on this server, and the server cannot reach the "
                             f"Hugging Face Hub now: choose another model (the bundled demos always work)") from err

    def engine_for(self, loaded: LoadedModel) -> Engine:
        with self._lock:
            engine = self._engines.get(loaded.key)
            if engine is None or engine.closed:
                engine = Engine(loaded.model, loaded.tokenizer, max_batch=self.options.max_batch,
                                max_queue=self.options.max_queue)
                self._engines[loaded.key] = engine
            return engine

    def memory_report(self) -> list[dict]:
        return [{**m, "memory": gib(m["bytes"]), "name": public_name(m["source"])} for m in self.manager.loaded()]

    def device_type(self) -> str:
        return (self.options.device or ("cuda" if torch.cuda.is_available() else "cpu")).split(":")[0]

    def model_table(self) -> list[dict]:
        """The models a visitor may load, as plain data: {name, params, download_gb, dtype, memory_gb, fits,
        loaded, sessions}. `dtype`: what it loads in here (a preset's `cpu: auto` resolved for this machine);
        `memory_gb`: what it holds when loaded, else what it would (parameters x bytes per parameter);
        `fits`: whether that is at most FIT_FRACTION of this machine's memory."""
        total = machine_memory(self.device_type())
        held, users = {}, {}
        for m in self.memory_report():
            held[m["name"]] = m["bytes"]
            users[m["name"]] = users.get(m["name"], 0) + m["in_use"]
        entries = {}  # name -> (params, download_gb, dtype)
        if self.default_source and public_name(self.default_source) not in self.manager.presets:
            demo = bundled_demos().get(public_name(self.default_source), {})
            entries[public_name(self.default_source)] = (demo.get("params"), None, self.dtype_here(None))
        for name, demo in bundled_demos().items():
            entries.setdefault(name, (demo["params"], None, self.dtype_here(None)))
        for name, preset in self.manager.presets.items():
            entries[name] = (preset.params, preset.download_gb, self.dtype_here(preset))
        rows = []
        for name, (params, download_gb, dtype) in entries.items():
            need = held.get(name, (params or 0) * DTYPE_BYTES.get(dtype, 4))
            rows.append({"name": name, "params": params, "download_gb": download_gb, "dtype": dtype,
                         "memory_gb": need / 2 ** 30, "fits": need <= FIT_FRACTION * total,
                         "loaded": name in held, "sessions": users.get(name, 0)})
        return rows

    def dtype_here(self, preset) -> str:
        """The dtype a model loads in on this server: the operator's --dtype, else the preset's for this device."""
        return self.options.dtype or auto_dtype(torch.device(self.device_type()), preset)

    def cpu_note(self) -> str:
        """On a CPU server: the CPU default dtype and why, and whether the int8 decode kernel runs (plain text)."""
        if self.device_type() != "cpu":
            return ""
        default = self.manager.cpu_default()
        note = f"CPU default dtype (presets marked `cpu: auto`): {default['dtype']}, because {default['reason']}."
        if default["dtype"] == "int8":
            why_not = default["int8_kernel_off"]
            note += (" int8 decode runs this project's kernel (kernels/int8_cpu; built once per machine, about 30 s, "
                     "at the first model load)." if not why_not else f" int8 decode runs torch's kernels ({why_not}).")
        return note

    def machine_summary(self) -> str:
        return f"{self.device_type()} with {machine_memory(self.device_type()) / 2 ** 30:.0f} GiB"

    def sampling_presets(self) -> list[str]:
        return list_sampling_presets()

    # ---- sessions ------------------------------------------------------------------------------------
    def new_session(self):
        from .user_session import UserSession

        if self.default_source is None:
            raise RwkvError("the playground has no model yet: call start() first")
        session = UserSession(self, self.acquire_default())
        with self._lock:
            self.sessions += 1
        return session

    def session_for(self, client: str):
        """The live UserSession of a browser session (`client`: its id, e.g. Gradio's session hash), made on its
        first action and registered, so that `client_gone(client)` frees it when that browser session ends.
        A browser session whose state lost its UserSession (e.g. its first action failed) gets the same one."""
        with self._lock:
            session = self._clients.get(client)
        if session is not None and not session.closed:
            return session
        fresh = self.new_session()
        with self._lock:
            session = self._clients.get(client)
            if session is None or session.closed:
                fresh.client, self._clients[client] = client, fresh
                return fresh
        fresh.close()  # another action of the same browser session made one first
        return session

    def client_gone(self, client: str) -> bool:
        """The browser session ended (tab closed, client disconnected): free its UserSession now."""
        with self._lock:
            session = self._clients.get(client)
        if session is None:
            return False
        session.close()
        return True

    def chat_settings(self) -> dict:
        """A new chat's settings on the server's model (views.chat_settings): the names it was tuned on (RWKV-4:
        User / Bot; RWKV-7 G1: User / Assistant) and whether it has a thinking format (RWKV-7)."""
        loaded = self.acquire_default()
        try:
            return views.chat_settings(family_of(loaded.model), None)
        finally:
            self.manager.release(loaded)

    def state_tensor_names(self) -> tuple[list[str], str]:
        """The server's model's state tensors and the one the State tab's heatmap shows first (plain data)."""
        loaded = self.acquire_default()
        try:
            family = family_of(loaded.model)
            return list(family.state_names), family.memory_tensor
        finally:
            self.manager.release(loaded)

    def state_heads(self) -> dict | None:
        """The server's model's per-head state layout (the family's `heads`: tensor, layers, heads, size, rows,
        columns), None when its state has no heads (RWKV-4)."""
        loaded = self.acquire_default()
        try:
            return family_of(loaded.model).heads(loaded.model)
        finally:
            self.manager.release(loaded)

    def acquire_default(self) -> LoadedModel:
        return self.manager.acquire(self.default_source, device=self.options.device, dtype=self.options.dtype)

    def session_closed(self, session=None) -> None:
        """A session was closed; it is `ending` until its tree is freed (`session_freed`: at once when idle, else
        once its running generation has ended and saved what it streamed)."""
        with self._lock:
            self.sessions -= 1
            if session is not None:
                self._ending.add(session)
                if self._clients.get(session.client) is session:
                    del self._clients[session.client]

    def session_freed(self, session) -> None:
        with self._lock:
            self._ending.discard(session)

    def wait_saved(self, owner: str, timeout: float = SAVE_WAIT_S) -> None:
        """Wait (at most `timeout`) until the owner's closed sessions have ended their generations: a tab reloaded
        mid-stream saves what it streamed as its generation ends, so the reloaded page reopens it."""
        deadline = time.monotonic() + timeout
        with self._lock:
            ending = [session for session in self._ending if session.saved.owner == owner]
        for session in ending:
            session.wait_idle(max(0.0, deadline - time.monotonic()))

    def stats(self) -> dict:
        """For the operator (app.py --stats, the soak test): live sessions and each engine's counters."""
        with self._lock:
            engines = {key.describe(): vars(engine.stats()) for key, engine in self._engines.items()}
            return {"sessions": self.sessions, "engines": engines}

    def close(self) -> None:
        with self._lock:
            engines, self._engines = list(self._engines.values()), {}
        for engine in engines:
            engine.close()
        if self.store is not None:
            self.store.close()
