"""Checkpoint loading and saving: HF directories (single, sharded, .bin), BlinkDL .pth, and every error path."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from rwkv_app.models.rwkv4.blinkdl import (
    convert_blinkdl_to_hf,
    convert_hf_to_blinkdl,
    infer_config_from_blinkdl,
    is_blinkdl_state_dict,
)
from rwkv_app.weights.checkpoints import (
    check_state_dict,
    expected_shapes,
    load_checkpoint,
    load_state_dict_from_dir,
    save_state_dict,
)
from rwkv_app.models.rwkv4.config import RwkvConfig
from rwkv_app.errors import CheckpointError

from .hub_fixtures import random_state_dict


def tiny_config(**overrides) -> RwkvConfig:
    values = dict(vocab_size=60, hidden_size=16, num_hidden_layers=3, attention_hidden_size=12, intermediate_size=40)
    return RwkvConfig(**{**values, **overrides})


def assert_same_tensors(got: dict, want: dict) -> None:
    assert sorted(got) == sorted(want)
    for key in want:
        assert torch.equal(got[key], want[key]), key


def save_hf_dir(directory: Path, config: RwkvConfig, state_dict: dict) -> Path:
    save_state_dict(state_dict, directory)
    config.save_pretrained(directory)
    return directory


def write_shards(directory: Path, state_dict: dict, suffix: str) -> None:
    """Two shards named like HF's, plus the index that maps each key to its shard."""
    keys = sorted(state_dict)
    halves = {f"model-00001-of-00002{suffix}": keys[::2], f"model-00002-of-00002{suffix}": keys[1::2]}
    directory.mkdir(parents=True, exist_ok=True)
    for shard, shard_keys in halves.items():
        tensors = {key: state_dict[key] for key in shard_keys}
        if suffix == ".safetensors":
            from safetensors.torch import save_file
            save_file(tensors, directory / shard)
        else:
            torch.save(tensors, directory / shard)
    index_name = "model.safetensors.index.json" if suffix == ".safetensors" else "pytorch_model.bin.index.json"
    weight_map = {key: shard for shard, shard_keys in halves.items() for key in shard_keys}
    (directory / index_name).write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))


# ---- HF format -----------------------------------------------------------------------------------
def test_save_then_load_round_trip(tmp_path):
    config = tiny_config()
    state_dict = random_state_dict(config)
    save_hf_dir(tmp_path, config, state_dict)
    assert_same_tensors(load_state_dict_from_dir(tmp_path), state_dict)
    loaded_config, loaded = load_checkpoint(tmp_path)
    assert loaded_config.to_dict() == config.to_dict()
    assert_same_tensors(loaded, state_dict)
    assert sorted(os.listdir(tmp_path)) == ["config.json", "model.safetensors"]  # no temp file left behind


def test_save_handles_shared_and_non_contiguous_tensors(tmp_path):
    config = tiny_config(tie_word_embeddings=True)
    state_dict = random_state_dict(config)
    state_dict["head.weight"] = state_dict["rwkv.embeddings.weight"]  # the same storage twice
    out_proj = state_dict["rwkv.blocks.0.attention.output.weight"]
    state_dict["rwkv.blocks.0.attention.output.weight"] = out_proj.t().contiguous().t()  # a transposed view
    save_state_dict(state_dict, tmp_path)
    save_state_dict(state_dict, tmp_path)  # overwriting an existing file is fine
    assert_same_tensors(load_state_dict_from_dir(tmp_path / "model.safetensors"), state_dict)


def test_expected_shapes_follow_the_config():
    shapes = expected_shapes(tiny_config())
    assert shapes["rwkv.blocks.2.attention.output.weight"] == (16, 12)
    assert shapes["rwkv.blocks.1.feed_forward.value.weight"] == (16, 40)
    assert shapes["rwkv.blocks.0.attention.time_mix_key"] == (1, 1, 16)
    assert "rwkv.blocks.1.pre_ln.weight" not in shapes
    assert "head.weight" not in expected_shapes(tiny_config(tie_word_embeddings=True))


@pytest.mark.parametrize("suffix", [".safetensors", ".bin"])
def test_sharded_checkpoint_loads_through_its_index(tmp_path, suffix):
    config = tiny_config()
    state_dict = random_state_dict(config)
    write_shards(tmp_path, state_dict, suffix)
    config.save_pretrained(tmp_path)
    assert_same_tensors(load_checkpoint(tmp_path)[1], state_dict)


def test_safetensors_is_preferred_over_bin(tmp_path):
    config = tiny_config()
    save_hf_dir(tmp_path, config, random_state_dict(config, seed=1))
    torch.save(random_state_dict(config, seed=2), tmp_path / "pytorch_model.bin")
    assert_same_tensors(load_checkpoint(tmp_path)[1], random_state_dict(config, seed=1))


def test_missing_shard_is_named(tmp_path):
    write_shards(tmp_path, random_state_dict(tiny_config()), ".safetensors")
    (tmp_path / "model-00002-of-00002.safetensors").unlink()
    with pytest.raises(CheckpointError, match="model-00002-of-00002.safetensors.*missing"):
        load_state_dict_from_dir(tmp_path)


def test_index_key_absent_from_its_shard_is_named(tmp_path):
    write_shards(tmp_path, random_state_dict(tiny_config()), ".safetensors")
    index_path = tmp_path / "model.safetensors.index.json"
    index = json.loads(index_path.read_text())
    index["weight_map"]["rwkv.blocks.9.ln1.weight"] = "model-00001-of-00002.safetensors"
    index_path.write_text(json.dumps(index))
    with pytest.raises(CheckpointError, match=r"rwkv\.blocks\.9\.ln1\.weight"):
        load_state_dict_from_dir(tmp_path)


@pytest.mark.parametrize("index", [{"weight_map": ["a"]}, {"metadata": {}}, {"weight_map": {"a": "../x.bin"}}, []])
def test_malformed_index_is_refused(tmp_path, index):
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps(index))
    with pytest.raises(CheckpointError, match="model.safetensors.index.json"):
        load_state_dict_from_dir(tmp_path)


def test_pytorch_bin_loads(tmp_path):
    config = tiny_config()
    state_dict = random_state_dict(config)
    torch.save(state_dict, tmp_path / "pytorch_model.bin")
    config.save_pretrained(tmp_path)
    assert_same_tensors(load_checkpoint(tmp_path)[1], state_dict)


class RunsShellOnLoad:
    """A pickle payload: unpickling it calls os.system, which weights_only loading must refuse."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_malicious_pickle_is_refused_without_running(tmp_path):
    marker = tmp_path / "pwned"
    torch.save({"rwkv.embeddings.weight": torch.zeros(2, 2), "payload": RunsShellOnLoad(marker)},
               tmp_path / "pytorch_model.bin")
    with pytest.raises(CheckpointError, match="pytorch_model.bin.*weights_only"):
        load_state_dict_from_dir(tmp_path)
    assert not marker.exists()


def test_non_tensor_value_is_named(tmp_path):
    torch.save({"rwkv.embeddings.weight": torch.zeros(2, 2), "step": 3}, tmp_path / "pytorch_model.bin")
    with pytest.raises(CheckpointError, match="'step' is a int"):
        load_state_dict_from_dir(tmp_path)


@pytest.mark.parametrize("name", ["model.safetensors", "pytorch_model.bin"])
@pytest.mark.parametrize("keep", [0.5, 0.001])
def test_truncated_file_is_named(tmp_path, name, keep):
    config = tiny_config()
    save_state_dict(random_state_dict(config), tmp_path)
    if name == "pytorch_model.bin":
        torch.save(random_state_dict(config), tmp_path / name)
        (tmp_path / "model.safetensors").unlink()
    data = (tmp_path / name).read_bytes()
    (tmp_path / name).write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(CheckpointError, match=name):
        load_state_dict_from_dir(tmp_path)


def test_directory_without_weights_lists_its_contents(tmp_path):
    (tmp_path / "README.md").write_text("hi")
    (tmp_path / "notes").mkdir()
    with pytest.raises(CheckpointError, match=r"no weight file in .*README\.md, notes/"):
        load_checkpoint(tmp_path)
    with pytest.raises(CheckpointError, match="empty directory"):
        load_state_dict_from_dir(tmp_path / "notes")
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        load_checkpoint(tmp_path / "absent")


def test_hf_weights_without_config_json_name_it(tmp_path):
    save_state_dict(random_state_dict(tiny_config()), tmp_path)
    with pytest.raises(CheckpointError, match="config.json is missing"):
        load_checkpoint(tmp_path)


def test_base_model_file_without_prefix_loads(tmp_path):
    config = tiny_config()
    state_dict = random_state_dict(config)
    unprefixed = {key.removeprefix("rwkv."): value for key, value in state_dict.items()}
    save_hf_dir(tmp_path, config, unprefixed)
    assert_same_tensors(load_checkpoint(tmp_path)[1], state_dict)


# ---- checking against a config -------------------------------------------------------------------
def test_check_state_dict_names_missing_unexpected_and_mismatched_keys():
    config = tiny_config()
    state_dict = random_state_dict(config)
    del state_dict["rwkv.blocks.1.ln2.bias"]
    state_dict["rwkv.blocks.3.ln1.weight"] = torch.zeros(16)
    state_dict["rwkv.blocks.0.attention.key.weight"] = torch.zeros(16, 16)
    with pytest.raises(CheckpointError) as info:
        check_state_dict(state_dict, config)
    message = str(info.value)
    assert "missing keys: rwkv.blocks.1.ln2.bias" in message
    assert "unexpected keys: rwkv.blocks.3.ln1.weight" in message
    assert "rwkv.blocks.0.attention.key.weight: expected (12, 16), got (16, 16)" in message


def test_check_state_dict_ignores_head_when_tied():
    config = tiny_config(tie_word_embeddings=True)
    state_dict = random_state_dict(config)
    check_state_dict(state_dict, config)
    check_state_dict({**state_dict, "head.weight": torch.zeros(1)}, config)
    with pytest.raises(CheckpointError, match="missing keys: head.weight"):
        check_state_dict(state_dict, tiny_config())


# ---- BlinkDL .pth --------------------------------------------------------------------------------
def test_blinkdl_round_trip_infers_the_config(tmp_path):
    config = tiny_config()
    state_dict = random_state_dict(config)
    blink = convert_hf_to_blinkdl(state_dict)
    assert "emb.weight" in blink and "blocks.0.ln0.weight" in blink and "blocks.2.att.time_mix_k" in blink
    torch.save(blink, tmp_path / "RWKV-4-Tiny-20220101-0.pth")
    for path in (tmp_path / "RWKV-4-Tiny-20220101-0.pth", tmp_path):  # the file, or a directory holding it
        loaded_config, loaded = load_checkpoint(path)
        assert loaded_config.to_dict() == config.to_dict()
        assert_same_tensors(loaded, state_dict)


@pytest.mark.parametrize("shape", [lambda h: (h,), lambda h: (1, h)])
def test_blinkdl_flat_time_mix_is_reshaped(tmp_path, shape):
    config = tiny_config()
    state_dict = random_state_dict(config)
    blink = {key: value.reshape(shape(16)) if ".time_mix_" in key else value
             for key, value in convert_hf_to_blinkdl(state_dict).items()}
    torch.save(blink, tmp_path / "model.pth")
    assert_same_tensors(load_checkpoint(tmp_path / "model.pth")[1], state_dict)


def test_blinkdl_errors_name_the_key():
    blink = convert_hf_to_blinkdl(random_state_dict(tiny_config()))
    without_emb = {key: value for key, value in blink.items() if key != "emb.weight"}
    assert is_blinkdl_state_dict(without_emb)
    with pytest.raises(CheckpointError, match="'emb.weight'"):
        convert_blinkdl_to_hf(without_emb)
    with pytest.raises(CheckpointError, match="'emb.weight'"):
        infer_config_from_blinkdl(without_emb)
    with pytest.raises(CheckpointError, match=r"unknown key 'blocks\.1\.att\.time_faaa'"):
        convert_blinkdl_to_hf({**blink, "blocks.1.att.time_faaa": torch.zeros(3)})
    with pytest.raises(CheckpointError, match="time_mix_k.*shape"):
        convert_blinkdl_to_hf({**blink, "blocks.0.att.time_mix_k": torch.zeros(2, 16)})


def test_blinkdl_detection():
    state_dict = random_state_dict(tiny_config())
    assert not is_blinkdl_state_dict(state_dict)
    assert not is_blinkdl_state_dict({key.removeprefix("rwkv."): value for key, value in state_dict.items()})
    assert is_blinkdl_state_dict(convert_hf_to_blinkdl(state_dict))


def test_blinkdl_export_of_a_tied_model_gets_a_head():
    config = tiny_config(tie_word_embeddings=True)
    blink = convert_hf_to_blinkdl(random_state_dict(config))
    assert torch.equal(blink["head.weight"], blink["emb.weight"])


def test_base_model_file_loads_without_a_head(tmp_path):
    """HF's RwkvModel.save_pretrained writes no head and no `rwkv.` prefix."""
    config = tiny_config()
    state_dict = random_state_dict(config)
    base = {key.removeprefix("rwkv."): value for key, value in state_dict.items() if key != "head.weight"}
    save_hf_dir(tmp_path, config, base)
    loaded = load_checkpoint(tmp_path)[1]
    assert "head.weight" not in loaded
    with pytest.raises(CheckpointError, match="missing keys: head.weight"):
        check_state_dict(loaded, config)
    check_state_dict(loaded, config, require_head=False)
