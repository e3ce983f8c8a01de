"""Which model and tokenizer a session runs on, recorded in its file so an import can refuse another model.

The weights fingerprint hashes a small, fixed sample of the weights that the model's family picks (embedding
and head rows, every layer's decay, bonus and first layer norm), so two checkpoints with the same shapes but
different weights differ, without hashing gigabytes. Files written before families were recorded hold no
`family` and are RWKV-4's.
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import asdict, dataclass

import torch

from ..models.family import family_of

LEGACY_FAMILY = "rwkv4"  # the family of a file that records none
FAMILY_NAME = re.compile(r"rwkv(\d+)")
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
    family: str = LEGACY_FAMILY

    @classmethod
    def of(cls, model, model_id: str | None = None) -> ModelIdentity:
        family = family_of(model)
        return cls(model_id=model_id or "unnamed model", dtype=DTYPE_NAMES.get(model.dtype, str(model.dtype)),
                   vocab_size=model.config.vocab_size, weights=weights_fingerprint(model), family=family.name,
                   **family.identity_sizes(model.config))

    def to_json(self) -> dict:
        return asdict(self)

    def describe(self) -> str:
        return (f"{self.model_id} ({self.dtype}, {self.num_hidden_layers} layers x {self.hidden_size}, "
                f"vocab {self.vocab_size}, weights {self.weights[:12]})")

    def needed(self) -> str:
        """The model this identity names, for people: "the RWKV-7 model demo-rwkv7 (float32)"."""
        return f"the {family_label(self.family)} model {self.model_id} ({self.dtype})"

    def mismatch(self, other: ModelIdentity) -> str | None:
        """Why a session recorded with `other` cannot run on this model; None when it can."""
        if self.family != other.family:
            return (f"the session was saved with an {family_label(other.family)} model ({other.describe()}) but this "
                    f"session runs an {family_label(self.family)} model ({self.describe()}): a session file only opens "
                    f"on its own family")
        for name in ("dtype", "vocab_size", "hidden_size", "attention_hidden_size", "num_hidden_layers", "weights"):
            if getattr(self, name) != getattr(other, name):
                return (f"the session was saved with model {other.describe()} but this session runs on "
                        f"{self.describe()}: {name} differs ({getattr(other, name)!r} vs {getattr(self, name)!r})")
        return None


def family_label(name: str) -> str:
    """A family's name as people write it: "rwkv7" -> "RWKV-7" (another name as it is)."""
    match = FAMILY_NAME.fullmatch(name)
    return f"RWKV-{match.group(1)}" if match else name


@torch.no_grad()
def weights_fingerprint(model) -> str:
    digest = hashlib.sha256()
    for tensor in family_of(model).fingerprint_tensors(model):
        digest.update(tensor.detach().float().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def tokenizer_fingerprint(tokenizer) -> str | None:
    """The tokenizer's sha256 (`RwkvTokenizer.fingerprint`); None without a tokenizer."""
    return None if tokenizer is None else tokenizer.fingerprint()
