"""Which model and tokenizer a session runs on, recorded in its file so an import can refuse another model.

The weights fingerprint hashes a small, fixed sample of the weights (embedding and head rows, every
layer's decay, bonus and first layer norm), so two checkpoints with the same shapes but different weights
differ, without hashing gigabytes.
"""
from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass

import torch

DTYPE_NAMES = {torch.float32: "float32", torch.float16: "float16", torch.bfloat16: "bfloat16"}


@dataclass(frozen=True)
class ModelIdentity:
    model_id: str  # what the caller named it (hub repo id, path, preset); informational
    dtype: str
    vocab_size: int
    hidden_size: int
    attention_hidden_size: int
    num_hidden_layers: int
    weights: str  # sha256 of the weight sample

    @classmethod
    def of(cls, model, model_id: str | None = None) -> ModelIdentity:
        config = model.config
        return cls(model_id=model_id or "unnamed model", dtype=DTYPE_NAMES.get(model.dtype, str(model.dtype)),
                   vocab_size=config.vocab_size, hidden_size=config.hidden_size,
                   attention_hidden_size=config.attention_hidden_size,
                   num_hidden_layers=config.num_hidden_layers, weights=weights_fingerprint(model))

    def to_json(self) -> dict:
        return asdict(self)

    def describe(self) -> str:
        return (f"{self.model_id} ({self.dtype}, {self.num_hidden_layers} layers x {self.hidden_size}, "
                f"vocab {self.vocab_size}, weights {self.weights[:12]})")

    def mismatch(self, other: ModelIdentity) -> str | None:
        """Why a session recorded with `other` cannot run on this model; None when it can."""
        for name in ("dtype", "vocab_size", "hidden_size", "attention_hidden_size", "num_hidden_layers", "weights"):
            if getattr(self, name) != getattr(other, name):
                return (f"the session was saved with model {other.describe()} but this session runs on "
                        f"{self.describe()}: {name} differs ({getattr(other, name)!r} vs {getattr(self, name)!r})")
        return None


@torch.no_grad()
def weights_fingerprint(model) -> str:
    base = model.rwkv
    sample = [base.embeddings.weight[:2], base.embeddings.weight[-2:], model.head.weight[:2], model.head.weight[-2:]]
    for block in base.blocks:
        sample += [block.attention.time_decay, block.attention.time_first, block.ln1.weight]
    digest = hashlib.sha256()
    for tensor in sample:
        digest.update(tensor.detach().float().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def tokenizer_fingerprint(tokenizer) -> str | None:
    """The tokenizer's sha256 (`RwkvTokenizer.fingerprint`); None without a tokenizer."""
    return None if tokenizer is None else tokenizer.fingerprint()
