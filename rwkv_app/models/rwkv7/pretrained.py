"""Loading RWKV-7 checkpoints: BlinkDL x070 `.pth` files and flash-linear-attention's Hugging Face folders.

The in-memory format is fla's parameter names (what `save_pretrained` writes, with a config.json fla reads).
Files are read by rwkv_app/weights/checkpoints.py (safetensors, or `torch.load(weights_only=True)` with mmap); Hub repos
are resolved by rwkv_app/weights/hub.py; variants this code does not implement are refused by rwkv_app/models/variants.py.
"""
from __future__ import annotations

from pathlib import Path

import torch

from ...weights.checkpoints import check_shapes, find_weight_file, load_weight_file
from ..rwkv4.config import CONFIG_NAME
from ...errors import CheckpointError
from ...weights.pretrained import PretrainedMixin
from ..variants import RWKV7, blinkdl_family, is_blinkdl_keys
from .blinkdl import blinkdl_to_fla, infer_config7
from .config import Rwkv7Config

StateDict = dict[str, torch.Tensor]
MIX_NAMES = ("x_r", "x_w", "x_k", "x_v", "x_a", "x_g")


def load_checkpoint7(path: str | Path) -> tuple[Rwkv7Config, StateDict]:
    """(config, state dict with Rwkv7ForCausalLM's names) from a BlinkDL .pth or an fla folder / weight file."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"no such checkpoint file or directory: {path}")
    weight_file = path if path.is_file() else find_weight_file(path)
    state_dict = load_weight_file(weight_file)
    if is_blinkdl_keys(state_dict):
        family = blinkdl_family(state_dict, source=str(weight_file))
        if family != RWKV7:
            raise CheckpointError(f"{weight_file} is an RWKV-4 checkpoint: load it with RwkvForCausalLM "
                                  "or rwkv_app.from_pretrained")
        return infer_config7(state_dict), blinkdl_to_fla(state_dict)
    config_path = weight_file.parent / CONFIG_NAME
    if not config_path.is_file():
        raise CheckpointError(f"{weight_file} holds Hugging Face-style weights but {config_path} is missing")
    config = Rwkv7Config.from_json_file(config_path)
    return config, migrate_fla_names(with_model_prefix(state_dict))


def with_model_prefix(state_dict: StateDict) -> StateDict:
    """Add `model.` to the keys of a bare-model file (fla's RWKV7Model.save_pretrained writes none)."""
    if any(key.startswith("model.") for key in state_dict):
        return state_dict
    return {(key if key == "lm_head.weight" else "model." + key): value for key, value in state_dict.items()}


def migrate_fla_names(state_dict: StateDict) -> StateDict:
    """Older fla folders store the six token-shift mixes as one `attn.x_x` (6, C): split it as fla does."""
    migrated = {}
    for key, tensor in state_dict.items():
        if key.endswith(".attn.x_x"):
            prefix = key[: -len("x_x")]
            migrated.update({prefix + name: tensor[i].reshape(1, 1, -1) for i, name in enumerate(MIX_NAMES)})
        else:
            migrated[key] = tensor
    return migrated


def expected_shapes7(config: Rwkv7Config, causal_lm: type) -> dict[str, tuple[int, ...]]:
    """{name: shape} of an Rwkv7ForCausalLM (`causal_lm`) with this config, read off a model built on the meta
    device."""
    with torch.device("meta"):
        model = causal_lm(config)
    return {key: tuple(value.shape) for key, value in model.state_dict().items()}


class Rwkv7PretrainedMixin(PretrainedMixin):
    """from_pretrained / save_pretrained for Rwkv7Model and Rwkv7ForCausalLM (PretrainedMixin with fla's names)."""

    head_key, embed_key = "lm_head.weight", "model.embeddings.weight"
    base_model_attr = "model"
    causal_lm_class: type = None  # Rwkv7ForCausalLM, set by modeling.py (which imports this module)

    @classmethod
    def _read_checkpoint(cls, path: Path) -> tuple[Rwkv7Config, StateDict]:
        config, state_dict = load_checkpoint7(path)
        expected = expected_shapes7(config, cls.causal_lm_class)
        if config.tie_word_embeddings:
            state_dict.pop(cls.head_key, None)
            expected.pop(cls.head_key, None)
        elif cls.base_prefix and cls.head_key not in state_dict:
            expected.pop(cls.head_key)  # the bare model loads a file without a head
        check_shapes(state_dict, expected)
        return config, state_dict
