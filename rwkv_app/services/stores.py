"""Opening the session store the operator chose: `--store redis://...` or, by default, SQLite in `--data-dir`."""
from __future__ import annotations

import os
import time
from pathlib import Path

from .session_store import Clock, SessionStore
from .store_sqlite import SqliteStore

APP_FOLDER = "rwkv-playground"
SPACES_DATA = Path("/data")  # a Hugging Face Space's persistent storage, when it is enabled


def default_data_dir() -> Path:
    """/data/rwkv-playground on a Space with persistent storage (or any machine with a writable /data), else a
    folder under the user's cache ($XDG_CACHE_HOME or ~/.cache)."""
    if SPACES_DATA.is_dir() and os.access(SPACES_DATA, os.W_OK):
        return SPACES_DATA / APP_FOLDER
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache) / APP_FOLDER


def open_store(spec: str, ttl_s: float, quota_bytes: int, clock: Clock = time.time) -> SessionStore:
    """`redis://host:port/db` (a shared Redis), or a folder / `sqlite:///path/file.db` (SQLite, one machine)."""
    if spec.startswith(("redis://", "rediss://", "unix://")):
        from .store_redis import RedisStore  # the redis package is needed only here

        return RedisStore(spec, ttl_s, quota_bytes, clock)
    path = Path(spec.removeprefix("sqlite://")) if spec.startswith("sqlite://") else Path(spec) / "sessions.db"
    return SqliteStore(path, ttl_s, quota_bytes, clock)
