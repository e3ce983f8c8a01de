"""presets/models.yaml: the checkpoints the app offers, validated on load (errors name the file and key).

Optional keys beside repo/params/download_gb/dtype/description/chat:
    family       rwkv4 (default) or rwkv7
    filename     the one file to download from a repo holding several (BlinkDL's .pth repos), through
                 huggingface_hub's hf_hub_download; without it the repo is a model folder (snapshot_download)
    revision     the branch, tag or commit to download (a commit pins the exact file)
    chat_format  {user, assistant, separator, think, no_think}: the prompt strings of a chat model (see models.yaml)
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import yaml

from ..errors import ConfigError

MODELS_YAML = Path(__file__).resolve().parents[2] / "presets" / "models.yaml"
DTYPE_NAMES = ("float32", "bfloat16", "float16", "int8", "auto")  # int8: int8 weights, CPU only (models/quantize.py);
# auto: the machine's fastest at equal quality (rwkv_app/models/cpu_dtype.py)
FIELDS = {"repo", "params", "download_gb", "dtype", "description", "chat", "family", "filename", "revision",
          "chat_format"}
FAMILIES = ("rwkv4", "rwkv7")
CHAT_FORMAT_KEYS = ("user", "assistant", "separator", "think", "no_think")


@dataclass(frozen=True)
class ModelPreset:
    name: str
    repo: str
    params: int
    download_gb: float
    dtype: dict[str, str] = field(default_factory=dict)  # device type -> dtype name
    description: str = ""
    chat: bool = False
    family: str = "rwkv4"
    filename: str | None = None  # one file of a repo holding several (hf_hub_download)
    revision: str | None = None
    chat_format: dict[str, str] = field(default_factory=dict)  # CHAT_FORMAT_KEYS -> prompt strings

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
    _check_optional(where, entry)
    return ModelPreset(name=name, repo=entry["repo"], params=entry["params"], download_gb=float(entry["download_gb"]),
                       dtype=dict(dtype), description=str(entry.get("description", "")),
                       chat=bool(entry.get("chat", False)), family=entry.get("family", "rwkv4"),
                       filename=entry.get("filename"), revision=entry.get("revision"),
                       chat_format=dict(entry.get("chat_format", {})))


def _check_optional(where: str, entry: dict) -> None:
    if entry.get("family", "rwkv4") not in FAMILIES:
        raise ConfigError(f"{where}.family: expected one of {', '.join(FAMILIES)}, got {entry['family']!r}")
    filename = entry.get("filename")
    if filename is not None and (not isinstance(filename, str) or not filename.endswith((".pth", ".safetensors"))
                                 or filename.startswith("/") or ".." in filename.split("/")):
        raise ConfigError(f"{where}.filename: expected a .pth or .safetensors path inside the repo, got {filename!r}")
    revision = entry.get("revision")
    if revision is not None and (not isinstance(revision, str) or not revision.strip()):
        raise ConfigError(f"{where}.revision: expected a branch, tag or commit, got {revision!r}")
    chat_format = entry.get("chat_format", {})
    if not isinstance(chat_format, dict) or any(k not in CHAT_FORMAT_KEYS or not isinstance(v, str)
                                                for k, v in chat_format.items()):
        raise ConfigError(f"{where}.chat_format: expected {{{'|'.join(CHAT_FORMAT_KEYS)}: text}}, got {chat_format!r}")
