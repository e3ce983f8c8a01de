"""Rwkv7Config: RWKV-7 "Goose" (x070) sizes, with flash-linear-attention's RWKV7Config field names.

Reads and writes the config.json of fla's Hugging Face folders (`model_type` "rwkv7"; older fla wrote
"rwkv7_fla"). fla fields this implementation does not use (attn_mode, fuse_norm, initializer_range, ...) are
kept in `extra` and written back; fla features it does not implement (hybrid attention layers, a value_dim
other than hidden_size, post-norm, another activation) are refused with a ConfigError naming the field.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from ..rwkv4.config import ConfigFileMixin
from ...errors import ConfigError

DECAY_SCALE = math.exp(-0.5)  # BlinkDL's 0.606531: decay = exp(-exp(-0.5) * sigmoid(w0 + lora)), in (0.545, 1)

MODEL_TYPES = ("rwkv7", "rwkv7_fla")  # what fla's config.json files say; we write the first


def default_low_rank(hidden_size: int, scale: float, head_dim: int = 64) -> int:
    """fla's and BlinkDL's default LoRA width: scale * sqrt(C) * head_dim / 64, rounded to a multiple of 32."""
    return max(32, int(round(scale * math.sqrt(hidden_size) * (head_dim / 64) / 32) * 32))


@dataclass
class Rwkv7Config(ConfigFileMixin):
    vocab_size: int = 65536
    hidden_size: int = 768
    num_hidden_layers: int = 12
    head_dim: int = 64
    intermediate_size: int | None = None  # -> 4 * hidden_size
    decay_low_rank_dim: int | None = None  # the LoRA widths default to fla's formula of hidden_size
    gate_low_rank_dim: int | None = None
    a_low_rank_dim: int | None = None
    v_low_rank_dim: int | None = None
    norm_eps: float = 1e-5  # the LayerNorms; the per-head GroupNorm uses head_dim * norm_eps (64e-5)
    bos_token_id: int = 0
    eos_token_id: int = 0
    tie_word_embeddings: bool = False
    use_cache: bool = True
    output_hidden_states: bool = False
    return_dict: bool = True
    extra: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)  # unknown config.json keys, kept

    def __post_init__(self) -> None:
        C, N = self.hidden_size, self.head_dim
        if self.intermediate_size is None:
            self.intermediate_size = 4 * C
        if self.decay_low_rank_dim is None:
            self.decay_low_rank_dim = default_low_rank(C, 2.5, N)
        if self.a_low_rank_dim is None:
            self.a_low_rank_dim = default_low_rank(C, 2.5, N)
        if self.v_low_rank_dim is None:
            self.v_low_rank_dim = default_low_rank(C, 1.7, N)
        if self.gate_low_rank_dim is None:
            self.gate_low_rank_dim = default_low_rank(C, 5.0)
        self.validate()

    @property
    def num_heads(self) -> int:
        return self.hidden_size // self.head_dim

    @property
    def group_norm_eps(self) -> float:
        """The eps of the per-head GroupNorm (BlinkDL's ln_x): 64e-5 for head_dim 64, as in fla."""
        return self.head_dim * self.norm_eps

    def validate(self) -> None:
        for name in ("vocab_size", "hidden_size", "num_hidden_layers", "head_dim", "intermediate_size",
                     "decay_low_rank_dim", "gate_low_rank_dim", "a_low_rank_dim", "v_low_rank_dim"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ConfigError(f"config field {name!r} must be a positive integer, got {value!r}")
        if self.hidden_size % self.head_dim:
            raise ConfigError(f"hidden_size {self.hidden_size} is not a multiple of head_dim {self.head_dim}")
        if not self.norm_eps > 0:
            raise ConfigError(f"config field 'norm_eps' must be > 0, got {self.norm_eps!r}")

    # ---- dict / json -------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "Rwkv7Config":
        """Build from a config.json dict (ours or fla's); bookkeeping and unused fla keys go to `extra`."""
        if not isinstance(values, dict):
            raise ConfigError(f"a config must be a JSON object, got {type(values).__name__}")
        model_type = values.get("model_type", MODEL_TYPES[0])
        if model_type not in MODEL_TYPES:
            raise ConfigError(f"config model_type is {model_type!r}; RWKV-7 needs one of {MODEL_TYPES}")
        _refuse_unsupported(values)
        values = dict(values)
        if values.get("head_dim") is None and values.get("num_heads"):
            values["head_dim"] = values["hidden_size"] // values["num_heads"]  # fla allows either
        known = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        kwargs = {k: v for k, v in values.items() if k in known}
        extra = {k: v for k, v in values.items() if k not in known and k != "model_type"}
        return cls(**kwargs, extra=extra)

    def to_dict(self) -> dict[str, Any]:
        out = {k: v for k, v in self.extra.items() if k not in ("torch_dtype", "dtype", "num_heads")}
        out.update({f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "extra"})
        out["model_type"] = MODEL_TYPES[0]
        out.setdefault("architectures", ["RWKV7ForCausalLM"])
        out.setdefault("value_dim", [self.hidden_size] * self.num_hidden_layers)  # fla reads it per layer
        return out


def _refuse_unsupported(values: dict[str, Any]) -> None:
    """fla options that change the architecture away from BlinkDL's x070: refuse them by name."""
    if values.get("attn") is not None:
        raise ConfigError("config field 'attn' asks for hybrid softmax-attention layers, which are not implemented")
    if values.get("norm_first", True) is not True or values.get("norm_bias", True) is not True:
        raise ConfigError("config fields 'norm_first'/'norm_bias' must be true (BlinkDL's x070 layout)")
    if values.get("hidden_act", "sqrelu") != "sqrelu":
        raise ConfigError(f"config field 'hidden_act' is {values['hidden_act']!r}; RWKV-7 uses 'sqrelu'")
    value_dim = values.get("value_dim")
    hidden = values.get("hidden_size")
    if value_dim is not None:
        dims = value_dim if isinstance(value_dim, list) else [value_dim]
        if any(d != hidden for d in dims):
            raise ConfigError(f"config field 'value_dim' {value_dim!r} differs from hidden_size {hidden}; "
                              "only value_dim == hidden_size is implemented")
