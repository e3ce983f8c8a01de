"""What the training command needs to know per model family: the class, a fresh model, and the weight-decay rule.

    rwkv4  RwkvForCausalLM (Hugging Face RWKV layout); decay on every parameter of two or more dimensions but the
           embeddings (the rule the bundled demo-model was trained with).
    rwkv7  Rwkv7ForCausalLM (fla names, BlinkDL's x070 initialisation); decay on the `.weight` matrices only
           (RWKV-LM v7's rule: `len(p.squeeze().shape) >= 2 and ".weight" in name`), so the token-shift mixes
           (1, 1, C), the bonus `r_k` (H, N) and the LoRA biases are not decayed; not the embeddings either.
In both, residual output projections start at zero (each block starts as the identity) and a tied head is drawn
from N(0, (0.5 / sqrt(C))^2) (the embeddings' own tiny init would make every logit ~0).
"""
from __future__ import annotations

import math

import torch
from torch import nn

from ..models.rwkv4.config import RwkvConfig
from ..errors import ConfigError
from ..models.rwkv4.modeling import RwkvForCausalLM
from ..models.rwkv7 import Rwkv7Config, Rwkv7ForCausalLM

FAMILIES = ("rwkv4", "rwkv7")
MODEL_CLASSES = {"rwkv4": RwkvForCausalLM, "rwkv7": Rwkv7ForCausalLM}


def check_family(family: str) -> str:
    if family not in MODEL_CLASSES:
        raise ConfigError(f"unknown model family {family!r}: choose one of {', '.join(FAMILIES)}")
    return family


def new_model(family: str, vocab_size: int, hidden_size: int, num_layers: int, context: int,
              tie_embeddings: bool) -> nn.Module:
    """A fresh model of `family` in train mode, residual branches zeroed (the caller seeds torch first)."""
    if check_family(family) == "rwkv4":
        config = RwkvConfig(vocab_size=vocab_size, hidden_size=hidden_size, num_hidden_layers=num_layers,
                            context_length=context, tie_word_embeddings=tie_embeddings)
        model = RwkvForCausalLM(config)
        outputs = [(b.attention.output, b.feed_forward.value) for b in model.rwkv.blocks]
        head = model.head
    else:
        config = Rwkv7Config(vocab_size=vocab_size, hidden_size=hidden_size, num_hidden_layers=num_layers,
                             tie_word_embeddings=tie_embeddings)
        model = Rwkv7ForCausalLM(config)
        outputs = [(b.attn.o_proj, b.ffn.value) for b in model.model.layers]
        head = model.lm_head
    with torch.no_grad():
        if tie_embeddings:  # the shared matrix needs the head's scale, not the embeddings' tiny uniform one
            nn.init.normal_(head.weight, std=0.5 / math.sqrt(hidden_size))
        for attention_out, ffn_out in outputs:
            attention_out.weight.zero_()
            ffn_out.weight.zero_()
    return model.train()


def decays(family: str, name: str, param: torch.Tensor) -> bool:
    """Whether AdamW's weight decay applies to this parameter (see the module docstring)."""
    if "embeddings" in name:
        return False
    if family == "rwkv4":
        return param.dim() >= 2
    return name.endswith(".weight") and param.squeeze().dim() >= 2
