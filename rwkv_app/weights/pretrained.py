"""from_pretrained / save_pretrained for the model classes: local directories, .pth files and Hub repos."""
from __future__ import annotations

from pathlib import Path

import torch

from .checkpoints import check_state_dict, load_checkpoint, save_state_dict
from ..models.rwkv4.config import RwkvConfig
from ..errors import CheckpointError, InputError
from .hub import resolve_model_dir
from ..models.quantize import INT8, is_int8, quantize_model

DTYPES = {
    "float32": torch.float32, "fp32": torch.float32, "float": torch.float32,
    "float16": torch.float16, "fp16": torch.float16, "half": torch.float16,
    "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
}
FLOAT32_PARAMS = ("time_decay", "time_first")  # kept in float32 whatever the model dtype, as HF does


def resolve_dtype(dtype: torch.dtype | str | None) -> torch.dtype:
    if dtype is None:
        return torch.float32
    if isinstance(dtype, torch.dtype) and dtype in DTYPES.values():
        return dtype
    if isinstance(dtype, str) and dtype.lower() in DTYPES:
        return DTYPES[dtype.lower()]
    raise InputError(f"dtype must be one of float32, float16, bfloat16 (or int8 weights, on the CPU); got {dtype!r}")


def load_dtype(dtype: torch.dtype | str | None) -> torch.dtype:
    """The dtype weights are read in: resolve_dtype's, or float32 for "int8" (quantized after loading)."""
    return resolve_dtype("float32" if is_int8(dtype) else dtype)


def resolve_device(device: torch.device | str | None) -> torch.device:
    try:
        device = torch.device(device if device is not None else "cpu")
    except (RuntimeError, TypeError):
        raise InputError(f"device {device!r} is not a torch device (use 'cpu' or 'cuda')") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"device {str(device)!r} requested but CUDA is not available on this machine")
    if device.type not in ("cpu", "cuda"):
        raise InputError(f"device {str(device)!r} is not supported (use 'cpu' or 'cuda')")
    return device


def convert_tensors(state_dict: dict, dtype: torch.dtype, device: torch.device) -> dict[str, torch.Tensor]:
    def target(key: str, tensor: torch.Tensor) -> torch.dtype:
        if not tensor.is_floating_point():
            return tensor.dtype
        return torch.float32 if key.endswith(FLOAT32_PARAMS) else dtype
    return {key: t.to(device=device, dtype=target(key, t)) for key, t in state_dict.items()}


class PretrainedMixin:
    """Loading and saving shared by RwkvModel and RwkvForCausalLM; `base_prefix` is "rwkv." for the bare model."""

    base_prefix = ""
    head_key, embed_key = "head.weight", "rwkv.embeddings.weight"  # the causal LM's names
    base_model_attr = "rwkv"  # the causal LM's attribute holding the bare model

    @classmethod
    def from_pretrained(cls, repo_id_or_path: str | Path, revision: str | None = None,
                        dtype: torch.dtype | str | None = None, device: torch.device | str | None = None,
                        cache_dir: str | Path | None = None, local_files_only: bool | None = None):
        """Load from a local HF directory, a BlinkDL .pth, or a Hub repo id (through huggingface_hub's cache).

        The model comes back in eval mode. Nothing is kept if any step fails.
        """
        int8 = is_int8(dtype)  # int8 weights: loaded in float32, then quantized (rwkv_app/models/quantize.py)
        dtype, device = resolve_dtype("float32" if int8 else dtype), resolve_device(device)
        if int8 and device.type != "cpu":
            raise InputError(f"dtype 'int8' runs on the CPU only; on {device.type} use float16 or bfloat16")
        path = resolve_model_dir(repo_id_or_path, revision=revision, cache_dir=cache_dir,
                                 local_files_only=local_files_only)
        config, state_dict = cls._read_checkpoint(path)
        state_dict = convert_tensors(state_dict, dtype, device)
        model = cls._from_state_dict(config, state_dict)
        return quantize_model(model) if int8 else model

    @classmethod
    def _read_checkpoint(cls, path: Path) -> tuple[RwkvConfig, dict[str, torch.Tensor]]:
        """(config, checked state dict with the causal LM's names) of a local checkpoint; a family overrides it."""
        config, state_dict = load_checkpoint(path)
        if config.tie_word_embeddings:
            state_dict.pop("head.weight", None)
        check_state_dict(state_dict, config, require_head=cls.base_prefix == "")
        return config, state_dict

    @classmethod
    def _from_state_dict(cls, config: RwkvConfig, state_dict: dict[str, torch.Tensor]):
        own = {key[len(cls.base_prefix):]: value for key, value in state_dict.items()
               if key.startswith(cls.base_prefix)}
        if cls.head_key not in own and config.tie_word_embeddings and cls.base_prefix == "":
            own[cls.head_key] = own[cls.embed_key]
        with torch.device("meta"):
            model = cls(config)
        try:
            model.load_state_dict(own, strict=True, assign=True)
        except RuntimeError as err:
            raise CheckpointError(f"weights do not fit the model: {err}") from None
        model.tie_weights()
        return model.eval()

    def tie_weights(self) -> None:
        """Overridden by the causal LM, whose head may share the embedding matrix."""

    def save_pretrained(self, directory: str | Path) -> None:
        """Write config.json and model.safetensors. Weights are never stored rescaled."""
        if getattr(self, "weight_dtype", None) == INT8:
            raise InputError("an int8 model is not saved: int8 is applied at load time; save the float model")
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        state_dict = {key: value.detach() for key, value in self.state_dict().items()}
        if self.config.tie_word_embeddings:
            state_dict.pop(self.head_key, None)
        save_state_dict(state_dict, directory)
        self.config.save_pretrained(directory)

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return self.rwkv_base().embeddings.weight.dtype

    def rwkv_base(self):
        return getattr(self, self.base_model_attr, self)
