"""RwkvConfig: Hugging Face's RWKV config, same field names and defaults, read from and written to config.json."""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from ...errors import ConfigError

CONFIG_NAME = "config.json"
GENERIC_DEFAULTS = {"output_hidden_states": False, "return_dict": True}  # transformers' PretrainedConfig's own


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

    def to_json_string(self, use_diff: bool = True) -> str:
        """config.json's text."""
        return json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"

    def to_json_file(self, path: str | Path, use_diff: bool = False) -> None:
        Path(path).write_text(self.to_json_string(use_diff=use_diff), encoding="utf-8")

    @classmethod
    def from_pretrained(cls, repo_id_or_path: str | Path, revision: str | None = None,
                        cache_dir: str | Path | None = None, local_files_only: bool | None = None,
                        **overrides: Any):
        """config.json of a local directory, a .json file or a Hub repo (only config.json is downloaded);
        keyword arguments override its values, as in transformers."""
        from ...weights.hub import resolve_config_path  # the Hub client is only needed here

        path = resolve_config_path(repo_id_or_path, revision=revision, cache_dir=cache_dir,
                                   local_files_only=local_files_only)
        config = cls.from_json_file(path / CONFIG_NAME if path.is_dir() else path)
        for key, value in overrides.items():
            setattr(config, key, value)
        config.validate()
        return config

    def save_pretrained(self, directory: str | Path) -> None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.to_json_file(directory / CONFIG_NAME)


@dataclass(init=False)
class RwkvConfig(ConfigFileMixin):
    """Hugging Face's RwkvConfig: the same fields and defaults. As in transformers' PretrainedConfig, keyword
    arguments it does not know (pad_token_id=..., architectures, ...) are kept as attributes and written back
    to config.json, and `max_position_embeddings` is an alias of `context_length`."""

    vocab_size: int = 50277
    context_length: int = 1024
    hidden_size: int = 4096
    num_hidden_layers: int = 32
    attention_hidden_size: int | None = None
    intermediate_size: int | None = None
    layer_norm_epsilon: float = 1e-5
    bos_token_id: int | None = 0
    eos_token_id: int | list[int] | None = 0
    rescale_every: int = 6
    tie_word_embeddings: bool = False
    use_cache: bool = True
    output_hidden_states: bool = False
    return_dict: bool = True

    attribute_map: ClassVar[dict[str, str]] = {"max_position_embeddings": "context_length"}  # transformers' aliases

    def __init__(self, vocab_size: int = 50277, context_length: int = 1024, hidden_size: int = 4096,
                 num_hidden_layers: int = 32, attention_hidden_size: int | None = None,
                 intermediate_size: int | None = None, layer_norm_epsilon: float = 1e-5,
                 bos_token_id: int | None = 0, eos_token_id: int | list[int] | None = 0, rescale_every: int = 6,
                 tie_word_embeddings: bool = False, use_cache: bool = True, output_hidden_states: bool = False,
                 return_dict: bool = True, **kwargs: Any):
        values = dict(locals())
        for name in field_names():
            setattr(self, name, values[name])
        extra = kwargs.pop("extra", None) or {}  # the unknown config.json keys, as from_dict hands them over
        for key, value in {**extra, **kwargs}.items():
            setattr(self, key, value)
        self.__post_init__()

    def __setattr__(self, name: str, value: Any) -> None:
        super().__setattr__(self.attribute_map.get(name, name), value)

    def __getattr__(self, name: str) -> Any:  # only called when normal lookup fails: the aliases
        target = type(self).attribute_map.get(name)
        if target is None:
            raise AttributeError(f"{type(self).__name__} has no attribute {name!r}")
        return getattr(self, target)

    @property
    def extra(self) -> dict[str, Any]:
        """The attributes that are not RwkvConfig fields (unknown config.json keys, pad_token_id, ...)."""
        known = set(field_names())
        return {k: v for k, v in vars(self).items() if k not in known}

    def __post_init__(self) -> None:
        if self.attention_hidden_size is None:
            self.attention_hidden_size = self.hidden_size
        if self.intermediate_size is None:
            self.intermediate_size = 4 * self.hidden_size
        if isinstance(self.eos_token_id, tuple):
            self.eos_token_id = list(self.eos_token_id)
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
        try:
            eos_token_ids(self.eos_token_id)
        except ValueError as err:
            raise ConfigError(f"config field 'eos_token_id': {err}") from None

    # ---- dict / json -------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "RwkvConfig":
        """Build from a config.json dict; HF bookkeeping keys (architectures, model_type, ...) go to `extra`."""
        if not isinstance(values, dict):
            raise ConfigError(f"a config must be a JSON object, got {type(values).__name__}")
        model_type = values.get("model_type", "rwkv")
        if model_type != "rwkv":
            raise ConfigError(f"config model_type is {model_type!r}; only 'rwkv' (RWKV-4) is supported")
        known = set(field_names())
        kwargs = {k: v for k, v in values.items() if k in known}
        extra = {k: v for k, v in values.items() if k not in known and k != "model_type"}
        return cls(**kwargs, extra=extra)

    def to_dict(self) -> dict[str, Any]:
        """Every field and kept attribute, as config.json holds them (transformers' to_dict)."""
        out = {k: v for k, v in self.extra.items() if k not in ("torch_dtype", "dtype")}
        out.update({name: getattr(self, name) for name in field_names()})
        out["model_type"] = "rwkv"
        out.setdefault("architectures", ["RwkvForCausalLM"])
        return out

    def to_json_string(self, use_diff: bool = True) -> str:
        """config.json's text. `use_diff=True` (transformers' default) leaves out what transformers' diff leaves
        out here: the generic fields (output_hidden_states, return_dict) at their defaults; RWKV's fields stay."""
        values = self.to_dict()
        if use_diff:
            values = {k: v for k, v in values.items() if k not in GENERIC_DEFAULTS or GENERIC_DEFAULTS[k] != v}
        return json.dumps(values, indent=2, sort_keys=True) + "\n"


def field_names() -> tuple[str, ...]:
    """RwkvConfig's own fields (not the kept extra attributes)."""
    return tuple(f.name for f in dataclasses.fields(RwkvConfig))


def eos_token_ids(value: Any) -> frozenset[int]:
    """The end-of-sequence ids of `eos_token_id` given as transformers takes it: None, an int or a list of ints."""
    if value is None:
        return frozenset()
    items = list(value) if isinstance(value, (list, tuple, set, frozenset)) else [value]
    for item in items:
        if not isinstance(item, int) or isinstance(item, bool) or item < 0:
            raise ValueError(f"eos_token_id must be None, a token id >= 0 or a list of them, got {value!r}")
    return frozenset(items)
