"""Stopping criteria and stop strings.

A stopping criterion is any callable `(input_ids, scores) -> bool`; the `StoppingCriteria` base class is
for subclassing, so the RWKV documentation's `RwkvStoppingCriteria(StoppingCriteria)` runs unchanged with
`from rwkv_app import StoppingCriteria`. `StopStrings` watches generated text for stop strings.
"""
from __future__ import annotations

from typing import Iterable

import torch


class StoppingCriteria:
    """Subclass and implement `__call__`; return True to stop (all rows), or a (B,) bool tensor (those rows)."""

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor, **kwargs) -> bool:
        raise NotImplementedError(f"{type(self).__name__} must implement __call__(input_ids, scores)")


def stopped_rows(criteria: Iterable, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.Tensor:
    """(B,) bool: the rows some criterion stops. A plain True stops every row, as in Hugging Face."""
    stopped = torch.zeros(input_ids.size(0), dtype=torch.bool, device=input_ids.device)  # (B,)
    for criterion in criteria:
        verdict = criterion(input_ids, scores)
        if isinstance(verdict, torch.Tensor):
            stopped |= verdict.to(device=stopped.device, dtype=torch.bool).reshape(-1).expand_as(stopped)
        elif verdict:
            stopped[:] = True
    return stopped


class StopStrings:
    """Feed text pieces; get back the text that is safe to show, and whether a stop string appeared.

    Text that could be the start of a stop string is held back until the next piece settles it, so a
    stop string's text is never shown, even when it arrives split across tokens.
    """

    def __init__(self, stops: Iterable[str]):
        self.stops = tuple(stops)
        self.held = ""
        self.stopped = False

    def feed(self, piece: str) -> str:
        if self.stopped:
            return ""
        self.held += piece
        found = [i for i in (self.held.find(stop) for stop in self.stops) if i >= 0]
        if found:
            self.stopped = True
            shown, self.held = self.held[:min(found)], ""
            return shown
        keep = max((k for stop in self.stops for k in range(1, len(stop)) if self.held.endswith(stop[:k])), default=0)
        shown, self.held = self.held[:len(self.held) - keep], self.held[len(self.held) - keep:]
        return shown

    def flush(self) -> str:
        """At the end of generation: held text that turned out not to be a stop string."""
        shown, self.held = ("" if self.stopped else self.held), ""
        return shown
