"""`rwkv_app.from_pretrained(name_or_path)`: load any supported checkpoint as the right family's causal LM.

The family comes from the checkpoint itself (rwkv_app/models/variants.py): config.json's `model_type` for a
Hugging Face folder, the tensor names for a BlinkDL `.pth`. Unsupported variants are refused by name.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch

from .checkpoints import find_weight_file, load_weight_file
from ..models.rwkv4.config import CONFIG_NAME
from ..errors import CheckpointError
from .hub import resolve_model_dir
from ..models.rwkv4.modeling import RwkvForCausalLM
from ..models.rwkv7 import Rwkv7ForCausalLM
from ..models.variants import RWKV4, RWKV7, family_of

CAUSAL_LM = {RWKV4: RwkvForCausalLM, RWKV7: Rwkv7ForCausalLM}


def from_pretrained(name_or_path: str | Path, revision: str | None = None, dtype: torch.dtype | str | None = None,
                    device: torch.device | str | None = None, cache_dir: str | Path | None = None,
                    local_files_only: bool | None = None):
    """The causal LM (RwkvForCausalLM or Rwkv7ForCausalLM) of a local folder, a .pth file or a Hub repo id."""
    path = resolve_model_dir(name_or_path, revision=revision, cache_dir=cache_dir, local_files_only=local_files_only)
    return CAUSAL_LM[detect_family(path)].from_pretrained(path, dtype=dtype, device=device)


def detect_family(path: str | Path) -> str:
    """RWKV4 or RWKV7 for a local checkpoint folder or weight file; CheckpointError for anything else."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"no such checkpoint file or directory: {path}")
    weight_file = path if path.is_file() else find_weight_file(path)
    config_path = weight_file.parent / CONFIG_NAME
    model_type = None if weight_file.suffix in (".pth", ".pt") else _model_type(config_path)  # a .pth names its own
    if model_type is not None:
        return family_of((), model_type, str(weight_file))
    return family_of(load_weight_file(weight_file).keys(), None, str(weight_file))


def _model_type(config_path: Path) -> str | None:
    """config.json's model_type, or None when there is no readable config (the weights decide then)."""
    try:
        values = json.loads(config_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return values.get("model_type", "rwkv") if isinstance(values, dict) else None
