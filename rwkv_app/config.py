"""RwkvConfig: Hugging Face's RWKV config, same field names and defaults, read from and written to config.json."""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ConfigError

CONFIG_NAME = "config.json"


class ConfigFileMixin:
    """config.json reading and writing shared by the families' configs (each has from_dict/to_dict)."""

    @classmethod
    def from_json_file(cls, path: str | Path):
        path = Path(path)
        try:
            values = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"config file not found: {path}") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise ConfigError(f"config file {path} is not valid JSON: {err}") from None
        try:
            return cls.from_dict(values)
        except TypeError as err:
            raise ConfigError(f"config file {path}: {err}") from None
        except ConfigError as err:
            raise ConfigError(f"config file {path}: {err}") from None

    def to_json_file(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n", encoding="utf-8")

    def save_pretrained(self, directory: str | Path) -> None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.to_json_file(directory / CONFIG_NAME)


@dataclass
class RwkvConfig(ConfigFileMixin):
    vocab_size: int = 50277
    context_length: int = 1024
    hidden_size: int = 4096
    num_hidden_layers: int = 32
    attention_hidden_size: int | None = None
    intermediate_size: int | None = None
    layer_norm_epsilon: float = 1e-5
    bos_token_id: int = 0
    eos_token_id: int = 0
    rescale_every: int = 6
    tie_word_embeddings: bool = False
    use_cache: bool = True
    output_hidden_states: bool = False
    return_dict: bool = True
    extra: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)  # unknown config.json keys, kept

    def __post_init__(self) -> None:
        if self.attention_hidden_size is None:
            self.attention_hidden_size = self.hidden_size
        if self.intermediate_size is None:
            self.intermediate_size = 4 * self.hidden_size
        self.validate()

    def validate(self) -> None:
        for name in ("vocab_size", "hidden_size", "num_hidden_layers", "attention_hidden_size", "intermediate_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ConfigError(f"config field {name!r} must be a positive integer, got {value!r}")
        if not isinstance(self.rescale_every, int) or isinstance(self.rescale_every, bool):
            raise ConfigError(f"config field 'rescale_every' must be an integer, got {self.rescale_every!r}")
        if not self.layer_norm_epsilon > 0:
            raise ConfigError(f"config field 'layer_norm_epsilon' must be > 0, got {self.layer_norm_epsilon!r}")

    # ---- dict / json -------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "RwkvConfig":
        """Build from a config.json dict; HF bookkeeping keys (architectures, model_type, ...) go to `extra`."""
        if not isinstance(values, dict):
            raise ConfigError(f"a config must be a JSON object, got {type(values).__name__}")
        model_type = values.get("model_type", "rwkv")
        if model_type != "rwkv":
            raise ConfigError(f"config model_type is {model_type!r}; only 'rwkv' (RWKV-4) is supported")
        known = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        kwargs = {k: v for k, v in values.items() if k in known}
        extra = {k: v for k, v in values.items() if k not in known and k != "model_type"}
        return cls(**kwargs, extra=extra)

    def to_dict(self) -> dict[str, Any]:
        out = {k: v for k, v in self.extra.items() if k not in ("torch_dtype", "dtype")}
        out.update({f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "extra"})
        out["model_type"] = "rwkv"
        out.setdefault("architectures", ["RwkvForCausalLM"])
        return out
