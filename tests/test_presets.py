"""Sampling presets: the shipped YAML files load, and bad files fail naming the file and the key."""
import pytest
import yaml

from rwkv_app import ConfigError, SamplingSettings
from rwkv_app.core.presets import SAMPLING_DIR, list_sampling_presets, load_sampling_preset, load_sampling_presets
from rwkv_app.core.sampling import FIELD_NAMES

REQUIRED = {"deterministic", "balanced", "creative", "chat", "chatrwkv"}


def test_shipped_presets_load_and_are_deltas_over_the_defaults():
    presets = load_sampling_presets()
    assert REQUIRED <= set(presets) and list_sampling_presets() == sorted(presets)
    for name in presets:
        data = yaml.safe_load((SAMPLING_DIR / f"{name}.yaml").read_text(encoding="utf-8"))
        assert set(data) <= set(FIELD_NAMES), name
        assert presets[name] == SamplingSettings().replace(**data)
    assert presets["deterministic"].greedy
    assert all(not presets[name].greedy for name in REQUIRED - {"deterministic"})


def test_chatrwkv_preset_has_chatrwkvs_values():
    s = load_sampling_preset("chatrwkv")
    assert (s.temperature, s.top_p) == (1.2, 0.5)
    assert (s.presence_penalty, s.frequency_penalty, s.penalty_decay) == (0.4, 0.4, 0.996)
    assert s.banned_tokens == (0,) and s.stop == ("\n\n",)


def write(tmp_path, text: str, name: str = "mine.yaml"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_load_by_path_and_empty_file_is_the_defaults(tmp_path):
    path = write(tmp_path, "# nothing but a comment\n")
    assert load_sampling_preset(path) == SamplingSettings()
    assert load_sampling_preset(str(write(tmp_path, "top_k: 5\n"))) == SamplingSettings(top_k=5)
    assert load_sampling_preset("mine", directory=tmp_path) == SamplingSettings(top_k=5)
    assert list_sampling_presets(tmp_path) == ["mine"]


@pytest.mark.parametrize("text, key, reason", [
    ("temprature: 0.7\n", "temprature", "unknown sampling setting"),
    ("temperature: hot\n", "temperature", "expected a number >= 0"),
    ("top_p: 1.5\n", "top_p", r"expected a number in \(0, 1\]"),
    ("top_k: -3\n", "top_k", "expected an integer >= 0"),
    ("do_sample: 1\n", "do_sample", "expected true or false"),
    ("stop: [1, 2]\n", "stop", "expected a list of non-empty strings"),
    ("logit_bias: [1, 2]\n", "logit_bias", "expected a mapping"),
])
def test_bad_values_name_the_file_and_the_key(tmp_path, text, key, reason):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError, match=rf"^{path}: {key}: {reason}"):
        load_sampling_preset(path)


@pytest.mark.parametrize("text, message", [
    ("- temperature\n- 0.7\n", "expected a mapping of setting -> value, got list"),
    ("temperature: [unclosed\n", "cannot read sampling preset"),
    ("!!python/object/apply:os.system ['true']\n", "cannot read sampling preset"),  # safe_load only
    ("1: 2\n", "1: setting names must be strings"),
])
def test_malformed_files_name_the_file(tmp_path, text, message):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError, match=f"^{path}: {message}"):
        load_sampling_preset(path)


def test_unknown_preset_names_list_the_known_ones(tmp_path):
    with pytest.raises(ConfigError, match=r"unknown sampling preset 'spicy' \(in .*: balanced, chat, chatrwkv"):
        load_sampling_preset("spicy")
    with pytest.raises(ConfigError, match="missing.yaml: sampling preset file not found"):
        load_sampling_preset(tmp_path / "missing.yaml")
