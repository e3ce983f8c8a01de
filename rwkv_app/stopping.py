"""Stopping criteria: any callable `(input_ids, scores) -> bool` works; this base class is for subclassing.

The RWKV documentation's `RwkvStoppingCriteria(StoppingCriteria)` runs unchanged with
`from rwkv_app import StoppingCriteria`.
"""
from __future__ import annotations

import torch


class StoppingCriteria:
    """Subclass and implement `__call__`; return True to stop (for any row: the whole batch stops)."""

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor, **kwargs) -> bool:
        raise NotImplementedError(f"{type(self).__name__} must implement __call__(input_ids, scores)")


class MaxLengthCriteria(StoppingCriteria):
    def __init__(self, max_length: int):
        self.max_length = max_length

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor, **kwargs) -> bool:
        return input_ids.shape[-1] >= self.max_length


def should_stop(criteria, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> bool:
    """A criterion may return a bool or a per-row bool tensor (as newer HF criteria do): stop when all rows say so."""
    for criterion in criteria:
        verdict = criterion(input_ids, scores)
        if isinstance(verdict, torch.Tensor):
            verdict = bool(verdict.all())
        if verdict:
            return True
    return False
