"""Shared by the session-store tests: a real redis-server (Debian's /usr/bin/redis-server) on a free loopback
port in a temporary folder, started and stopped by the test, and the two stores on it."""
import shutil
import subprocess
import time
from contextlib import contextmanager

import pytest

from .app_helpers import free_port

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"


@contextmanager
def redis_server(folder):
    """A redis-server for one test module: yields its URL (database 0); no persistence to disk."""
    if not shutil.which(REDIS_SERVER):
        pytest.skip("redis-server is not installed (apt-get install redis-server)")
    import redis

    port = free_port()
    folder.mkdir(parents=True, exist_ok=True)
    process = subprocess.Popen([REDIS_SERVER, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                                "--appendonly", "no", "--dir", str(folder)], stdout=subprocess.DEVNULL,
                               stderr=subprocess.STDOUT)
    url = f"redis://127.0.0.1:{port}/0"
    try:
        for _ in range(200):
            try:
                redis.Redis.from_url(url).ping()
                break
            except redis.ConnectionError:
                if process.poll() is not None:
                    raise RuntimeError(f"redis-server exited with status {process.returncode}")
                time.sleep(0.05)
        yield url
    finally:
        process.terminate()
        process.wait(10)

