"""Which RWKV architecture a checkpoint holds, from its tensor names: the one place that tells the families apart.

BlinkDL `.pth` files name tensors `emb.weight`, `blocks.N.att.*`, `blocks.N.ffn.*`; each generation has its marks:
RWKV-4 `att.time_first`; RWKV-5 `att.ln_x` / `att.time_faaaa` without RWKV-7's `att.r_k`; RWKV-6 `att.time_maa_*`;
RWKV-7 x070 `att.r_k`; RWKV-7a adds DeepEmbed (`ffn.s_emb.weight`, `ffn.s1`); RWKV-7b adds DEA, a
DeepEmbed attention (`blocks.N.qkv.*`). Hugging Face folders say their family in config.json instead.
"""
from __future__ import annotations

import re
from typing import Iterable

from .rwkv4.blinkdl import is_blinkdl_state_dict
from ..errors import CheckpointError

RWKV4, RWKV7 = "rwkv4", "rwkv7"  # the families this code implements
MODEL_TYPES = {"rwkv": RWKV4, "rwkv7": RWKV7, "rwkv7_fla": RWKV7}  # config.json model_type -> family
BLINK_BLOCK = re.compile(r"blocks\.\d+\.(.+)")


def blinkdl_family(keys: Iterable[str], source: str = "checkpoint") -> str:
    """RWKV4 or RWKV7 for a BlinkDL state dict; a CheckpointError naming any other variant found."""
    suffixes = {m.group(1) for m in map(BLINK_BLOCK.fullmatch, keys) if m is not None}
    refused = _refused_variant(suffixes)
    if refused:
        raise CheckpointError(f"{source} is {refused}, which this code does not implement "
                              "(supported: RWKV-4 and RWKV-7 x070 without DeepEmbed)")
    if "att.r_k" in suffixes:
        return RWKV7
    if "att.time_first" in suffixes:
        return RWKV4
    raise CheckpointError(f"{source} has BlinkDL-style names but no known RWKV layer "
                          "(no blocks.N.att.time_first for RWKV-4, no blocks.N.att.r_k for RWKV-7)")


def _refused_variant(suffixes: set[str]) -> str | None:
    if any(s.startswith("qkv.") for s in suffixes):
        return "an RWKV-7b checkpoint with DEA (DeepEmbed attention, blocks.N.qkv.*)"
    if any(s.startswith(("ffn.s_emb", "ffn.s1", "ffn.s2", "ffn.s0")) for s in suffixes):
        return "an RWKV-7a checkpoint with DeepEmbed (blocks.N.ffn.s_emb)"
    if "att.r_k" in suffixes:
        return None
    if any(s.startswith("att.time_maa") for s in suffixes):
        return "an RWKV-6 checkpoint (att.time_maa_*)"
    if "att.time_faaaa" in suffixes or any(s.startswith("att.ln_x") for s in suffixes):
        return "an RWKV-5 checkpoint (att.ln_x / att.time_faaaa)"
    return None


def is_blinkdl_keys(keys: Iterable[str]) -> bool:
    """True for BlinkDL names (`emb.weight`, `blocks.N.att.*`), False for Hugging Face or fla names."""
    return is_blinkdl_state_dict(dict.fromkeys(keys))


def hf_family(keys: Iterable[str]) -> str:
    """RWKV7 for fla's names (`model.layers.N.attn.*`), else RWKV4 (Hugging Face's `rwkv.blocks.N.*`)."""
    return RWKV7 if any(".attn.r_k" in k for k in keys) else RWKV4


def family_of(keys: Iterable[str], model_type: str | None, source: str = "checkpoint") -> str:
    """The family of a checkpoint: BlinkDL names decide for a .pth, else config.json's model_type, else names."""
    keys = list(keys)
    if is_blinkdl_keys(keys):
        return blinkdl_family(keys, source)
    if model_type is not None:
        if model_type not in MODEL_TYPES:
            raise CheckpointError(f"{source}: config model_type {model_type!r} is not an RWKV family this code "
                                  f"implements ({', '.join(sorted(MODEL_TYPES))})")
        return MODEL_TYPES[model_type]
    return hf_family(keys)
