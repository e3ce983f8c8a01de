"""Sampling presets: `presets/sampling/<name>.yaml`, each a delta over `SamplingSettings`' defaults.

Plain data read with yaml's safe loader (without anchors and aliases, which only serve YAML bombs here) and
validated on load; every error names the file and the key, and stays short whatever the file holds.
"""
from __future__ import annotations

from pathlib import Path

import yaml

from ..errors import ConfigError
from .sampling import SamplingSettings, SettingsError

SAMPLING_DIR = Path(__file__).resolve().parents[2] / "presets" / "sampling"
MAX_REASON_CHARS = 300  # a value quoted in an error is cut here


class PlainLoader(yaml.SafeLoader):
    """yaml.safe_load's loader, refusing aliases (`*name`): a preset has no use for them, and nested aliases
    expand a few hundred bytes into billions of items (the "billion laughs")."""

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            raise yaml.composer.ComposerError(None, None, "aliases (*name) are not allowed in a preset",
                                              self.peek_event().start_mark)
        return super().compose_node(parent, index)


def list_sampling_presets(directory: str | Path = SAMPLING_DIR) -> list[str]:
    """Preset names (file stems), sorted."""
    return sorted(path.stem for path in Path(directory).glob("*.yaml"))


def load_sampling_preset(name_or_path: str | Path, directory: str | Path = SAMPLING_DIR) -> SamplingSettings:
    """A preset by name (from `directory`) or by the path of a .yaml file."""
    return settings_from_file(preset_path(name_or_path, directory))


def load_sampling_presets(directory: str | Path = SAMPLING_DIR) -> dict[str, SamplingSettings]:
    return {name: load_sampling_preset(name, directory) for name in list_sampling_presets(directory)}


def preset_path(name_or_path: str | Path, directory: str | Path = SAMPLING_DIR) -> Path:
    text = str(name_or_path)
    if text.endswith((".yaml", ".yml")) or "/" in text or "\\" in text:
        path = Path(text).expanduser()
        if not path.is_file():
            raise ConfigError(f"{path}: sampling preset file not found")
        return path
    path = Path(directory) / f"{text}.yaml"
    if not path.is_file():
        known = ", ".join(list_sampling_presets(directory)) or "none"
        raise ConfigError(f"unknown sampling preset {text!r} (in {directory}: {known})")
    return path


def settings_from_file(path: Path) -> SamplingSettings:
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=PlainLoader)  # noqa: S506 (a safe loader)
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as err:
        raise ConfigError(f"{path}: cannot read sampling preset: {err}") from None
    data = {} if data is None else data
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of setting -> value, got {type(data).__name__}")
    bad_keys = [key for key in data if not isinstance(key, str)]
    if bad_keys:
        raise ConfigError(f"{path}: {bad_keys[0]!r}: setting names must be strings")
    try:
        return SamplingSettings.from_dict(data)
    except SettingsError as err:
        reason = err.reason if len(err.reason) <= MAX_REASON_CHARS else err.reason[:MAX_REASON_CHARS] + " ..."
        raise ConfigError(f"{path}: {err.key}: {reason}") from None
