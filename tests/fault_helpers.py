"""Shared by the fault tests: a gate that holds the engine's thread at each model forward, so a test decides
when the engine may step (no sleeps, no races: "the engine is mid-step" is a state the test sets up), and a
poll that waits for a condition with a generous deadline and names what it waited for."""
from __future__ import annotations

import threading
import time

ENGINE_THREAD = "rwkv-engine"


class EngineGate:
    """A forward pre-hook on one model: the engine's thread waits at each forward for a permit; other threads
    (the session tree running a prompt) pass. `arrivals` counts forwards that reached the gate."""

    def __init__(self, model):
        self._permits = threading.Semaphore(0)
        self._cond = threading.Condition()
        self.arrivals = 0
        self.opened = False
        self._hook = model.register_forward_pre_hook(self._wait)

    def _wait(self, module, args) -> None:
        if threading.current_thread().name != ENGINE_THREAD or self.opened:
            return
        with self._cond:
            self.arrivals += 1
            self._cond.notify_all()
        self._permits.acquire()

    def allow(self, forwards: int) -> None:
        for _ in range(forwards):
            self._permits.release()

    def wait_arrivals(self, count: int, timeout: float = 30.0) -> None:
        """Until `count` engine forwards have reached the gate (the engine is then held at the last one)."""
        with self._cond:
            assert self._cond.wait_for(lambda: self.arrivals >= count, timeout), \
                f"the engine reached {self.arrivals} forwards, expected {count}"

    def open(self) -> None:
        """Let everything through from now on (wakes a forward held now)."""
        self.opened = True
        self._permits.release()

    def hold(self) -> None:
        """Hold the engine again at its next forward (after open()); counting starts again from zero."""
        while self._permits.acquire(blocking=False):
            pass
        self.opened, self.arrivals = False, 0

    def remove(self) -> None:
        self.open()
        self._hook.remove()


def wait_for(condition, what: str, timeout: float = 30.0, interval: float = 0.01):
    """Poll until condition() is truthy; its value. The deadline only guards against a hang."""
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(interval)
    return value


def idle(engine) -> bool:
    stats = engine.stats()
    return stats.running == 0 and stats.waiting == 0 and stats.prefilling == 0


def default_model(playground):
    """The playground's default model (borrowed and given back at once: the playground keeps it loaded)."""
    loaded = playground.acquire_default()
    playground.manager.release(loaded)
    return loaded.model
