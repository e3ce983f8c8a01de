"""`model.generate`: prefill the prompt in one parallel forward, then decode one token at a time on the state.

Sampling here is the small core (greedy, temperature, top-k, top-p); richer samplers build on the same loop.
"""
from __future__ import annotations

import torch

from .errors import InputError
from .stopping import should_stop

FROM_CONFIG = object()  # eos_token_id default: the config's, as in Hugging Face


def logits_to_probs(logits: torch.Tensor, temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0) -> torch.Tensor:
    logits = logits.float() / max(temperature, 1e-6)  # (B, V)
    if top_k and top_k < logits.size(-1):
        kth = torch.topk(logits, top_k, dim=-1).values[:, -1:]  # (B, 1)
        logits = logits.masked_fill(logits < kth, float("-inf"))
    probs = torch.softmax(logits, dim=-1)  # (B, V)
    if top_p < 1.0:
        sorted_probs, order = probs.sort(dim=-1, descending=True)  # (B, V)
        drop = sorted_probs.cumsum(-1) - sorted_probs > top_p  # (B, V) keep the smallest set reaching top_p
        probs = probs.scatter(-1, order, sorted_probs.masked_fill(drop, 0.0))
        probs = probs / probs.sum(-1, keepdim=True)
    return probs


def next_tokens(logits: torch.Tensor, do_sample: bool, temperature: float, top_k: int, top_p: float,
                generator: torch.Generator | None) -> torch.Tensor:
    if not do_sample:
        return logits.argmax(dim=-1)  # (B,)
    probs = logits_to_probs(logits, temperature, top_k, top_p)  # (B, V)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)  # (B,)


def check_generate_args(max_new_tokens: int, temperature: float, top_k: int, top_p: float) -> None:
    if not isinstance(max_new_tokens, int) or max_new_tokens < 1:
        raise InputError(f"max_new_tokens must be a positive integer, got {max_new_tokens!r}")
    if temperature < 0:
        raise InputError(f"temperature must be >= 0, got {temperature}")
    if not 0 < top_p <= 1:
        raise InputError(f"top_p must be in (0, 1], got {top_p}")
    if top_k < 0:
        raise InputError(f"top_k must be >= 0 (0 disables it), got {top_k}")


class GenerationMixin:
    @torch.inference_mode()
    def generate(self, input_ids, max_new_tokens: int = 20, stopping_criteria=(), do_sample: bool = False,
                 temperature: float = 1.0, top_p: float = 1.0, top_k: int = 0, eos_token_id=FROM_CONFIG,
                 state=None, seed: int | None = None, **unused) -> torch.LongTensor:
        """Returns prompt + new tokens, (B, T + N). Stops at eos (all rows), a criterion, or max_new_tokens."""
        if unused:
            raise InputError(f"generate() got unknown arguments: {sorted(unused)}")
        check_generate_args(max_new_tokens, temperature, top_k, top_p)
        do_sample = do_sample and temperature > 0
        if eos_token_id is FROM_CONFIG:
            eos_token_id = self.config.eos_token_id
        generator = torch.Generator(device=self.device).manual_seed(seed) if seed is not None else None
        input_ids = torch.as_tensor(input_ids, device=self.device)
        out = self(input_ids=input_ids, state=state, use_cache=True, logits_to_keep=1)
        tokens, finished = input_ids, torch.zeros(input_ids.size(0), dtype=torch.bool, device=input_ids.device)
        for _ in range(max_new_tokens):
            scores = out.logits[:, -1]  # (B, V)
            token = next_tokens(scores, do_sample, temperature, top_k, top_p, generator)  # (B,)
            if eos_token_id is not None:
                token = token.masked_fill(finished, eos_token_id)
                finished |= token == eos_token_id
            tokens = torch.cat([tokens, token[:, None]], dim=1)  # (B, T + n)
            if bool(finished.all()) or should_stop(stopping_criteria, tokens, scores):
                break
            out = self(input_ids=token[:, None], state=out.state, use_cache=True)
        return tokens
