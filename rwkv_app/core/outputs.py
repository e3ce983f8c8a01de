"""Output containers shaped like Hugging Face's ModelOutput: attribute access, indexing, to_tuple()."""
from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

import torch


class _ModelOutput:
    """Fields that are None are skipped by indexing and to_tuple(), as in Hugging Face."""

    def to_tuple(self) -> tuple[Any, ...]:
        return tuple(getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None)

    def keys(self) -> list[str]:
        return [f.name for f in fields(self) if getattr(self, f.name) is not None]

    def __getitem__(self, key: int | slice | str) -> Any:
        if isinstance(key, str):
            return getattr(self, key)
        return self.to_tuple()[key]

    def __contains__(self, key: str) -> bool:
        return key in self.keys()

    def __iter__(self):
        return iter(self.to_tuple())


@dataclass
class RwkvOutput(_ModelOutput):
    last_hidden_state: torch.Tensor | None = None
    state: list[torch.Tensor] | None = None
    hidden_states: tuple[torch.Tensor, ...] | None = None
    attentions: tuple[torch.Tensor, ...] | None = None  # each block's time-mixing output, as in transformers


@dataclass
class RwkvCausalLMOutput(_ModelOutput):
    loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    state: list[torch.Tensor] | None = None
    hidden_states: tuple[torch.Tensor, ...] | None = None
    attentions: tuple[torch.Tensor, ...] | None = None  # each block's time-mixing output, as in transformers
