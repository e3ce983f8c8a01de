"""Read and write RWKV-4 weights: Hugging Face directories (safetensors or .bin, single or sharded), BlinkDL .pth.

Every failure is a CheckpointError naming the file (or key) at fault. Pickled files are only ever read with
`torch.load(weights_only=True)`, so a checkpoint cannot run code. The in-memory format is HF's parameter names.
"""
from __future__ import annotations

import json
import os
import pickle
import tempfile
import zipfile
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file as load_safetensors_file
from safetensors.torch import save_file as save_safetensors_file

from ..models.rwkv4.blinkdl import convert_blinkdl_to_hf, infer_config_from_blinkdl, is_blinkdl_state_dict
from ..models.rwkv4.config import CONFIG_NAME, RwkvConfig
from ..errors import CheckpointError
from ..models.variants import RWKV4, blinkdl_family

SAFE_WEIGHTS_NAME = "model.safetensors"
SAFE_WEIGHTS_INDEX_NAME = "model.safetensors.index.json"
BIN_WEIGHTS_NAME = "pytorch_model.bin"
BIN_WEIGHTS_INDEX_NAME = "pytorch_model.bin.index.json"
WEIGHT_NAMES = (SAFE_WEIGHTS_NAME, SAFE_WEIGHTS_INDEX_NAME, BIN_WEIGHTS_NAME, BIN_WEIGHTS_INDEX_NAME)
TORCH_SUFFIXES = (".bin", ".pth", ".pt")
TORCH_LOAD_ERRORS = (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile,
                     KeyError, AttributeError, TypeError, ImportError, IndexError)
MAX_LISTED = 8

StateDict = dict[str, torch.Tensor]


# ---- loading weight files -------------------------------------------------------------------------
def load_state_dict_from_dir(directory: str | Path) -> StateDict:
    """Load the weights of an HF directory (safetensors first, then .bin; single file, then index),
    or of one weight file (.safetensors, .bin, .pth, or a *.index.json) when given a file path."""
    path = Path(directory)
    if path.is_file():
        return load_weight_file(path)
    if not path.is_dir():
        raise CheckpointError(f"no such checkpoint file or directory: {path}")
    return load_weight_file(find_weight_file(path))


def find_weight_file(directory: Path) -> Path:
    """The preferred HF weight file in `directory`, else its only .pth/.pt file."""
    for name in WEIGHT_NAMES:
        if (directory / name).is_file():
            return directory / name
    pth_files = sorted(p for p in directory.iterdir() if p.suffix in (".pth", ".pt") and p.is_file())
    if len(pth_files) == 1:
        return pth_files[0]
    if len(pth_files) > 1:
        names = ", ".join(p.name for p in pth_files)
        raise CheckpointError(f"{directory} holds several .pth checkpoints ({names}); pass the path of one of them")
    raise CheckpointError(
        f"no weight file in {directory}: expected one of {', '.join(WEIGHT_NAMES)} or a BlinkDL .pth; "
        f"it contains: {_describe_contents(directory)}"
    )


def load_weight_file(path: str | Path) -> StateDict:
    """Load one weight file, choosing the reader by its name."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"weight file not found: {path}")
    if path.name.endswith(".index.json"):
        return _load_sharded(path)
    return _load_single_file(path)


def _load_single_file(path: Path) -> StateDict:
    if path.suffix == ".safetensors":
        return _load_safetensors(path)
    if path.suffix in TORCH_SUFFIXES:
        return _load_torch_file(path)
    raise CheckpointError(f"unsupported weight file {path}: expected .safetensors, .bin, .pth or *.index.json")


def _load_safetensors(path: Path) -> StateDict:
    try:
        return load_safetensors_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError) as err:
        raise CheckpointError(f"cannot read safetensors file {path} (truncated or corrupt?): {err}") from None


def _load_torch_file(path: Path) -> StateDict:
    try:
        # mmap (zip-format files, every torch.save since 1.6): tensors stay on disk until used
        loaded = torch.load(path, map_location="cpu", weights_only=True, mmap=zipfile.is_zipfile(path))
    except TORCH_LOAD_ERRORS as err:
        raise CheckpointError(
            f"cannot read PyTorch file {path} (truncated, corrupt, or holds objects other than tensors; "
            f"only weights_only loading is allowed): {type(err).__name__}: {_torch_load_reason(err)}"
        ) from None
    return _as_state_dict(loaded, path)


def _as_state_dict(loaded: object, path: Path) -> StateDict:
    if not isinstance(loaded, dict):
        raise CheckpointError(f"{path} holds a {type(loaded).__name__}, not a dict of tensors")
    for key, value in loaded.items():
        if not isinstance(key, str):
            raise CheckpointError(f"{path} has a non-string key {key!r}")
        if not isinstance(value, torch.Tensor):
            raise CheckpointError(f"{path}: value of {key!r} is a {type(value).__name__}, not a tensor")
    return loaded


def _load_sharded(index_path: Path) -> StateDict:
    """Load every shard an index names, each once; keys come from the index's `weight_map`."""
    weight_map = _read_weight_map(index_path)
    shards = {name: _load_single_file(_shard_path(index_path, name)) for name in sorted(set(weight_map.values()))}
    missing = [(key, shard) for key, shard in weight_map.items() if key not in shards[shard]]
    if missing:
        listed = ", ".join(f"{key!r} (in {shard})" for key, shard in missing[:MAX_LISTED])
        raise CheckpointError(f"{index_path}: {len(missing)} key(s) listed in weight_map are missing: {listed}")
    return {key: shards[shard][key] for key, shard in weight_map.items()}


def _read_weight_map(index_path: Path) -> dict[str, str]:
    try:
        index = json.loads(index_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CheckpointError(f"cannot read shard index {index_path}: {err}") from None
    weight_map = index.get("weight_map") if isinstance(index, dict) else None
    if not isinstance(weight_map, dict) or not weight_map:
        raise CheckpointError(f"shard index {index_path} has no 'weight_map' object mapping keys to shard files")
    for key, shard in weight_map.items():
        if not isinstance(shard, str) or not shard or Path(shard).name != shard:
            raise CheckpointError(f"shard index {index_path}: weight_map[{key!r}] = {shard!r} is not a file name")
    return weight_map


def _shard_path(index_path: Path, shard: str) -> Path:
    path = index_path.parent / shard
    if not path.is_file():
        raise CheckpointError(f"shard {shard!r} listed in {index_path} is missing from {index_path.parent}")
    return path


# ---- checking against a config --------------------------------------------------------------------
def expected_shapes(config: RwkvConfig) -> dict[str, tuple[int, ...]]:
    """{parameter name: shape} for an HF-format RwkvForCausalLM with this config (head omitted when tied)."""
    hidden, vocab = config.hidden_size, config.vocab_size
    shapes: dict[str, tuple[int, ...]] = {"rwkv.embeddings.weight": (vocab, hidden)}
    shapes["rwkv.blocks.0.pre_ln.weight"] = (hidden,)
    shapes["rwkv.blocks.0.pre_ln.bias"] = (hidden,)
    for layer in range(config.num_hidden_layers):
        shapes.update(_block_shapes(layer, config))
    shapes["rwkv.ln_out.weight"] = (hidden,)
    shapes["rwkv.ln_out.bias"] = (hidden,)
    if not config.tie_word_embeddings:
        shapes["head.weight"] = (vocab, hidden)
    return shapes


def _block_shapes(layer: int, config: RwkvConfig) -> dict[str, tuple[int, ...]]:
    hidden, attn, inner = config.hidden_size, config.attention_hidden_size, config.intermediate_size
    mix = (1, 1, hidden)
    local = {
        "ln1.weight": (hidden,), "ln1.bias": (hidden,), "ln2.weight": (hidden,), "ln2.bias": (hidden,),
        "attention.time_decay": (attn,), "attention.time_first": (attn,),
        "attention.time_mix_key": mix, "attention.time_mix_value": mix, "attention.time_mix_receptance": mix,
        "attention.key.weight": (attn, hidden), "attention.value.weight": (attn, hidden),
        "attention.receptance.weight": (attn, hidden), "attention.output.weight": (hidden, attn),
        "feed_forward.time_mix_key": mix, "feed_forward.time_mix_receptance": mix,
        "feed_forward.key.weight": (inner, hidden), "feed_forward.receptance.weight": (hidden, hidden),
        "feed_forward.value.weight": (hidden, inner),
    }
    return {f"rwkv.blocks.{layer}.{name}": shape for name, shape in local.items()}


def check_state_dict(state_dict: StateDict, config: RwkvConfig, *, require_head: bool = True) -> None:
    """Raise CheckpointError naming missing keys, unexpected keys and mismatched shapes, if any.

    A tied model ignores a stored `head.weight`; `require_head=False` accepts a base-model (RwkvModel) file.
    """
    expected = expected_shapes(config)
    present = set(state_dict)
    if config.tie_word_embeddings:
        present.discard("head.weight")
    elif not require_head and "head.weight" not in present:
        expected.pop("head.weight")
    check_shapes({key: state_dict[key] for key in present}, expected)


def check_shapes(state_dict: StateDict, expected: dict[str, tuple[int, ...]]) -> None:
    """Raise CheckpointError naming missing keys, unexpected keys and mismatched shapes, if any (any family)."""
    present = set(state_dict)
    missing = sorted(set(expected) - present)
    unexpected = sorted(present - set(expected))
    mismatched = [(key, expected[key], tuple(state_dict[key].shape))
                  for key in expected if key in present and tuple(state_dict[key].shape) != expected[key]]
    problems = []
    if missing:
        problems.append(f"missing keys: {_short_list(missing)}")
    if unexpected:
        problems.append(f"unexpected keys: {_short_list(unexpected)}")
    if mismatched:
        shown = "; ".join(f"{key}: expected {want}, got {got}" for key, want, got in mismatched[:MAX_LISTED])
        problems.append(f"shape mismatches ({len(mismatched)}): {shown}")
    if problems:
        raise CheckpointError("checkpoint does not match the config: " + " | ".join(problems))


# ---- saving ---------------------------------------------------------------------------------------
def save_state_dict(state_dict: StateDict, directory: str | Path) -> Path:
    """Write `directory/model.safetensors` atomically; shared or non-contiguous tensors are copied first."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / SAFE_WEIGHTS_NAME
    fd, tmp_name = tempfile.mkstemp(dir=directory, prefix=f".{SAFE_WEIGHTS_NAME}.", suffix=".tmp")
    os.close(fd)
    try:
        save_safetensors_file(_prepare_for_save(state_dict), tmp_name, metadata={"format": "pt"})
        os.replace(tmp_name, target)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return target


def _prepare_for_save(state_dict: StateDict) -> StateDict:
    """CPU, contiguous tensors that own their storage: safetensors refuses shared memory."""
    seen_storages: set[int] = set()
    prepared = {}
    for key, tensor in state_dict.items():
        if not isinstance(tensor, torch.Tensor):
            raise CheckpointError(f"cannot save {key!r}: a {type(tensor).__name__}, not a tensor")
        tensor = tensor.detach().to("cpu").contiguous()
        storage = tensor.untyped_storage().data_ptr()
        if storage in seen_storages or tensor.numel() != tensor.untyped_storage().nbytes() // tensor.element_size():
            tensor = tensor.clone()
        seen_storages.add(tensor.untyped_storage().data_ptr())
        prepared[key] = tensor
    return prepared


# ---- whole checkpoints ----------------------------------------------------------------------------
def load_checkpoint(path: str | Path) -> tuple[RwkvConfig, StateDict]:
    """(config, HF-format state dict) from an HF directory, a weight file, or a BlinkDL .pth (config inferred).

    A base-model file (HF RwkvModel: keys without `rwkv.`, no head) comes back with `rwkv.` keys and no head.
    """
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"no such checkpoint file or directory: {path}")
    weight_file = path if path.is_file() else find_weight_file(path)
    state_dict = load_weight_file(weight_file)
    config_path = weight_file.parent / CONFIG_NAME
    if is_blinkdl_state_dict(state_dict):
        if blinkdl_family(state_dict, source=str(weight_file)) != RWKV4:  # names any variant it refuses
            raise CheckpointError(f"{weight_file} is an RWKV-7 checkpoint: load it with Rwkv7ForCausalLM "
                                  "or rwkv_app.from_pretrained")
        has_config = config_path.is_file()
        config = RwkvConfig.from_json_file(config_path) if has_config else infer_config_from_blinkdl(state_dict)
        state_dict, require_head = convert_blinkdl_to_hf(state_dict), True
    else:
        if not config_path.is_file():
            raise CheckpointError(f"{weight_file} holds Hugging Face weights but {config_path} is missing")
        config = RwkvConfig.from_json_file(config_path)
        require_head = any(key.startswith("rwkv.") for key in state_dict)  # else a base-model file
        state_dict = with_base_prefix(state_dict)
    check_state_dict(state_dict, config, require_head=require_head)
    return config, state_dict


def with_base_prefix(state_dict: StateDict) -> StateDict:
    """Add `rwkv.` to keys of a base-model file saved without it (HF's RwkvModel.save_pretrained)."""
    if any(key.startswith("rwkv.") for key in state_dict):
        return state_dict
    return {(key if key == "head.weight" else "rwkv." + key): value for key, value in state_dict.items()}


# ---- messages -------------------------------------------------------------------------------------
def _describe_contents(directory: Path) -> str:
    names = sorted(p.name + ("/" if p.is_dir() else "") for p in directory.iterdir())
    return _short_list(names) if names else "nothing (empty directory)"


def _short_list(items: list[str]) -> str:
    shown = ", ".join(items[:MAX_LISTED])
    return shown + (f", ... ({len(items) - MAX_LISTED} more)" if len(items) > MAX_LISTED else "")


def _torch_load_reason(err: BaseException) -> str:
    """The informative line of a torch.load error: the refused global for weights_only, else the first line."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    refused = [line for line in lines if "WeightsUnpickler" in line or "unsupported" in line.lower()]
    return (refused or lines or ["(no message)"])[0]
