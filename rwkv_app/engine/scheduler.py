"""One engine step: retire cancelled generations, prefill admitted prompts within a token budget, then ONE
batched decode forward for every running generation.

Runs on the engine's thread only. A forward that raises is retried row by row, so a failure stays with the
generation that caused it; a row whose logits are not finite ends alone with an ErrorFinish.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..core.generation import LENGTH, FinishEvent, TokenEvent
from ..core.batch_sampling import choose_rows
from ..core.sampling import token_probs
from ..models.family import family_of
from .batch import DecodeBatch, finite_rows
from .requests import CANCELLED, ERROR, ErrorFinish, Request

NON_FINITE = "the model's logits hold NaN or inf"


@dataclass
class Counters:
    steps: int = 0  # steps that did any work
    decode_forwards: int = 0
    decode_rows: int = 0  # tokens decoded, summed over steps
    prefill_forwards: int = 0
    prefill_tokens: int = 0
    finished: int = 0
    errors: int = 0


def describe(err: BaseException) -> str:
    return f"{type(err).__name__}: {err}"


class Scheduler:
    def __init__(self, model, prefill_budget: int):
        self.model, self.prefill_budget = model, prefill_budget
        self.family = family_of(model)
        self.prefilling: list[Request] = []  # admitted, prompt not yet fully taken in (oldest first)
        self.batch = DecodeBatch(self.family)
        self.counters = Counters()

    @property
    def active(self) -> int:
        return len(self.prefilling) + len(self.batch)

    def admit(self, requests: list[Request]) -> None:
        self.prefilling += requests

    def step(self) -> None:
        if not self.active:
            return
        self.counters.steps += 1
        self.retire_cancelled()
        self.prefill()
        self.decode()

    # ---- endings -------------------------------------------------------------------------------------
    def finish(self, request: Request, state=None, logits=None, reason: str = LENGTH) -> None:
        """Send the FinishEvent; `state` (one row) and `logits` (V,) after the last token, when known."""
        tracker = request.tracker
        tail = tracker.finish(reason)
        text = None if tracker.decoder is None else "".join(tracker.text)
        request.channel.put(FinishEvent(row=request.row, reason=tracker.reason, tokens=tuple(tracker.tokens),
                                       delta=tail, text=text, seed=tracker.sampler.seed, state=state, logits=logits))
        self.counters.finished += 1

    def fail(self, request: Request, message: str) -> None:
        """End one generation with an ErrorFinish; the others go on."""
        request.failed = message
        tracker = request.tracker
        try:
            tail = tracker.finish(ERROR)
        except Exception:  # a broken decoder must not take the scheduler down with it
            tail = ""
        text = None if tracker.decoder is None else "".join(tracker.text)
        request.channel.put(ErrorFinish(row=request.row, reason=ERROR, tokens=tuple(tracker.tokens), delta=tail,
                                       text=text, seed=tracker.sampler.seed, error=message))
        self.counters.errors += 1

    def retire(self, requests: list[Request]) -> None:
        """Requests cancelled before they were admitted: no state to give back."""
        for request in requests:
            self.finish(request, reason=CANCELLED)

    def retire_cancelled(self) -> None:
        self.retire([r for r in self.prefilling if r.cancelled])
        self.prefilling = [r for r in self.prefilling if not r.cancelled]
        keep = []
        for i, request in enumerate(self.batch.requests):
            if request.cancelled:
                self.finish(request, self.family.row(self.batch.state, i), self.batch.logits[i].clone(), CANCELLED)
            else:
                keep.append(i)
        self.batch.keep(keep)

    def cancel_all(self) -> None:
        """Shutting down: every admitted generation ends as cancelled (running ones with their state)."""
        self.retire(self.prefilling)
        for i, request in enumerate(self.batch.requests):
            self.finish(request, self.family.row(self.batch.state, i), self.batch.logits[i].clone(), CANCELLED)
        self.prefilling, self.batch = [], DecodeBatch(self.family)

    def fail_all(self, message: str) -> None:
        for request in self.prefilling + self.batch.requests:
            self.fail(request, message)
        self.prefilling, self.batch = [], DecodeBatch(self.family)

    # ---- forward, isolated per row when it raises ------------------------------------------------------
    def forward(self, ids: torch.Tensor, state: list[torch.Tensor]):
        """(B, T) ids on a B-row state -> (B, V) last logits, new state, {row: error} for failed rows."""
        try:
            out = self.model(input_ids=ids, state=state, use_cache=True, logits_to_keep=1)
            return out.logits[:, -1], out.state, {}
        except Exception as err:
            if ids.size(0) == 1:
                return None, None, {0: describe(err)}
        results = [self.forward(ids[i:i + 1], self.family.row(state, i)) for i in range(ids.size(0))]
        errors = {i: r[2][0] for i, r in enumerate(results) if r[2]}
        good = next(r for r in results if not r[2]) if len(errors) < len(results) else None
        if good is None:
            return None, None, errors
        logits = torch.cat([good[0] if r[2] else r[0] for r in results])  # (B, V); failed rows are dropped later
        states = self.family.stack([good[1] if r[2] else r[1] for r in results])  # B rows
        return logits, states, errors

    def bad_rows(self, logits: torch.Tensor | None, errors: dict[int, str], size: int) -> dict[int, str]:
        """Rows that raised, plus rows whose logits are not finite."""
        if logits is None:
            return {i: errors.get(i, "the forward failed") for i in range(size)}
        finite = finite_rows(logits)
        return {**{i: NON_FINITE for i in range(size) if not finite[i]}, **errors}

    # ---- prefill ---------------------------------------------------------------------------------------
    def prefill(self) -> None:
        """Take in up to `prefill_budget` prompt tokens, oldest request first; equal-length chunks share a forward."""
        budget, plan = self.prefill_budget, {}
        for request in self.prefilling:
            take = min(request.remaining, budget)
            if take > 0:
                plan.setdefault(take, []).append(request)
                budget -= take
        for take, group in plan.items():
            self.prefill_group(group, take)
        ready = [r for r in self.prefilling if r.remaining == 0 and r.failed is None]
        self.prefilling = [r for r in self.prefilling if r.remaining > 0 and r.failed is None]
        self.start(ready)

    def prefill_group(self, group: list[Request], take: int) -> None:
        ids = torch.stack([r.prompt[r.done:r.done + take] for r in group])  # (G, take)
        state = self.family.stack([r.state if r.state is not None else self.empty_state() for r in group])  # G rows
        logits, state, errors = self.forward(ids, state)
        self.counters.prefill_forwards += 1
        self.counters.prefill_tokens += ids.numel()
        bad = self.bad_rows(logits, errors, len(group))
        for g, request in enumerate(group):
            if g in bad:
                self.fail(request, f"prefill failed: {bad[g]}")
                continue
            request.state, request.logits = self.family.row(state, g), logits[g].clone()  # one row, (V,)
            request.done += take

    def empty_state(self) -> list[torch.Tensor]:
        return self.family.empty_state(self.model, 1)  # one row

    def start(self, ready: list[Request]) -> None:
        """Prompts fully taken in join the running batch; prefill-only requests finish here."""
        joining = []
        for request in ready:
            if request.limit == 0:
                self.finish(request, request.state, request.logits)
            else:
                joining.append(request)
        self.batch.join(joining)

    # ---- decode ----------------------------------------------------------------------------------------
    def decode(self) -> None:
        """Every running row's token is chosen (one batched call, each row with its own sampler), then one forward
        takes all of them in."""
        tokens = self.sample()  # (B,)
        if tokens is None:
            return
        failed = self.emit(tokens)
        batch = self.batch
        logits, state, errors = self.forward(tokens[:, None], batch.state)
        self.counters.decode_forwards += 1
        self.counters.decode_rows += len(batch)
        bad = {**self.bad_rows(logits, errors, len(batch)), **failed}
        keep = []
        for i, request in enumerate(batch.requests):
            if i in bad:
                self.fail(request, bad[i])
            elif request.tracker.reason is not None or len(request.tracker.tokens) >= request.limit:
                self.finish(request, self.family.row(state, i), logits[i].clone())
            else:
                keep.append(i)
        if logits is not None:
            batch.update(logits, state)
        batch.keep(keep)

    def sample(self) -> torch.Tensor | None:
        """(B,) the running rows' next tokens, chosen for all rows at once (core/batch_sampling.py); if that
        raises, row by row with each row's own sampler, so a row whose sampler raises fails and leaves alone."""
        try:
            return choose_rows([r.tracker.sampler for r in self.batch.requests], self.batch.logits)  # (B,)
        except Exception:
            pass
        picks, keep = [], []
        for i, request in enumerate(self.batch.requests):
            try:
                picks.append(request.tracker.sampler.choose(self.batch.logits[i]).view(1))  # (1,)
                keep.append(i)
            except Exception as err:
                self.fail(request, f"sampling failed: {describe(err)}")
        self.batch.keep(keep)
        return torch.cat(picks) if picks else None  # (B,)

    def emit(self, tokens: torch.Tensor) -> dict[int, str]:
        """Record each row's token and hand out its TokenEvent; returns the rows whose bookkeeping raised."""
        batch, failed = self.batch, {}
        k = max(r.top_k for r in batch.requests)
        probs, top_ids, top_probs = (t.tolist() for t in token_probs(batch.logits, tokens, k))
        for i, (request, token) in enumerate(zip(batch.requests, tokens.tolist())):
            index = len(request.tracker.tokens)
            try:
                delta = request.tracker.record(token)
            except Exception as err:
                failed[i] = f"recording token {token} failed: {describe(err)}"
                continue
            top = tuple(zip(top_ids[i][:request.top_k], top_probs[i][:request.top_k]))
            request.channel.put(TokenEvent(row=request.row, index=index, token=token, delta=delta, prob=probs[i],
                                          top=top))
        return failed
