"""presets/models.yaml: the checkpoints the app offers, validated on load (errors name the file and key)."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import yaml

from ..errors import ConfigError

MODELS_YAML = Path(__file__).resolve().parents[2] / "presets" / "models.yaml"
DTYPE_NAMES = ("float32", "bfloat16", "float16", "int8", "auto")  # int8: int8 weights, CPU only (models/quantize.py);
# auto: the machine's fastest at equal quality (rwkv_app/models/cpu_dtype.py)
FIELDS = {"repo", "params", "download_gb", "dtype", "description", "chat"}


@dataclass(frozen=True)
class ModelPreset:
    name: str
    repo: str
    params: int
    download_gb: float
    dtype: dict[str, str] = field(default_factory=dict)  # device type -> dtype name
    description: str = ""
    chat: bool = False

    def dtype_for(self, device_type: str) -> str:
        return self.dtype.get(device_type, "float32")


def load_model_presets(path: str | Path = MODELS_YAML) -> dict[str, ModelPreset]:
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as err:
        raise ConfigError(f"{path}: cannot read model presets: {err}") from None
    models = data.get("models") if isinstance(data, dict) else None
    if not isinstance(models, dict) or not models:
        raise ConfigError(f"{path}: expected a top-level 'models' mapping of name -> preset")
    return {name: _parse_preset(path, name, entry) for name, entry in models.items()}


def _parse_preset(path: Path, name: str, entry) -> ModelPreset:
    where = f"{path}: models.{name}"
    if not isinstance(entry, dict):
        raise ConfigError(f"{where}: expected a mapping, got {type(entry).__name__}")
    unknown = sorted(set(entry) - FIELDS)
    if unknown:
        raise ConfigError(f"{where}: unknown key {unknown[0]!r} (known: {', '.join(sorted(FIELDS))})")
    for key in ("repo", "params", "download_gb"):
        if key not in entry:
            raise ConfigError(f"{where}: missing key {key!r}")
    if not isinstance(entry["repo"], str) or entry["repo"].count("/") != 1:
        raise ConfigError(f"{where}.repo: expected a Hub repo id 'org/name', got {entry['repo']!r}")
    if not isinstance(entry["params"], int) or entry["params"] <= 0:
        raise ConfigError(f"{where}.params: expected a positive integer, got {entry['params']!r}")
    if not isinstance(entry["download_gb"], (int, float)) or entry["download_gb"] <= 0:
        raise ConfigError(f"{where}.download_gb: expected a positive number, got {entry['download_gb']!r}")
    dtype = entry.get("dtype", {})
    if not isinstance(dtype, dict) or any(k not in ("cpu", "cuda") or v not in DTYPE_NAMES for k, v in dtype.items()):
        raise ConfigError(f"{where}.dtype: expected {{cpu|cuda: {'|'.join(DTYPE_NAMES)}}}, got {dtype!r}")
    return ModelPreset(name=name, repo=entry["repo"], params=entry["params"], download_gb=float(entry["download_gb"]),
                       dtype=dict(dtype), description=str(entry.get("description", "")), chat=bool(entry.get("chat", False)))
