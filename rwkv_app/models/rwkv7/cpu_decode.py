"""One-token decode for int8 RWKV-7 models on x86 CPUs: one C++ call per layer instead of ~90 torch ops.

kernels/int8_cpu/rwkv7_step.cpp runs a whole Rwkv7Block for one token per row: the layer norms, the six token-shift
mixes, the int8 projections (the same kernel the per-op path calls), the low-rank branches (float32 at::linear, as
there), the delta-rule state update, the GroupNorm, the bonus and the gate, the feed-forward. modeling.py's per-op
forward is its reference: tests/test_cpu_decode7.py holds the two together, and `model.cpu_decode = "ops"` (or
RWKV_INT8_KERNEL=0) runs the reference.

Why: at batch 1 the 0.1B shape read its 140 MB of int8 weights in ~6 ms but spent ~10 ms more dispatching torch
ops on 768-wide vectors (docs/BENCHMARKS.md, "sixth pass"). Where it applies: `forward` under no_grad (or with
parameters that need none), one token per row, ids in, nothing asked that only the per-op path computes, every
projection an Int8Linear in kernels/int8_cpu's layout, and the extension built.
"""
from __future__ import annotations

import weakref

import torch
import torch.nn.functional as F

from kernels import int8_cpu

from ...errors import InputError
from ..quantize import Int8Linear
from .config import DECAY_SCALE
from .state import check_state7, init_state7

MODES = ("fused", "ops")  # Rwkv7ForCausalLM.cpu_decode: the C++ layer step, or the per-op path
HEAD_ALIGN = 16  # the step's head size must be a multiple of this (its vector width)


def applies(model, input_ids, inputs_embeds, state, labels, output_hidden_states, attention_mask, extra) -> bool:
    """Whether forward() takes the fused CPU step (see the module docstring)."""
    mode = getattr(model, "cpu_decode", "ops")
    if mode not in MODES:
        raise InputError(f"model.cpu_decode must be one of {MODES}, got {mode!r}")
    if mode == "ops" or getattr(model, "weight_dtype", None) != "int8" or model.training:
        return False
    if getattr(model.lm_head, "reference", False):  # quantize.set_reference: the float32 oracle, model-wide
        return False
    if torch.is_grad_enabled() and any(p.requires_grad for p in model.parameters()):
        return False
    if inputs_embeds is not None or labels is not None or attention_mask is not None or extra:
        return False
    if output_hidden_states or (output_hidden_states is None and model.config.output_hidden_states):
        return False
    one_token = isinstance(input_ids, torch.Tensor) and input_ids.dim() == 2 and input_ids.size(1) == 1
    return one_token and model.wkv_impl in ("auto", "cpu") and model.config.head_dim % HEAD_ALIGN == 0 \
        and int8_cpu.load() is not None and plan_for(model) is not None


def all_packed(model) -> bool:
    """Every projection of every block, and the head, in kernels/int8_cpu's layout."""
    linears = [model.lm_head] + [m for layer in model.model.layers
                                 for m in (layer.attn.r_proj, layer.attn.k_proj, layer.attn.v_proj,
                                           layer.attn.o_proj, layer.ffn.key, layer.ffn.value)]
    return all(isinstance(m, Int8Linear) and m.packed for m in linears)


def layer_weights(block) -> list[torch.Tensor]:
    """One block's tensors in the order of rwkv7_step.cpp's `enum Weight`."""
    att, ffn, none = block.attn, block.ffn, torch.empty(0)
    v_lora = att.v_lora.lora if block.layer_idx else (None, None, None)
    return [
        block.attn_norm.weight, block.attn_norm.bias,
        att.x_r, att.x_w, att.x_k, att.x_v, att.x_a, att.x_g, att.k_k, att.k_a, att.r_k,
        *(t for proj in (att.r_proj, att.k_proj, att.v_proj, att.o_proj) for t in (proj.stored_int8, proj.scales)),
        att.w_lora.lora[0].weight, att.w_lora.lora[2].weight, att.w_lora.lora[2].bias,
        att.a_lora.lora[0].weight, att.a_lora.lora[2].weight, att.a_lora.lora[2].bias,
        att.g_lora.lora[0].weight, att.g_lora.lora[2].weight,
        *((v_lora[0].weight, v_lora[2].weight, v_lora[2].bias) if block.layer_idx else (none, none, none)),
        att.g_norm.weight, att.g_norm.bias,
        block.ffn_norm.weight, block.ffn_norm.bias, ffn.x_k,
        ffn.key.stored_int8, ffn.key.scales, ffn.value.stored_int8, ffn.value.scales,
    ]


_PLANS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()  # model -> (signature, per-layer weights)


def signature(model) -> tuple:
    """Where a few of the weights live, as for RWKV-4's fused CUDA step: moving the model or replacing the embedding,
    head, or the first or last layer's modules changes it; in-place updates (load_state_dict) keep the tensors the
    plan holds. Code that swaps a middle layer's modules after a fused step clears the plan: `_PLANS.pop(model)`."""
    first, last = model.model.layers[0], model.model.layers[-1]
    probes = (model.model.embeddings.weight, model.lm_head.stored_int8, first.attn.r_proj.stored_int8,
              first.attn.w_lora.lora[0].weight, last.ffn.value.stored_int8, last.attn.x_g)
    return tuple(p.data_ptr() for p in probes)


def plan_for(model) -> list[list[torch.Tensor]] | None:
    """Every layer's `layer_weights`, taken once per model (nn.Module lookups cost ~0.5 ms a step at 12 layers);
    None where a projection is not in kernels/int8_cpu's layout (`all_packed`)."""
    key = signature(model)
    cached = _PLANS.get(model)
    if cached is None or cached[0] != key:
        layers = [layer_weights(block) for block in model.model.layers] if all_packed(model) else None
        cached = _PLANS[model] = (key, layers)
    return cached[1]


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
    for index, weights in enumerate(plan_for(model)):
        int8_cpu.rwkv7_layer_step(
            x, v_first, row_major(att_in[:, index]), row_major(ffn_in[:, index]), row_major(wkv_in[:, index]),
            att_out[:, index], ffn_out[:, index], wkv_out[index], weights, H, index == 0,
            config.norm_eps, config.group_norm_eps, DECAY_SCALE)
    x = F.layer_norm(x, (C,), base.norm.weight, base.norm.bias, base.norm.eps)  # (B, C)
    logits = model.lm_head(x[:, None])  # (B, 1, V)
    return logits, ([att_out, ffn_out, wkv_out.transpose(0, 1)] if use_cache else None)
