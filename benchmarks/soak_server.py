"""The soak test's app: app.py started as a subprocess on loopback (a free port, --stats on), waited for, read
(its RSS from /proc, the operator-only /server_stats endpoint), and stopped."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from rwkv_app.services.malloc import rss_bytes

APP = Path(__file__).resolve().parents[1] / "app.py"
STATS_ENDPOINT = "/server_stats"  # rwkv_app/ui/stats.py, added by app.py --stats


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class AppProcess:
    """app.py on 127.0.0.1:<free port>; `url` once `start()` returned."""

    model: str = "demo"
    extra_args: tuple[str, ...] = ()
    log_path: Path | None = None
    url: str = ""
    process: subprocess.Popen | None = field(default=None, repr=False)
    _stats_client: object = field(default=None, repr=False)

    def command(self, port: int) -> list[str]:
        return [sys.executable, str(APP), "--model", self.model, "--device", "cpu", "--host", "127.0.0.1",
                "--port", str(port), "--stats", *self.extra_args]

    def start(self, timeout_s: float = 180.0, port: int | None = None) -> str:
        """Start app.py on `port` (default: a free one) and wait until it answers."""
        port = port or free_port()
        env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "PYTHONUNBUFFERED": "1"}
        log = open(self.log_path, "a", encoding="utf-8") if self.log_path else subprocess.DEVNULL
        self.process = subprocess.Popen(self.command(port), env=env, stdout=log, stderr=subprocess.STDOUT,
                                        cwd=APP.parent)
        self.url = f"http://127.0.0.1:{port}/"
        self.wait_ready(timeout_s)
        return self.url

    def wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the app exited with status {self.process.returncode} before it answered"
                                   + (f" (log: {self.log_path})" if self.log_path else ""))
            try:
                if httpx.get(self.url + "gradio_api/info", timeout=5).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        self.stop()
        raise RuntimeError(f"the app did not answer within {timeout_s:.0f} s")

    @property
    def pid(self) -> int:
        return self.process.pid

    def rss(self) -> int:
        """The app process's resident set size now (VmRSS)."""
        return rss_bytes(self.pid)

    def stats(self) -> dict:
        """The app's /server_stats: live sessions, trees, tensors, engine counters, RSS after gc + malloc_trim."""
        from gradio_client import Client

        if self._stats_client is None:
            self._stats_client = Client(self.url, verbose=False)
        return self._stats_client.predict(api_name=STATS_ENDPOINT)

    def restart(self, timeout_s: float = 180.0) -> None:
        """kill -9 the app (nothing is flushed or closed), then start it again on the same port."""
        port = int(self.url.rstrip("/").rsplit(":", 1)[1])
        if self._stats_client is not None:
            self._stats_client.close()
            self._stats_client = None
        self.process.kill()
        self.process.wait(15)
        self.start(timeout_s, port)

    def stop(self) -> None:
        if self._stats_client is not None:
            self._stats_client.close()
            self._stats_client = None
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)

    def __enter__(self) -> AppProcess:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
