"""One-token decode for int8 RWKV-7 models on x86 CPUs: kernels/int8_cpu/rwkv7_step.cpp, one C++ call per block.

The step runs a whole Rwkv7Block: the layer norms, the six token-shift mixes, the int8 projections (the kernel the
per-op path calls), the low-rank branches (float32, as there), the delta-rule state update, the GroupNorm, the bonus,
the gate and the feed-forward. When it applies and why: rwkv_app/models/cpu_decode.py. Its reference is modeling.py's
per-op forward (tests/test_cpu_decode.py).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from kernels import int8_cpu

from .. import cpu_decode
from .config import DECAY_SCALE
from .state import check_state7, init_state7

HEAD_ALIGN = 16  # the step's head size must be a multiple of this (its vector width)


def applies(model, input_ids, inputs_embeds, state, labels, output_hidden_states, attention_mask, extra) -> bool:
    return cpu_decode.applies(model, model.lm_head, input_ids, inputs_embeds, labels, output_hidden_states,
                              attention_mask, extra) \
        and model.wkv_impl in ("auto", "cpu", "cpp") and model.config.head_dim % HEAD_ALIGN == 0 \
        and PLANS.get(model) is not None


def projections(model) -> list:
    return [model.lm_head] + [m for layer in model.model.layers
                              for m in (layer.attn.r_proj, layer.attn.k_proj, layer.attn.v_proj,
                                        layer.attn.o_proj, layer.ffn.key, layer.ffn.value)]


def layer_weights(block) -> list[torch.Tensor]:
    """One block's tensors in the order of rwkv7_step.cpp's `enum Weight`."""
    att, ffn, none = block.attn, block.ffn, torch.empty(0)
    v_lora = att.v_lora.lora if block.layer_idx else None
    return [
        block.attn_norm.weight, block.attn_norm.bias,
        att.x_r, att.x_w, att.x_k, att.x_v, att.x_a, att.x_g, att.k_k, att.k_a, att.r_k,
        *(t for proj in (att.r_proj, att.k_proj, att.v_proj, att.o_proj) for t in (proj.stored_int8, proj.scales)),
        att.w_lora.lora[0].weight, att.w_lora.lora[2].weight, att.w_lora.lora[2].bias,
        att.a_lora.lora[0].weight, att.a_lora.lora[2].weight, att.a_lora.lora[2].bias,
        att.g_lora.lora[0].weight, att.g_lora.lora[2].weight,
        *((v_lora[0].weight, v_lora[2].weight, v_lora[2].bias) if v_lora else (none, none, none)),
        att.g_norm.weight, att.g_norm.bias,
        block.ffn_norm.weight, block.ffn_norm.bias, ffn.x_k,
        ffn.key.stored_int8, ffn.key.scales, ffn.value.stored_int8, ffn.value.scales,
    ]


def probes(model) -> list[torch.Tensor]:
    first, last = model.model.layers[0], model.model.layers[-1]
    return [model.model.embeddings.weight, model.lm_head.stored_int8, first.attn.r_proj.stored_int8,
            first.attn.w_lora.lora[0].weight, last.ffn.value.stored_int8, last.attn.x_g]


PLANS = cpu_decode.Plans(probes, lambda model: [layer_weights(block) for block in model.model.layers]
                         if cpu_decode.all_packed(projections(model)) else None)


def row_major(t: torch.Tensor) -> torch.Tensor:
    """t itself where each row (dim 0) is contiguous, as the step reads it; else a contiguous copy."""
    inner = t[0] if t.size(0) else t
    return t if inner.is_contiguous() else t.contiguous()


@torch.no_grad()
def decode_step(model, input_ids: torch.Tensor, state, use_cache: bool):
    """(B, 1) token ids and a state (or None) -> (logits (B, 1, V), the new state or None), as forward returns
    them; the caller's state is only read."""
    base, config = model.model, model.config
    ids = base._check_ids(input_ids)  # (B, 1): InputError naming the problem
    batch, L, C = ids.size(0), config.num_hidden_layers, config.hidden_size
    H, N = config.num_heads, config.head_dim
    if state is None:
        state = init_state7(config, batch, torch.float32, ids.device)
    else:
        check_state7(state, config, batch, ids.device)
    att_in, ffn_in, wkv_in = state[0].float(), state[1].float(), state[2].float()  # (B, L, C) x2, (B, L, H, N, N)
    first = base.layers[0].pre_norm
    x = F.layer_norm(base.embeddings(ids[:, 0]), (C,), first.weight, first.bias, first.eps).contiguous()  # (B, C)
    v_first = torch.empty(batch, C)  # (B, C): layer 0's value, mixed into the later layers'
    att_out, ffn_out = torch.empty(batch, L, C), torch.empty(batch, L, C)  # (B, L, C) each
    wkv_out = torch.empty(L, batch, H, N, N)  # (L, B, H, N, N): layer-major, as the per-op path's buffer
    for index, weights in enumerate(PLANS.get(model)):
        int8_cpu.rwkv7_layer_step(
            x, v_first, row_major(att_in[:, index]), row_major(ffn_in[:, index]), row_major(wkv_in[:, index]),
            att_out[:, index], ffn_out[:, index], wkv_out[index], weights, H, index == 0,
            config.norm_eps, config.group_norm_eps, DECAY_SCALE)
    x = F.layer_norm(x, (C,), base.norm.weight, base.norm.bias, base.norm.eps)  # (B, C)
    logits = model.lm_head(x[:, None])  # (B, 1, V)
    return logits, ([att_out, ffn_out, wkv_out.transpose(0, 1)] if use_cache else None)
