"""What a caller hands the engine and gets back: the checked request, its handle, the engine's errors.

`make_request` runs in the caller's thread, so bad input (a token outside the vocabulary, a state of the
wrong shape, a bad sampling setting) raises there and then, before anything is queued. A `Generation` is
the handle: an iterator of the TokenEvents and the one FinishEvent that `stream_generate` would yield.
The engine keeps only the request's `Channel` (event queue, cancel flag), so a dropped handle cancels.
"""
from __future__ import annotations

import queue
import threading
import weakref
from dataclasses import dataclass, field
from typing import Callable

import torch

from ..errors import InputError, RwkvError, check_token_range
from ..core.generation import FinishEvent, RowTracker, TokenEvent
from ..core.generation_inputs import FROM_CONFIG, as_input_ids, resolve_eos, resolve_settings
from ..core.sampling import Sampler
from ..models.family import family_of

CANCELLED, ERROR = "cancelled", "error"  # finish reasons the engine adds to generation's


class EngineError(RwkvError):
    """Base class of the engine's own errors."""


class EngineBusy(EngineError):
    """The engine's queue is full: nothing was queued; retry later."""


class EngineClosed(EngineError):
    """The engine has been closed and takes no more requests."""


@dataclass(frozen=True)
class ErrorFinish(FinishEvent):
    """A generation that failed alone (non-finite logits, an exception in its own forward or sampler).
    `reason` is "error", `tokens` those generated before the failure, `error` says what went wrong."""

    error: str = ""


class Channel:
    """What the engine's thread and a handle share: the event queue and the cancel flag. The engine holds
    the channel, never the handle, so a handle dropped unread can be collected, which cancels its generation."""

    def __init__(self, wake: Callable[[], None]):
        self.events: queue.SimpleQueue = queue.SimpleQueue()
        self.cancel_flag = threading.Event()
        self.wake = wake
        self.emitted = 0  # TokenEvents handed out so far (written by the engine's thread)
        self.emitted_at_cancel: int | None = None

    def cancel(self) -> None:
        if not self.cancel_flag.is_set():
            self.emitted_at_cancel = self.emitted
            self.cancel_flag.set()
            self.wake()

    def put(self, event: TokenEvent | FinishEvent) -> None:
        """Called by the engine's thread."""
        if isinstance(event, TokenEvent):
            self.emitted += 1
        self.events.put(event)


class Generation:
    """The handle `Engine.submit` returns: iterate it for TokenEvents then one FinishEvent; `cancel()` stops it.

    Iteration blocks until the next event; `next_event(timeout)` and `result(timeout)` bound the wait.
    As a context manager it cancels the generation if the block exits before the generation finished, and
    a handle that is dropped (garbage collected) before the end cancels it too.
    """

    def __init__(self, channel: Channel):
        self._channel = channel
        self.finish: FinishEvent | None = None  # set when the FinishEvent is taken from the handle
        self._finalizer = weakref.finalize(self, channel.cancel)

    def cancel(self) -> None:
        """Stop the generation: it ends within one engine step with a FinishEvent whose reason is "cancelled"."""
        self._channel.cancel()

    @property
    def cancelled(self) -> bool:
        return self._channel.cancel_flag.is_set()

    @property
    def emitted(self) -> int:
        """TokenEvents the engine has handed out so far (read or not)."""
        return self._channel.emitted

    @property
    def emitted_at_cancel(self) -> int | None:
        return self._channel.emitted_at_cancel

    def next_event(self, timeout: float | None = None) -> TokenEvent | FinishEvent:
        """The next event; StopIteration after the FinishEvent; TimeoutError if none comes within `timeout`."""
        if self.finish is not None:
            raise StopIteration
        try:
            event = self._channel.events.get(timeout=timeout)
        except queue.Empty:
            raise TimeoutError(f"no event within {timeout} s") from None
        if isinstance(event, FinishEvent):
            self.finish = event
            self._finalizer.detach()
        return event

    def result(self, timeout: float | None = None) -> FinishEvent:
        """Drain the remaining events and return the FinishEvent."""
        while self.finish is None:
            self.next_event(timeout)
        return self.finish

    def __iter__(self) -> Generation:
        return self

    def __next__(self) -> TokenEvent | FinishEvent:
        return self.next_event()

    def __enter__(self) -> Generation:
        return self

    def __exit__(self, *exc) -> None:
        if self.finish is None:
            self.cancel()


@dataclass(eq=False)
class Request:
    """One generation inside the engine. `prompt[done:]` is still to be prefilled onto `state`."""

    channel: Channel
    tracker: RowTracker
    limit: int  # max_new_tokens; 0: prefill only (the FinishEvent carries the state and logits)
    top_k: int  # top alternatives per TokenEvent
    row: int  # the `row` field of its events
    prompt: torch.Tensor  # (T,) ids to run; empty when starting from (state, logits)
    state: list[torch.Tensor] | None  # the family's one-row state after prompt[:done]; None: the empty state
    logits: torch.Tensor | None = None  # (V,) after the last token taken in
    done: int = 0
    failed: str | None = field(default=None, repr=False)

    @property
    def remaining(self) -> int:
        return self.prompt.numel() - self.done

    @property
    def cancelled(self) -> bool:
        return self.channel.cancel_flag.is_set()


def make_request(model, tokenizer, wake, prompt=None, *, state=None, logits=None, context=None, sampling=None,
                 max_new_tokens: int | None = None, stop=None, top_alternatives: int = 5,
                 eos_token_id=FROM_CONFIG, row: int = 0) -> Request:
    """A checked Request, or InputError/SettingsError naming what is wrong; see Engine.submit."""
    device = model.device
    overrides = {"stop": stop}
    if max_new_tokens != 0:
        overrides["max_new_tokens"] = max_new_tokens
    settings = resolve_settings(sampling, overrides)
    if settings.stop and tokenizer is None:
        raise InputError("stop strings need a tokenizer: Engine(model, tokenizer=RwkvTokenizer...)")
    if not isinstance(top_alternatives, int) or top_alternatives < 0:
        raise InputError(f"top_alternatives must be an integer >= 0, got {top_alternatives!r}")
    vocab = model.config.vocab_size
    empty = torch.zeros(0, dtype=torch.long, device=device)  # (0,)
    ids = checked_ids(prompt, tokenizer, vocab, device, "prompt") if prompt is not None else empty  # (T,)
    given = context is not None and (isinstance(context, str) or len(context) > 0)
    before = checked_ids(context, tokenizer, vocab, device, "context") if given else empty  # (T0,)
    start_state = checked_state(state, model, device)
    start_logits = None
    if prompt is None:
        if logits is None or start_state is None:
            raise InputError("give a prompt, or a start: state= (a one-row state of the model's family) and logits=(V,) "
                             "after its last token")
        start_logits = checked_logits(logits, vocab, device)  # (V,)
    elif logits is not None:
        raise InputError("logits are a start's (no prompt): with a prompt, the prompt's own logits are used")
    sampler = build_sampler(model, settings, tokenizer, torch.cat([before, ids]).tolist())
    eos = resolve_eos(model.config, eos_token_id)  # an id or a list of ids, as transformers takes them
    limit = 0 if max_new_tokens == 0 else settings.max_new_tokens
    tracker = RowTracker(sampler, tokenizer, settings.stop, eos, limit)
    return Request(Channel(wake), tracker, limit, top_alternatives, row, ids, start_state, start_logits)


def build_sampler(model, settings, tokenizer, history: list[int]) -> Sampler:
    """The generation's own sampler, as generate() builds it: the repetition penalty sees the context and prompt."""
    exempt = None
    if tokenizer is not None and (settings.presence_penalty or settings.frequency_penalty):
        exempt = tokenizer.penalty_exempt_mask(model.config.vocab_size)  # (V,)
    return Sampler(settings, model.config.vocab_size, history, exempt, model.device)


def checked_ids(ids, tokenizer, vocab_size: int, device: torch.device, name: str) -> torch.Tensor:
    """(T,) token ids from text, a list or a tensor; one sequence, non-empty, inside the vocabulary."""
    ids = as_input_ids(ids, tokenizer, device)  # (B, T)
    if ids.size(0) != 1:
        raise InputError(f"{name} must be one sequence (the engine takes one generation per submit), "
                         f"got a batch of {ids.size(0)}")
    check_token_range(ids, vocab_size, name)
    return ids[0]  # (T,)


def checked_state(state, model, device: torch.device) -> list[torch.Tensor] | None:
    """A private copy of a one-row state, checked (once, here, where it enters the engine) for the family's
    layout, the device and finite values."""
    if state is None:
        return None
    family = family_of(model)
    family.check_state(state, model, 1, device)
    if not family.is_finite(state):
        raise InputError("state holds NaN or inf values")
    return family.clone(state)


def checked_logits(logits, vocab_size: int, device: torch.device) -> torch.Tensor:
    logits = torch.as_tensor(logits, device=device)
    if not logits.is_floating_point() or logits.numel() != vocab_size or logits.dim() > 2:
        raise InputError(f"logits must be float logits shaped ({vocab_size},) or (1, {vocab_size}), "
                         f"got {logits.dtype} {tuple(logits.shape)}")
    if not bool(torch.isfinite(logits).all()):
        raise InputError("logits hold NaN or inf values")
    return logits.detach().reshape(vocab_size).clone()  # (V,)
