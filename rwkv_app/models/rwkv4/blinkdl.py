"""Original BlinkDL RWKV-4 `.pth` checkpoints: detect them, convert to and from Hugging Face names, infer a config.

BlinkDL files use `emb.weight`, `blocks.0.ln0.*`, `blocks.N.att.*`, `blocks.N.ffn.*`, `time_mix_k/v/r`,
`ln_out.*` and `head.weight`. Hugging Face's conversion script only renames keys (the raw `time_decay`
is stored the same way in both), so conversion is a key rename plus reshaping `time_mix_*` to (1, 1, H).
"""
from __future__ import annotations

import re

import torch

from .config import RwkvConfig
from ...errors import CheckpointError

HF_PREFIX = "rwkv."
TOP_LEVEL = {  # BlinkDL name -> HF name, outside the blocks
    "emb.weight": "rwkv.embeddings.weight",
    "ln_out.weight": "rwkv.ln_out.weight",
    "ln_out.bias": "rwkv.ln_out.bias",
    "head.weight": "head.weight",
}
BLOCK_SUFFIXES = {  # BlinkDL suffix after `blocks.N.` -> HF suffix after `rwkv.blocks.N.`
    "ln0.weight": "pre_ln.weight",
    "ln0.bias": "pre_ln.bias",
    "ln1.weight": "ln1.weight",
    "ln1.bias": "ln1.bias",
    "ln2.weight": "ln2.weight",
    "ln2.bias": "ln2.bias",
    "att.time_decay": "attention.time_decay",
    "att.time_first": "attention.time_first",
    "att.time_mix_k": "attention.time_mix_key",
    "att.time_mix_v": "attention.time_mix_value",
    "att.time_mix_r": "attention.time_mix_receptance",
    "att.key.weight": "attention.key.weight",
    "att.value.weight": "attention.value.weight",
    "att.receptance.weight": "attention.receptance.weight",
    "att.output.weight": "attention.output.weight",
    "ffn.time_mix_k": "feed_forward.time_mix_key",
    "ffn.time_mix_r": "feed_forward.time_mix_receptance",
    "ffn.key.weight": "feed_forward.key.weight",
    "ffn.receptance.weight": "feed_forward.receptance.weight",
    "ffn.value.weight": "feed_forward.value.weight",
}
HF_TOP_LEVEL = {hf: blink for blink, hf in TOP_LEVEL.items()}
HF_BLOCK_SUFFIXES = {hf: blink for blink, hf in BLOCK_SUFFIXES.items()}
BLINK_BLOCK_KEY = re.compile(r"blocks\.(\d+)\.(.+)")
HF_BLOCK_KEY = re.compile(r"rwkv\.blocks\.(\d+)\.(.+)")
BLINK_MARKER = re.compile(r"blocks\.\d+\.(att|ffn|ln0)\.")
REQUIRED_FOR_INFERENCE = ("emb.weight", "blocks.0.att.key.weight", "blocks.0.ffn.key.weight")


def is_blinkdl_state_dict(state_dict: dict[str, torch.Tensor]) -> bool:
    """True for BlinkDL names (`emb.weight`, `blocks.N.att.*`); False for HF names, prefixed or not."""
    if any(key.startswith(HF_PREFIX) for key in state_dict) or "embeddings.weight" in state_dict:
        return False
    return "emb.weight" in state_dict or any(BLINK_MARKER.match(key) for key in state_dict)


def convert_blinkdl_to_hf(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename BlinkDL keys to HF keys and reshape `time_mix_*` to (1, 1, H). Tensors are not copied."""
    if "emb.weight" not in state_dict:
        raise CheckpointError("BlinkDL checkpoint has no 'emb.weight' (the token embedding); is it an RWKV-4 file?")
    converted = {}
    for key, tensor in state_dict.items():
        new_key = _blinkdl_key_to_hf(key)
        if ".time_mix_" in key:
            tensor = _as_time_mix(tensor, key)
        converted[new_key] = tensor
    return converted


def convert_hf_to_blinkdl(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename HF keys to BlinkDL keys, the inverse of `convert_blinkdl_to_hf`.

    BlinkDL files always carry `head.weight`; a tied HF state dict without one gets a copy of the embeddings.
    """
    converted = {_hf_key_to_blinkdl(key): tensor for key, tensor in state_dict.items()}
    if "head.weight" not in converted and "emb.weight" in converted:
        converted["head.weight"] = converted["emb.weight"].clone()
    return converted


def infer_config_from_blinkdl(state_dict: dict[str, torch.Tensor]) -> RwkvConfig:
    """Read the model sizes off the tensor shapes; everything else keeps HF's RWKV-4 defaults."""
    for key in REQUIRED_FOR_INFERENCE:
        if key not in state_dict:
            raise CheckpointError(f"BlinkDL checkpoint has no {key!r}; cannot infer the model config from it")
    vocab_size, hidden_size = _shape_of(state_dict, "emb.weight", ndim=2)
    return RwkvConfig(
        vocab_size=vocab_size,
        hidden_size=hidden_size,
        num_hidden_layers=_num_layers(state_dict),
        attention_hidden_size=_shape_of(state_dict, "blocks.0.att.key.weight", ndim=2)[0],
        intermediate_size=_shape_of(state_dict, "blocks.0.ffn.key.weight", ndim=2)[0],
        context_length=1024,
        rescale_every=6,
        tie_word_embeddings=False,
    )


def _blinkdl_key_to_hf(key: str) -> str:
    if key in TOP_LEVEL:
        return TOP_LEVEL[key]
    match = BLINK_BLOCK_KEY.fullmatch(key)
    if match is None or match.group(2) not in BLOCK_SUFFIXES:
        raise CheckpointError(f"unknown key {key!r} in BlinkDL checkpoint (not an RWKV-4 parameter)")
    layer, suffix = match.groups()
    if suffix.startswith("ln0.") and layer != "0":
        raise CheckpointError(f"unexpected key {key!r} in BlinkDL checkpoint: only block 0 has ln0")
    return f"rwkv.blocks.{layer}.{BLOCK_SUFFIXES[suffix]}"


def _hf_key_to_blinkdl(key: str) -> str:
    if key in HF_TOP_LEVEL:
        return HF_TOP_LEVEL[key]
    match = HF_BLOCK_KEY.fullmatch(key)
    if match is None or match.group(2) not in HF_BLOCK_SUFFIXES:
        raise CheckpointError(f"unknown key {key!r} in Hugging Face state dict (not an RWKV-4 parameter)")
    layer, suffix = match.groups()
    return f"blocks.{layer}.{HF_BLOCK_SUFFIXES[suffix]}"


def _as_time_mix(tensor: torch.Tensor, key: str) -> torch.Tensor:
    """(H,), (1, H) or (1, 1, H) -> (1, 1, H); anything with a non-1 leading dim is refused."""
    if tensor.ndim == 0 or tensor.ndim > 3 or any(size != 1 for size in tensor.shape[:-1]):
        raise CheckpointError(
            f"BlinkDL key {key!r} has shape {tuple(tensor.shape)}; expected (H,), (1, H) or (1, 1, H)")
    return tensor.reshape(1, 1, tensor.shape[-1])


def _shape_of(state_dict: dict[str, torch.Tensor], key: str, ndim: int) -> tuple[int, ...]:
    shape = tuple(state_dict[key].shape)
    if len(shape) != ndim:
        raise CheckpointError(f"BlinkDL key {key!r} has shape {shape}; expected a {ndim}-d tensor")
    return shape


def _num_layers(state_dict: dict[str, torch.Tensor]) -> int:
    layers = [int(m.group(1)) for m in map(BLINK_BLOCK_KEY.fullmatch, state_dict) if m is not None]
    return max(layers) + 1
