"""BlinkDL x070 `.pth` names <-> flash-linear-attention's names, and the config read off the tensor shapes.

Only renames and reshapes, as fla's convert_from_rwkv7 does: the LoRA matrices `w1/a1/v1/g1` (C, D) and
`w2/a2/v2/g2` (D, C) are the transposed weights of `*_lora.lora.0` and `*_lora.lora.2`, their `w0/a0/v0`
(1, 1, C) the bias of `lora.2`; `k_k`, `k_a` and the channel mix's `x_k` are stored (1, 1, C) by BlinkDL and
(C,) by fla. Block 0's `v0/v1/v2` exist in BlinkDL files but are never used (block 0 makes `v_first`): dropped.
"""
from __future__ import annotations

import re

import torch

from ...errors import CheckpointError
from .config import Rwkv7Config

SAME, FLAT, TRANSPOSED, BIAS = "same", "flat", "transposed", "bias"
TOP_LEVEL = {
    "emb.weight": "model.embeddings.weight",
    "ln_out.weight": "model.norm.weight",
    "ln_out.bias": "model.norm.bias",
    "head.weight": "lm_head.weight",
}
BLOCK = {  # BlinkDL suffix after `blocks.N.` -> (fla suffix after `model.layers.N.`, how the tensor changes)
    "ln0.weight": ("pre_norm.weight", SAME), "ln0.bias": ("pre_norm.bias", SAME),
    "ln1.weight": ("attn_norm.weight", SAME), "ln1.bias": ("attn_norm.bias", SAME),
    "ln2.weight": ("ffn_norm.weight", SAME), "ln2.bias": ("ffn_norm.bias", SAME),
    **{f"att.x_{m}": (f"attn.x_{m}", SAME) for m in "rwkvag"},
    **{f"att.{b}0": (f"attn.{b}_lora.lora.2.bias", BIAS) for b in "wav"},
    **{f"att.{b}1": (f"attn.{b}_lora.lora.0.weight", TRANSPOSED) for b in "wavg"},
    **{f"att.{b}2": (f"attn.{b}_lora.lora.2.weight", TRANSPOSED) for b in "wavg"},
    "att.k_k": ("attn.k_k", FLAT), "att.k_a": ("attn.k_a", FLAT), "att.r_k": ("attn.r_k", SAME),
    "att.receptance.weight": ("attn.r_proj.weight", SAME), "att.key.weight": ("attn.k_proj.weight", SAME),
    "att.value.weight": ("attn.v_proj.weight", SAME), "att.output.weight": ("attn.o_proj.weight", SAME),
    "att.ln_x.weight": ("attn.g_norm.weight", SAME), "att.ln_x.bias": ("attn.g_norm.bias", SAME),
    "ffn.x_k": ("ffn.x_k", FLAT), "ffn.key.weight": ("ffn.key.weight", SAME),
    "ffn.value.weight": ("ffn.value.weight", SAME),
}
FLA_TOP_LEVEL = {fla: blink for blink, fla in TOP_LEVEL.items()}
FLA_BLOCK = {fla: (blink, how) for blink, (fla, how) in BLOCK.items()}
UNUSED = ("blocks.0.att.v0", "blocks.0.att.v1", "blocks.0.att.v2")
BLINK_KEY = re.compile(r"blocks\.(\d+)\.(.+)")
FLA_KEY = re.compile(r"model\.layers\.(\d+)\.(.+)")
REQUIRED = ("emb.weight", "blocks.0.att.r_k", "blocks.0.att.w1", "blocks.0.att.a1", "blocks.0.att.g1",
            "blocks.0.ffn.key.weight")


def blinkdl_to_fla(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename (and reshape) BlinkDL x070 tensors to fla's names; an unknown key is a CheckpointError."""
    converted = {}
    for key, tensor in state_dict.items():
        if key in UNUSED:
            continue
        if key in TOP_LEVEL:
            converted[TOP_LEVEL[key]] = tensor
            continue
        match = BLINK_KEY.fullmatch(key)
        if match is None or match.group(2) not in BLOCK:
            raise CheckpointError(f"unknown key {key!r} in a BlinkDL RWKV-7 checkpoint (not an x070 parameter)")
        layer, suffix = match.groups()
        name, how = BLOCK[suffix]
        converted[f"model.layers.{layer}.{name}"] = _to_fla(tensor, how, key)
    return converted


def fla_to_blinkdl(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The inverse of `blinkdl_to_fla`: fla names back to a BlinkDL x070 state dict (writes .pth files)."""
    converted = {}
    for key, tensor in state_dict.items():
        if key in FLA_TOP_LEVEL:
            converted[FLA_TOP_LEVEL[key]] = tensor
            continue
        match = FLA_KEY.fullmatch(key)
        if match is None or match.group(2) not in FLA_BLOCK:
            raise CheckpointError(f"unknown key {key!r} in an RWKV-7 state dict")
        layer, suffix = match.groups()
        name, how = FLA_BLOCK[suffix]
        converted[f"blocks.{layer}.{name}"] = _to_blinkdl(tensor, how)
    return converted


def _to_fla(tensor: torch.Tensor, how: str, key: str) -> torch.Tensor:
    if how == TRANSPOSED:
        if tensor.ndim != 2:
            raise CheckpointError(f"BlinkDL key {key!r} has shape {tuple(tensor.shape)}; expected a matrix")
        return tensor.t().contiguous()
    if how in (FLAT, BIAS):
        if tensor.ndim == 0 or any(size != 1 for size in tensor.shape[:-1]):
            raise CheckpointError(f"BlinkDL key {key!r} has shape {tuple(tensor.shape)}; expected (1, 1, C)")
        return tensor.reshape(tensor.shape[-1])
    return tensor


def _to_blinkdl(tensor: torch.Tensor, how: str) -> torch.Tensor:
    if how == TRANSPOSED:
        return tensor.t().contiguous()
    if how in (FLAT, BIAS):
        return tensor.reshape(1, 1, tensor.shape[-1])
    return tensor


def infer_config7(state_dict: dict[str, torch.Tensor]) -> Rwkv7Config:
    """Sizes from the tensor shapes of a BlinkDL x070 state dict: head size from r_k, LoRA widths from w1/a1/v1/g1."""
    for key in REQUIRED:
        if key not in state_dict:
            raise CheckpointError(f"BlinkDL RWKV-7 checkpoint has no {key!r}; cannot infer the model config from it")
    vocab_size, hidden_size = state_dict["emb.weight"].shape
    num_layers = max(int(m.group(1)) for m in map(BLINK_KEY.fullmatch, state_dict) if m is not None) + 1
    v1 = state_dict.get("blocks.1.att.v1", state_dict.get("blocks.0.att.v1"))
    return Rwkv7Config(
        vocab_size=vocab_size, hidden_size=hidden_size, num_hidden_layers=num_layers,
        head_dim=state_dict["blocks.0.att.r_k"].shape[-1],
        intermediate_size=state_dict["blocks.0.ffn.key.weight"].shape[0],
        decay_low_rank_dim=state_dict["blocks.0.att.w1"].shape[-1],
        a_low_rank_dim=state_dict["blocks.0.att.a1"].shape[-1],
        gate_low_rank_dim=state_dict["blocks.0.att.g1"].shape[-1],
        v_low_rank_dim=v1.shape[-1] if v1 is not None else None,
        bos_token_id=0, eos_token_id=0,  # World's <|endoftext|>: BlinkDL's x070 checkpoints are World-tokenized
    )
