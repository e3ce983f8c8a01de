"""Kept states: each node's RNN state after its tokens and the logits after its last token, under a budget.

An entry is the model family's one-row state plus (V,) float32 logits, so generating from a node needs no forward.
Over budget (entries or bytes), the least recently used entries are dropped, never a pinned one (the root's,
and those of state roots, which nothing could recompute); a dropped state is recomputed on demand from the nearest kept ancestor (see SessionTree.state_at). Entries live on
`device`, which may differ from the model's (states on CPU while the model runs on a GPU).
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import torch

from ..errors import InputError
from ..models.family import ModelFamily


@dataclass(frozen=True)
class StateBudget:
    """The most kept entries (the root's included) and the most bytes they may take together."""

    max_states: int = 256
    max_bytes: int = 256 * 2 ** 20

    def __post_init__(self) -> None:
        if not isinstance(self.max_states, int) or self.max_states < 2:
            raise InputError(f"max_states must be an integer >= 2 (the root and one more), got {self.max_states!r}")
        if not isinstance(self.max_bytes, int) or self.max_bytes <= 0:
            raise InputError(f"max_bytes must be a positive integer, got {self.max_bytes!r}")


@dataclass
class Kept:
    state: list[torch.Tensor]  # the family's one-row state
    logits: torch.Tensor | None  # (V,) float32 after the node's last token; None for a start (no token yet)
    nbytes: int


class StateStore:
    """An LRU map node id -> Kept. `get` counts as a use; pinned entries (the root, state roots) are never dropped."""

    def __init__(self, family: ModelFamily, budget: StateBudget, device: torch.device, pinned: str | None = None):
        self.family, self.budget, self.device = family, budget, torch.device(device)
        self.pinned: set[str] = set() if pinned is None else {pinned}
        self.entries: OrderedDict[str, Kept] = OrderedDict()
        self.nbytes = 0
        self.drops = 0  # entries dropped for the budget, over the store's life

    def __contains__(self, node_id: str) -> bool:
        return node_id in self.entries

    def __len__(self) -> int:
        return len(self.entries)

    def get(self, node_id: str) -> Kept | None:
        kept = self.entries.get(node_id)
        if kept is not None:
            self.entries.move_to_end(node_id)
        return kept

    def put(self, node_id: str, state: list[torch.Tensor], logits: torch.Tensor | None) -> Kept:
        """Keep copies (on the store's device) of a one-row state and its (V,) logits; then fit the budget."""
        state = self.family.to(state, self.device, copy=True)  # shares nothing with the caller
        if logits is not None:
            logits = logits.detach().reshape(-1).to(self.device, torch.float32, copy=True)  # (V,)
        self.drop(node_id)
        kept = Kept(state, logits, self.family.nbytes(state) + (0 if logits is None else logits.numel() * 4))
        self.entries[node_id] = kept
        self.nbytes += kept.nbytes
        self.fit(keep=node_id)
        return kept

    def pinned_bytes(self) -> int:
        return sum(self.entries[i].nbytes for i in self.pinned if i in self.entries)

    def remove(self, node_id: str) -> None:
        """Forget a node for good (it was deleted): its entry goes, pinned or not."""
        self.pinned.discard(node_id)
        self.drop(node_id)

    def drop(self, node_id: str) -> None:
        kept = self.entries.pop(node_id, None)
        if kept is not None:
            self.nbytes -= kept.nbytes

    def fit(self, keep: str | None = None) -> None:
        """Drop least recently used entries (not pinned ones, not `keep`) until within the budget."""
        victims = (i for i in list(self.entries) if i not in self.pinned and i != keep)
        while len(self.entries) > self.budget.max_states or self.nbytes > self.budget.max_bytes:
            victim = next(victims, None)
            if victim is None:
                return
            self.drop(victim)
            self.drops += 1
