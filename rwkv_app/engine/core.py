"""The engine: one model, one scheduler thread, every generation of every session batched together.

    engine = Engine(model, tokenizer, max_batch=32, max_queue=64, prefill_budget=256, gather_ms=2)
    handle = engine.submit("Once upon a time", sampling=settings, max_new_tokens=64)
    for event in handle:                     # TokenEvents, then one FinishEvent, as stream_generate yields
        ...
    handle.cancel()                          # ends it within one step
    engine.close()                           # cancels what is in flight and joins the thread

Thread-safe: any thread may submit, iterate and cancel. The thread sleeps on a condition variable when idle.
"""
from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass

import torch

from ..errors import InputError
from ..core.openmp import release_thread_pool
from ..core.generation import FROM_CONFIG
from .requests import EngineBusy, EngineClosed, Generation, Request, make_request
from .scheduler import Scheduler, describe

# An idle engine woken by a request starts once no submit is under way and none has arrived for GATHER_MS, and
# at the latest GATHER_MAX_MS after it woke (measured here: 16 client threads released at once spend 5-15 ms in
# submit between them, under the GIL; a lone request's first token comes 15-25 ms later anyway).
GATHER_MS = 2.0
GATHER_MAX_MS = 50.0


@dataclass(frozen=True)
class EngineStats:
    waiting: int
    prefilling: int
    running: int
    loops: int  # times the thread woke up and ran a step
    steps: int
    decode_forwards: int
    decode_rows: int
    prefill_forwards: int
    prefill_tokens: int
    finished: int
    errors: int


class Engine:
    """Runs submitted generations through one scheduler: per step, chunked prefill of newly admitted prompts
    (at most `prefill_budget` tokens, so a long prompt does not stall the others), then one decode forward
    over every running generation (at most `max_batch`). Up to `max_queue` more wait; beyond that, submit
    raises EngineBusy at once.

    `gather_ms`: when a request finds the engine idle, the engine starts once no other submit is under way and
    none has arrived for this long (GATHER_MAX_MS at most, or as soon as the batch is full), so requests
    submitted together (a Compare run's seeds, the API's n > 1, visitors pressing Generate at once) share one
    prefill forward and start decoding in one batch, instead of the first running alone while the rest queue
    behind its prefill. 0 turns it off."""

    def __init__(self, model, tokenizer=None, *, max_batch: int = 32, max_queue: int = 64,
                 prefill_budget: int = 256, gather_ms: float = GATHER_MS, start: bool = True):
        for name, value in (("max_batch", max_batch), ("max_queue", max_queue), ("prefill_budget", prefill_budget)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise InputError(f"{name} must be an integer >= 1, got {value!r}")
        if isinstance(gather_ms, bool) or not isinstance(gather_ms, (int, float)) or not 0 <= gather_ms <= 1000:
            raise InputError(f"gather_ms must be a number of milliseconds from 0 to 1000, got {gather_ms!r}")
        self.model, self.tokenizer = model, tokenizer
        self.max_batch, self.max_queue, self.gather_s = max_batch, max_queue, gather_ms / 1000
        self._scheduler = Scheduler(model, prefill_budget)
        self._cond = threading.Condition(threading.RLock())  # re-entrant: a dropped handle's finalizer may wake us
        self._waiting: deque[Request] = deque()
        self._arriving = 0  # submits under way (checking their input)
        self._last_arrival = 0.0  # time.monotonic() of the last request queued
        self._closing = self._drain = False
        self._loops = 0
        self._thread = threading.Thread(target=self._run, name="rwkv-engine", daemon=True)
        release_thread_pool()  # the creating thread's OpenMP workers go: the engine's thread keeps the only pool
        if start:
            self.start()

    def start(self) -> None:
        """Start the scheduler thread (done by the constructor unless start=False)."""
        with self._cond:
            if self._closing:
                raise EngineClosed("the engine is closed")
            if not self._thread.is_alive() and self._thread.ident is None:
                self._thread.start()

    def submit(self, prompt=None, *, sampling=None, max_new_tokens: int | None = None, stop=None,
               top_alternatives: int = 5, state=None, logits=None, context=None, eos_token_id=FROM_CONFIG,
               row: int = 0) -> Generation:
        """Queue one generation; returns its handle. Raises at once on bad input, EngineBusy, EngineClosed.

        Either `prompt` (token ids, or text with a tokenizer), run on `state` (a one-row state of the model's family) or on the empty
        state; or a start without a prompt: `state` and `logits` (V,) after its last token, as the session tree
        keeps them, with `context` the ids already in the state (for the repetition penalty only).
        `sampling` is a SamplingSettings (None: greedy); `max_new_tokens` and `stop` override its own;
        max_new_tokens=0 only prefills, the FinishEvent carrying the state and logits. `row` labels the events.
        """
        with self._cond:
            self._arriving += 1
        try:
            request = make_request(self.model, self.tokenizer, self._wake, prompt, state=state, logits=logits,
                                   context=context, sampling=sampling, max_new_tokens=max_new_tokens, stop=stop,
                                   top_alternatives=top_alternatives, eos_token_id=eos_token_id, row=row)
        finally:
            with self._cond:
                self._arriving -= 1
                self._cond.notify()
        handle = Generation(request.channel)
        with self._cond:
            if self._closing:
                raise EngineClosed("the engine is closed and takes no more requests")
            if len(self._waiting) >= self.max_queue:
                raise EngineBusy(f"the engine is busy: {len(self._waiting)} requests already wait "
                                 f"(max_queue={self.max_queue}, max_batch={self.max_batch}); try again shortly")
            self._waiting.append(request)
            self._last_arrival = time.monotonic()
            self._cond.notify()
        return handle

    def close(self, drain: bool = False, timeout: float | None = None) -> None:
        """Stop taking requests and join the thread. Work in flight ends as cancelled, or with drain=True
        runs to its end first."""
        with self._cond:
            self._closing, self._drain = True, drain
            self._cond.notify()
        if self._thread.ident is not None:
            self._thread.join(timeout)
        else:  # never started: nothing else will finish the waiting requests
            self._shutdown()

    @property
    def closed(self) -> bool:
        return self._closing

    @property
    def alive(self) -> bool:
        """Whether the scheduler thread is running."""
        return self._thread.is_alive()

    def stats(self) -> EngineStats:
        c, s = self._scheduler.counters, self._scheduler
        return EngineStats(waiting=len(self._waiting), prefilling=len(s.prefilling), running=len(s.batch),
                           loops=self._loops, steps=c.steps, decode_forwards=c.decode_forwards,
                           decode_rows=c.decode_rows, prefill_forwards=c.prefill_forwards,
                           prefill_tokens=c.prefill_tokens, finished=c.finished, errors=c.errors)

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ---- the scheduler thread --------------------------------------------------------------------------
    def _wake(self) -> None:
        with self._cond:
            self._cond.notify()

    def _run(self) -> None:
        with torch.no_grad():
            while self._next_round():
                try:
                    self._scheduler.step()
                except Exception as err:  # a bug, not one request's fault: fail what is in flight, keep serving
                    self._scheduler.fail_all(f"engine step failed: {describe(err)}")
            self._shutdown()

    def _next_round(self) -> bool:
        """Sleep until there is work; admit what fits in the batch. False when it is time to stop."""
        with self._cond:
            while not (self._waiting or self._scheduler.active or self._closing):
                self._cond.wait()
            if not self._scheduler.active and self.gather_s:
                self._gather()
            if self._closing and (not self._drain or not (self._waiting or self._scheduler.active)):
                return False
            cancelled = [r for r in self._waiting if r.cancelled]
            if cancelled:
                self._waiting = deque(r for r in self._waiting if not r.cancelled)
            room = self.max_batch - self._scheduler.active
            admitted = [self._waiting.popleft() for _ in range(min(room, len(self._waiting)))]
            self._loops += 1
        self._scheduler.retire(cancelled)
        self._scheduler.admit(admitted)
        return True

    def _gather(self) -> None:
        """Woken from idle (holding the lock): let a burst of requests arrive (see gather_ms)."""
        cap = time.monotonic() + max(GATHER_MAX_MS / 1000, self.gather_s)
        while not self._closing and len(self._waiting) < self.max_batch:
            now = time.monotonic()
            quiet = self._last_arrival + self.gather_s
            if now >= cap or (not self._arriving and now >= quiet):
                return
            self._cond.wait((cap if self._arriving else min(cap, quiet)) - now)

    def _shutdown(self) -> None:
        with self._cond:
            waiting, self._waiting = list(self._waiting), deque()
        self._scheduler.retire(waiting)
        self._scheduler.cancel_all()
