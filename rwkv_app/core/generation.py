"""`model.generate` and `model.stream_generate`: prefill the prompt in one parallel forward, then decode one
token at a time on the recurrent state.

One loop serves both: per step it picks each row's token with that row's `Sampler`, records it (eos, stop
strings, streamed text), asks the stopping criteria, and feeds the tokens back. `generate` returns prompt +
new tokens like Hugging Face; `stream_generate` yields a `TokenEvent` per token and a `FinishEvent` per row.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator, Sequence

import torch

from ..errors import InputError
from .generation_inputs import (FROM_CONFIG, RunOptions, as_input_ids, as_start, check_returns,  # noqa: F401
                                new_token_limit, prompt_inputs, resolve_eos, resolve_settings, row_settings)
from .sampling import Sampler, SamplingSettings, token_probs
from .stopping import StopStrings, stopped_rows
from ..tokenizers.tokenizer import RwkvTokenizer
LENGTH, EOS, STOP, CRITERIA = "length", "eos", "stop", "criteria"  # finish reasons


@dataclass(frozen=True)
class TokenEvent:
    """One generated token. `prob` and `top` are the model's own probabilities (softmax of its logits,
    before penalties, temperature or truncation); `delta` is the newly shown text (None without a tokenizer)."""

    row: int
    index: int  # position among this row's generated tokens
    token: int
    delta: str | None
    prob: float
    top: tuple[tuple[int, float], ...]  # (token id, probability), most likely first


@dataclass(frozen=True)
class FinishEvent:
    """A row is done. `state` has taken in the prompt and every generated token (a stop string's too);
    its tensors are the family's state with batch 1 (batch first), and `logits` (V,) are the model's after the last token, so a caller can
    resume from (state, logits) without a forward. `text` is the whole generated text, cut before a stop string."""

    row: int
    reason: str  # "length" | "eos" | "stop" | "criteria"
    tokens: tuple[int, ...]
    delta: str | None  # text released at the end (held-back bytes or a possible stop-string start)
    text: str | None
    seed: int | None  # the sampler's seed (None when greedy): pass it back to repeat the run
    state: list[torch.Tensor] | None = field(default=None, repr=False)
    logits: torch.Tensor | None = field(default=None, repr=False)


@dataclass
class GenerationOutput:
    """`generate(..., return_dict_in_generate=True)`: sequences (B, T + N), the final state, per-row results;
    with output_scores / output_logits, transformers' `scores` / `logits`: one (B, V) float32 tensor per step."""

    sequences: torch.LongTensor
    state: list[torch.Tensor]
    finish_reasons: list[str]
    texts: list[str] | None
    seeds: list[int | None]
    scores: tuple[torch.Tensor, ...] | None = None  # processed: what each token was picked from
    logits: tuple[torch.Tensor, ...] | None = None  # raw: the model's


class RowTracker:
    """One sequence's bookkeeping: its sampler, its streamed text, its stop strings, its finish reason."""

    def __init__(self, sampler: Sampler, tokenizer: RwkvTokenizer | None, stops: Sequence[str],
                 eos: tuple[int, ...], limit: int | None = None):
        self.sampler, self.eos, self.limit = sampler, frozenset(eos), limit  # limit: this row's max_new_tokens
        self.decoder = tokenizer.stream_decoder(skip_special_tokens=True) if tokenizer is not None else None
        self.stops = StopStrings(stops)
        self.tokens: list[int] = []
        self.text: list[str] = []
        self.reason: str | None = None

    def record(self, token: int) -> str | None:
        """Take in a generated token; returns its newly shown text and sets `reason` on eos or a stop string."""
        self.tokens.append(token)
        self.sampler.observe(token)
        if token in self.eos:
            self.reason = EOS
            return None if self.decoder is None else ""
        if self.decoder is None:
            return None
        shown = self.stops.feed(self.decoder.step(token))
        self.text.append(shown)
        if self.stops.stopped:
            self.reason = STOP
        return shown

    def finish(self, reason: str) -> str | None:
        """Close the row (unless already closed); returns the text it still held."""
        self.reason = self.reason or reason
        if self.decoder is None:
            return None
        tail = self.stops.feed(self.decoder.flush()) + self.stops.flush()
        self.text.append(tail)
        return tail


class GenerationMixin:
    @torch.no_grad()
    def generate(self, input_ids=None, max_new_tokens: int | None = None, stopping_criteria=(), *,
                 sampling: SamplingSettings | Sequence[SamplingSettings] | None = None,
                 tokenizer: RwkvTokenizer | None = None,
                 eos_token_id=FROM_CONFIG, pad_token_id: int | None = None, state=None, attention_mask=None,
                 return_dict_in_generate: bool = False, start_logits: torch.Tensor | None = None,
                 inputs_embeds: torch.Tensor | None = None, max_length: int | None = None,
                 num_return_sequences: int = 1, output_scores: bool = False, output_logits: bool = False,
                 **settings):
        """Prompt + new tokens, (B, T + N), as Hugging Face returns them; rows that finish early are padded
        with pad_token_id (default: the config's, else the first eos id).

        Sampling settings come from `sampling` (a SamplingSettings, e.g. a preset) with keyword overrides:
        do_sample, temperature, top_k, top_p, min_p, typical_p, repetition_penalty, presence_penalty,
        frequency_penalty, penalty_decay, banned_tokens, logit_bias, seed, stop (or stop_strings; needs
        `tokenizer`). Row i of a batch samples with seed + i; `sampling` may instead be a list with one
        SamplingSettings per row, each row then sampling with exactly its own settings (seed, length, stops).
        A row stops at eos (`eos_token_id`: an id or a list of ids), at a stop string, when a criterion
        `(input_ids, scores) -> bool | (B,) bool` says so, or after max_new_tokens (or transformers' max_length,
        prompt included). With return_dict_in_generate=True: a GenerationOutput carrying the final state too,
        and the per-step `scores` / `logits` when output_scores / output_logits.

        transformers' meanings: num_return_sequences=n repeats each row n times (rows i*n .. i*n+n-1);
        inputs_embeds (B, T, H) is the prompt instead of ids, and the sequences then hold only the new tokens.

        Resuming without a prefill: pass `state` (batch B) and `start_logits` (B, V), the logits after the
        last token the state took in. `input_ids` are then context only, already in the state and not run
        again (the repetition penalty's prompt and the head of the returned sequences); None for none.
        """
        opts = RunOptions(eos_token_id, pad_token_id, state, attention_mask, list(stopping_criteria or ()),
                          start_logits, inputs_embeds, max_length, num_return_sequences, output_scores, output_logits)
        run = self._start(input_ids, tokenizer, sampling, dict(settings, max_new_tokens=max_new_tokens), opts)
        finished: dict[int, FinishEvent] = {}
        for events in run.steps(want_state=return_dict_in_generate, top_k=None):
            finished.update((e.row, e) for e in events if isinstance(e, FinishEvent))
        if not return_dict_in_generate:
            return run.sequences
        rows = [finished[i] for i in range(len(finished))]
        return GenerationOutput(sequences=run.sequences, state=run.final_state,
                                finish_reasons=[r.reason for r in rows],
                                texts=None if tokenizer is None else [r.text for r in rows],
                                seeds=[r.seed for r in rows],
                                scores=tuple(run.scores) if output_scores else None,
                                logits=tuple(run.raw_logits) if output_logits else None)

    @torch.no_grad()
    def stream_generate(self, input_ids=None, max_new_tokens: int | None = None, stopping_criteria=(), *,
                        sampling: SamplingSettings | Sequence[SamplingSettings] | None = None,
                        tokenizer: RwkvTokenizer | None = None,
                        eos_token_id=FROM_CONFIG, pad_token_id: int | None = None, state=None, attention_mask=None,
                        top_alternatives: int = 5, start_logits: torch.Tensor | None = None,
                        inputs_embeds: torch.Tensor | None = None, max_length: int | None = None,
                        num_return_sequences: int = 1, **settings) -> Iterator[TokenEvent | FinishEvent]:
        """Like `generate`, yielding a TokenEvent per token as it comes and a FinishEvent per row at its end.

        `input_ids` may be a string when a tokenizer is given. Each row's tokens equal generate()'s.
        Each FinishEvent carries the row's final state and the logits after its last token.
        """
        opts = RunOptions(eos_token_id, pad_token_id, state, attention_mask, list(stopping_criteria or ()),
                          start_logits, inputs_embeds, max_length, num_return_sequences)
        run = self._start(input_ids, tokenizer, sampling, dict(settings, max_new_tokens=max_new_tokens), opts)
        for events in run.steps(want_state=True, top_k=max(top_alternatives, 0)):
            yield from events

    def _start(self, input_ids, tokenizer, sampling, overrides: dict, opts: RunOptions) -> GenerationRun:
        if tokenizer is not None and not isinstance(tokenizer, RwkvTokenizer):
            raise InputError(f"tokenizer must be an RwkvTokenizer, got {type(tokenizer).__name__}")
        input_ids, opts = prompt_inputs(input_ids, tokenizer, opts, self.device)  # (B, T)
        n = check_returns(opts.num_return_sequences)
        if n > 1:
            input_ids, opts = input_ids.repeat_interleave(n, dim=0), opts.expanded(n)  # (B*n, T)
            if isinstance(sampling, (list, tuple)):
                sampling = [s for s in sampling for _ in range(n)]
        prompt_length = input_ids.size(1) if opts.inputs_embeds is None else opts.inputs_embeds.size(1)
        overrides["max_new_tokens"] = new_token_limit(overrides.get("max_new_tokens"), opts.max_length, prompt_length)
        per_row = row_settings(sampling, overrides, input_ids.size(0))
        if any(s.stop for s in per_row) and tokenizer is None:
            raise InputError("stop strings need a tokenizer: generate(..., stop=[...], tokenizer=RwkvTokenizer...)")
        eos = resolve_eos(self.config, opts.eos_token_id)
        rows = [RowTracker(self._sampler(s, input_ids[i], tokenizer), tokenizer, s.stop, eos, s.max_new_tokens)
                for i, s in enumerate(per_row)]
        pad = opts.pad_token_id if opts.pad_token_id is not None else getattr(self.config, "pad_token_id", None)
        fill = pad if pad is not None else (eos[0] if eos else 0)
        longest = max(s.max_new_tokens for s in per_row)
        return GenerationRun(self, input_ids, rows, longest, fill, opts)

    def _sampler(self, settings: SamplingSettings, prompt: torch.Tensor, tokenizer: RwkvTokenizer | None) -> Sampler:
        exempt = None
        if tokenizer is not None and (settings.presence_penalty or settings.frequency_penalty):
            exempt = tokenizer.penalty_exempt_mask(self.config.vocab_size)  # (V,)
        return Sampler(settings, self.config.vocab_size, prompt.tolist(), exempt, self.device)

    def _next_logits(self, tokens: torch.Tensor, state: list[torch.Tensor]):
        """One decode step: (B,) tokens on the state -> (B, V) logits and the new state."""
        out = self(input_ids=tokens[:, None], state=state, use_cache=True)
        return out.logits[:, -1], out.state  # (B, V)


class GenerationRun:
    """The decode loop over a batch; `steps()` yields each step's events. Rows that finish are fed `fill`."""

    def __init__(self, model, input_ids: torch.Tensor, rows: list[RowTracker], max_new_tokens: int, fill: int,
                 opts: RunOptions):
        self.model, self.rows, self.criteria, self.fill = model, rows, list(opts.criteria), fill
        self.scores: list[torch.Tensor] | None = [] if opts.output_scores else None  # per step (B, V)
        self.raw_logits: list[torch.Tensor] | None = [] if opts.output_logits else None  # per step (B, V)
        B, T = input_ids.shape
        self.prompt_len, self.max_new_tokens = T, max_new_tokens
        self.buffer = torch.full((B, T + max_new_tokens), fill, dtype=torch.long, device=input_ids.device)  # (B, T+N)
        self.buffer[:, :T] = input_ids
        self.steps_done = 0
        self.final_state: list[torch.Tensor] | None = None
        if opts.start_logits is not None:  # resuming: the state already took in input_ids
            self.logits, self.state = opts.start_logits, opts.state  # (B, V)
            return
        prompt = dict(input_ids=input_ids) if opts.inputs_embeds is None else dict(inputs_embeds=opts.inputs_embeds)
        out = model(**prompt, state=opts.state, use_cache=True, logits_to_keep=1, attention_mask=opts.attention_mask)
        self.logits, self.state = out.logits[:, -1], out.state  # (B, V)

    @property
    def sequences(self) -> torch.LongTensor:
        return self.buffer[:, :self.prompt_len + self.steps_done]  # (B, T + n)

    def steps(self, want_state: bool, top_k: int | None) -> Iterator[list[TokenEvent | FinishEvent]]:
        """Each step's events; `top_k` None: no TokenEvents (generate), else each with its top k alternatives."""
        active = list(range(len(self.rows)))
        for step in range(self.max_new_tokens):
            tokens = self.choose(active)  # (B,)
            self.buffer[:, self.prompt_len + step] = tokens
            self.steps_done = step + 1
            events = self.record(active, tokens, step, top_k)
            done = self.closing_rows(active, step)
            active = [i for i in active if i not in done]
            if want_state or active:
                self.logits, self.state = self.model._next_logits(tokens, self.state)  # (B, V)
            if want_state:
                self.keep_state(done)
            yield events + [self.finish_event(i, want_state) for i in done]
            if not active:
                return

    def choose(self, active: list[int]) -> torch.Tensor:
        """(B,) next tokens: each active row's sampler on its logits; finished rows get `fill`. Keeps the step's
        raw logits and processed scores when asked (a finished row's scores: its raw logits, as float32)."""
        if self.raw_logits is not None:
            self.raw_logits.append(self.logits.float().clone())  # (B, V)
        if len(self.rows) == 1 and active and self.scores is None:
            return self.rows[0].sampler.choose(self.logits[0]).view(1)  # (1,)
        tokens = torch.full((len(self.rows),), self.fill, dtype=torch.long, device=self.logits.device)  # (B,)
        scores = self.logits.float().clone() if self.scores is not None else None  # (B, V)
        for i in active:
            processed = self.rows[i].sampler.process(self.logits[i])  # (V,)
            tokens[i] = self.rows[i].sampler.pick(processed)
            if scores is not None:
                scores[i] = processed
        if scores is not None:
            self.scores.append(scores)
        return tokens

    def record(self, active: list[int], tokens: torch.Tensor, step: int, top_k: int | None) -> list[TokenEvent]:
        ids = tokens.tolist()
        deltas = {i: self.rows[i].record(ids[i]) for i in active}
        if top_k is None:
            return []
        probs, top_ids, top_probs = (t.tolist() for t in token_probs(self.logits, tokens, top_k))
        return [TokenEvent(row=i, index=step, token=ids[i], delta=deltas[i], prob=probs[i],
                           top=tuple(zip(top_ids[i], top_probs[i]))) for i in active]

    def closing_rows(self, active: list[int], step: int) -> list[int]:
        """Rows that end at this step: eos or a stop string (already marked), a criterion, or the length limit."""
        if self.criteria:
            stopped = stopped_rows(self.criteria, self.sequences, self.logits).tolist()
            for i in active:
                if stopped[i] and self.rows[i].reason is None:
                    self.rows[i].reason = CRITERIA
        at_limit = [step + 1 >= (self.rows[i].limit or self.max_new_tokens) for i in range(len(self.rows))]
        return [i for i in active if self.rows[i].reason is not None or at_limit[i]]

    def keep_state(self, done: list[int]) -> None:
        """Copy the rows that just finished out of the running state, which goes on taking fill tokens."""
        if not done:
            return
        if self.final_state is None:
            self.final_state = self.state if len(self.rows) == 1 else [s.clone() for s in self.state]
        for final, running in zip(self.final_state, self.state):
            if final is not running:
                final[done] = running[done]

    def finish_event(self, i: int, want_state: bool) -> FinishEvent:
        row = self.rows[i]
        tail = row.finish(LENGTH)
        state = [s[i:i + 1] for s in self.final_state] if want_state else None
        logits = self.logits[i].clone() if want_state else None  # (V,) after this row's last token
        text = None if row.decoder is None else "".join(row.text)
        return FinishEvent(row=i, reason=row.reason, tokens=tuple(row.tokens), delta=tail, text=text,
                           seed=row.sampler.seed, state=state, logits=logits)
