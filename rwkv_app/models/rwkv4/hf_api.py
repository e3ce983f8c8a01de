"""The parts of transformers' PreTrainedModel API a user of `RwkvForCausalLM` reaches for, on both model classes:
embedding accessors, `resize_token_embeddings`, gradient checkpointing. Behaviour ported, no transformers import.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from ...errors import InputError


class HfApiMixin:
    """For RwkvModel (embeddings at `self.embeddings`) and RwkvForCausalLM (`self.rwkv`, `self.head`)."""

    supports_gradient_checkpointing = True

    # ---- embeddings ----------------------------------------------------------------------------
    def get_input_embeddings(self) -> nn.Embedding:
        return self.rwkv_base().embeddings

    def set_input_embeddings(self, new_embeddings: nn.Embedding) -> None:
        """Replace the embedding module; a tied head (tie_word_embeddings) follows it."""
        self.rwkv_base().embeddings = new_embeddings
        self.tie_weights()

    def get_output_embeddings(self) -> nn.Linear | None:
        """The LM head (None for the bare model, as in transformers)."""
        return getattr(self, "head", None)

    def set_output_embeddings(self, new_embeddings: nn.Linear) -> None:
        if not hasattr(self, "head"):
            raise InputError(f"{type(self).__name__} has no output embeddings (no LM head) to set")
        self.head = new_embeddings

    def resize_token_embeddings(self, new_num_tokens: int | None = None, pad_to_multiple_of: int | None = None,
                                mean_resizing: bool = True) -> nn.Embedding:
        """transformers' resize: rows [0, min(old, new)) are kept, the head follows (tied or not) and
        config.vocab_size is updated; returns the embedding module. New rows are the mean of the old ones
        (`mean_resizing`; transformers samples them close around that mean) or freshly initialised."""
        old = self.get_input_embeddings()
        if new_num_tokens is None and pad_to_multiple_of is None:
            return old
        size = old.num_embeddings if new_num_tokens is None else new_num_tokens
        if not isinstance(size, int) or isinstance(size, bool) or size <= 0:
            raise InputError(f"new_num_tokens must be a positive integer, got {new_num_tokens!r}")
        if pad_to_multiple_of is not None:
            if not isinstance(pad_to_multiple_of, int) or isinstance(pad_to_multiple_of, bool) \
                    or pad_to_multiple_of <= 0:
                raise InputError(f"pad_to_multiple_of must be a positive integer, got {pad_to_multiple_of!r}")
            size = math.ceil(size / pad_to_multiple_of) * pad_to_multiple_of
        self.config.vocab_size = size
        embeddings = nn.Embedding(size, old.embedding_dim, device=old.weight.device, dtype=old.weight.dtype)
        resize_rows(embeddings.weight, old.weight, mean_resizing, init_std=None)
        self.set_input_embeddings(embeddings)
        head = self.get_output_embeddings()
        if head is not None and not self.config.tie_word_embeddings:
            new_head = nn.Linear(head.in_features, size, bias=False, device=head.weight.device, dtype=head.weight.dtype)
            resize_rows(new_head.weight, head.weight, mean_resizing, init_std=0.5 / math.sqrt(head.in_features))
            self.set_output_embeddings(new_head)
        return self.get_input_embeddings()

    # ---- gradient checkpointing ----------------------------------------------------------------
    def gradient_checkpointing_enable(self, gradient_checkpointing_kwargs: dict | None = None) -> None:
        """Recompute each block in the backward pass instead of keeping its activations (training mode only).
        The loss and gradients are the same. `gradient_checkpointing_kwargs` is accepted for transformers'
        signature; the non-reentrant checkpoint is always used."""
        self.rwkv_base().gradient_checkpointing = True

    def gradient_checkpointing_disable(self) -> None:
        self.rwkv_base().gradient_checkpointing = False

    @property
    def is_gradient_checkpointing(self) -> bool:
        return self.rwkv_base().gradient_checkpointing

    # transformers 5.x's newer names for the same switches
    activation_checkpointing_enable = gradient_checkpointing_enable
    activation_checkpointing_disable = gradient_checkpointing_disable
    is_activation_checkpointing = is_gradient_checkpointing


@torch.no_grad()
def resize_rows(new: torch.Tensor, old: torch.Tensor, mean_resizing: bool, init_std: float | None) -> None:
    """Fill `new` (N, C) from `old` (M, C): the first min(N, M) rows copied, the rest the mean of `old`'s rows
    or, without mean_resizing, initialised as the model initialises them (init_std None: the embedding's)."""
    kept = min(new.size(0), old.size(0))
    new[:kept] = old[:kept]  # (kept, C)
    if new.size(0) == kept:
        return
    if mean_resizing:
        new[kept:] = old.float().mean(dim=0).to(new.dtype)  # (N - kept, C)
    elif init_std is None:
        nn.init.uniform_(new[kept:], -1e-4, 1e-4)
    else:
        nn.init.normal_(new[kept:], std=init_std)
