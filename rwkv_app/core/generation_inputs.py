"""What generate() and stream_generate() take in, checked and brought to one form before the decode loop runs:
sampling settings per row, the prompt (ids, embeddings, or a resumed state's logits), eos ids, the length limit
(max_new_tokens or transformers' max_length) and num_return_sequences' row expansion.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Sequence

import torch

from ..models.rwkv4.config import eos_token_ids
from ..errors import InputError
from .sampling import SamplingSettings
from ..tokenizers.tokenizer import RwkvTokenizer

FROM_CONFIG = object()  # eos_token_id default: the config's, as in Hugging Face


@dataclass(frozen=True)
class RunOptions:
    """Everything about a run besides the sampling settings; `expanded` gives num_return_sequences rows each."""

    eos_token_id: Any = FROM_CONFIG
    pad_token_id: int | None = None
    state: list[torch.Tensor] | None = None
    attention_mask: Any = None
    criteria: Sequence = ()
    start_logits: torch.Tensor | None = None
    inputs_embeds: torch.Tensor | None = None  # (B, T, H): the prompt runs from these (transformers' inputs_embeds)
    max_length: int | None = None  # transformers': prompt + new tokens; max_new_tokens wins when both are given
    num_return_sequences: int = 1
    output_scores: bool = False
    output_logits: bool = False

    def expanded(self, n: int) -> "RunOptions":
        """Each row repeated n times in place (row i becomes rows i*n .. i*n+n-1), as transformers expands them."""
        def rows(t):
            return None if t is None else torch.as_tensor(t).repeat_interleave(n, dim=0)
        state = None if self.state is None else [s.repeat_interleave(n, dim=0) for s in self.state]
        return replace(self, state=state, attention_mask=rows(self.attention_mask),
                       start_logits=rows(self.start_logits), inputs_embeds=rows(self.inputs_embeds))


def resolve_eos(config, eos_token_id) -> tuple[int, ...]:
    """The eos ids, in order: the argument's (None: none; an int or a list, as transformers takes) or the config's."""
    value = config.eos_token_id if eos_token_id is FROM_CONFIG else eos_token_id
    try:
        eos_token_ids(value)
    except ValueError as err:
        raise InputError(str(err)) from None
    if value is None:
        return ()
    return tuple(dict.fromkeys(value)) if isinstance(value, (list, tuple)) else (value,)


def check_returns(n) -> int:
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise InputError(f"num_return_sequences must be an integer >= 1, got {n!r}")
    return n


def new_token_limit(max_new_tokens, max_length, prompt_length: int):
    """max_new_tokens as given, or transformers' max_length (prompt included) turned into it."""
    if max_new_tokens is not None or max_length is None:
        return max_new_tokens
    if not isinstance(max_length, int) or isinstance(max_length, bool) or max_length <= prompt_length:
        raise InputError(f"max_length ({max_length!r}) must be an integer above the prompt's length "
                         f"({prompt_length}); or set max_new_tokens")
    return max_length - prompt_length


def prompt_inputs(input_ids, tokenizer: RwkvTokenizer | None, opts: RunOptions, device: torch.device):
    """(B, T) ids for the returned sequences and the penalties, and the options with checked start logits or
    embeddings; T may be 0 when the prompt is embeddings or the run resumes from a state."""
    if opts.inputs_embeds is not None:
        if opts.start_logits is not None:
            raise InputError("pass inputs_embeds or start_logits, not both: a resumed run has no prompt to embed")
        embeds = opts.inputs_embeds
        if not isinstance(embeds, torch.Tensor) or embeds.dim() != 3 or 0 in embeds.shape[:2]:
            shape = tuple(embeds.shape) if isinstance(embeds, torch.Tensor) else type(embeds).__name__
            raise InputError(f"inputs_embeds must be a non-empty (batch, sequence, hidden) tensor, got {shape}")
        if input_ids is None:
            return torch.zeros(embeds.size(0), 0, dtype=torch.long, device=device), opts  # (B, 0)
        ids = as_input_ids(input_ids, tokenizer, device)  # (B, T)
        if ids.size(0) != embeds.size(0):
            raise InputError(f"input_ids has batch {ids.size(0)} but inputs_embeds has {embeds.size(0)}")
        return ids, opts
    if opts.start_logits is None:
        if input_ids is None:
            raise InputError("give input_ids (or a text prompt with a tokenizer), inputs_embeds, or a state "
                             "with start_logits")
        return as_input_ids(input_ids, tokenizer, device), opts  # (B, T)
    start_logits, ids = as_start(opts.start_logits, input_ids, tokenizer, opts.state, device)  # (B, V), (B, T)
    return ids, replace(opts, start_logits=start_logits)


def resolve_settings(sampling: SamplingSettings | None, overrides: dict) -> SamplingSettings:
    """`sampling` (or the defaults) with keyword overrides; None values mean "not given", as in HF."""
    if sampling is not None and not isinstance(sampling, SamplingSettings):
        raise InputError(f"sampling must be a SamplingSettings, got {type(sampling).__name__}")
    if "stop_strings" in overrides:
        overrides["stop"] = overrides.pop("stop_strings")
    return (sampling or SamplingSettings()).replace(**{k: v for k, v in overrides.items() if v is not None})


def row_settings(sampling, overrides: dict, batch: int) -> list[SamplingSettings]:
    """One SamplingSettings per row: a list as given (each with the overrides), or one shared, row i at seed + i."""
    if isinstance(sampling, (list, tuple)):
        if len(sampling) != batch:
            raise InputError(f"sampling has {len(sampling)} settings for a batch of {batch} rows: give one per row")
        return [resolve_settings(s, dict(overrides)) for s in sampling]
    settings = resolve_settings(sampling, dict(overrides))
    if settings.seed is None:
        return [settings] * batch
    return [settings.replace(seed=(settings.seed + i) % 2 ** 64) if i else settings for i in range(batch)]


def as_start(start_logits, input_ids, tokenizer: RwkvTokenizer | None, state, device: torch.device):
    """Checked (B, V) start logits and (B, T) context ids (T may be 0) for a run that resumes without a prefill."""
    start_logits = torch.as_tensor(start_logits, device=device)
    if start_logits.dim() == 1:
        start_logits = start_logits[None]  # (1, V)
    if start_logits.dim() != 2 or not start_logits.is_floating_point() or start_logits.size(0) == 0:
        raise InputError(f"start_logits must be float logits shaped (batch, vocab), got "
                         f"{start_logits.dtype} {tuple(start_logits.shape)}")
    batch = start_logits.size(0)
    if not isinstance(state, (list, tuple)) or not state or not isinstance(state[0], torch.Tensor) \
            or state[0].size(0) != batch:
        raise InputError(f"start_logits needs the state they came from: state=[the family's tensors, batch {batch}]")
    if input_ids is None or (not isinstance(input_ids, str) and torch.as_tensor(input_ids).numel() == 0):
        return start_logits, torch.zeros(batch, 0, dtype=torch.long, device=device)  # (B, 0)
    context = as_input_ids(input_ids, tokenizer, device)  # (B or 1, T)
    if context.size(0) not in (1, batch):
        raise InputError(f"input_ids (context) has batch {context.size(0)} but start_logits has {batch}")
    return start_logits, context.expand(batch, -1)  # (B, T)


def as_input_ids(input_ids, tokenizer: RwkvTokenizer | None, device: torch.device) -> torch.Tensor:
    if isinstance(input_ids, str):
        if tokenizer is None:
            raise InputError("a text prompt needs a tokenizer: pass tokenizer=RwkvTokenizer.from_pretrained(...)")
        input_ids = tokenizer.encode(input_ids)
    input_ids = torch.as_tensor(input_ids, device=device)
    if input_ids.dim() == 1:
        input_ids = input_ids[None]  # (1, T)
    if input_ids.dim() != 2 or input_ids.size(1) == 0 or input_ids.dtype.is_floating_point:
        raise InputError(f"input_ids must be non-empty integer token ids shaped (batch, sequence), "
                         f"got {input_ids.dtype} {tuple(input_ids.shape)}")
    return input_ids.long()
