"""Fused single-token decode for RwkvForCausalLM on CUDA: Triton kernels between cuBLAS matmuls.

Per block and token: ln_mix (layer norm + the three token-shift mixes), three matmuls, wkv_step
(WKV step + sigmoid(r) * wkv + state update), the output matmul, ln_mix (residual add + layer norm
+ two mixes), two matmuls, relu_square, a matmul, gate_residual. Same arithmetic as the per-op path
in modeling.py, rescale_every included: the residual stream halves every N blocks and the two output
projections' inputs are scaled to match; the weights are never touched.

`decode_step` takes tensors only and allocates nothing but intermediates, so it can be captured in a
CUDA graph (rwkv_app/models/rwkv4/cuda_graph.py) and runs on CPU tensors under TRITON_INTERPRET=1 (the tests).
`cuda_graph.causal_lm_step` is what the model's forward calls: checks, then the graphed or eager step.
Nothing here imports triton until a step runs.
"""
from __future__ import annotations

import weakref
from dataclasses import dataclass, field
from typing import NamedTuple

import torch
import torch.nn.functional as F

import kernels

from ...errors import InputError

MODES = ("graph", "fused", "ops")  # RwkvForCausalLM.cuda_decode: CUDA graph, fused eager, per-op path


class LayerWeights(NamedTuple):
    """One block's tensors, flattened to what the kernels take; time_mix vectors are (H,)."""

    ln1: tuple[torch.Tensor, torch.Tensor]
    att_mix: tuple[torch.Tensor, torch.Tensor, torch.Tensor]  # key, value, receptance
    time_decay: torch.Tensor
    time_first: torch.Tensor
    att_key: torch.Tensor
    att_value: torch.Tensor
    att_receptance: torch.Tensor
    att_output: torch.Tensor
    ln2: tuple[torch.Tensor, torch.Tensor]
    ffn_mix: tuple[torch.Tensor, torch.Tensor]  # key, receptance
    ffn_key: torch.Tensor
    ffn_receptance: torch.Tensor
    ffn_value: torch.Tensor
    out_scale: float  # rescale_every: the two output projections' inputs are scaled by this power of two
    residual_scale: float  # 0.5 after the last block of each rescale_every group, else 1.0


@dataclass
class DecodePlan:
    """The model's weights as the fused step reads them, taken once per (model, dtype, device)."""

    embeddings: torch.Tensor
    pre_ln: tuple[torch.Tensor, torch.Tensor]
    layers: tuple[LayerWeights, ...]
    ln_out: tuple[torch.Tensor, torch.Tensor]
    head: torch.Tensor
    eps: float  # the blocks' layer norms (config.layer_norm_epsilon)
    out_eps: float  # the final layer norm's (fixed, as in transformers)
    signature: tuple
    graphs: dict = field(default_factory=dict)  # batch size -> cuda_graph.GraphedStep, or None if capture failed

    @property
    def dtype(self) -> torch.dtype:
        return self.embeddings.dtype

    @property
    def device(self) -> torch.device:
        return self.embeddings.device


def _signature(model) -> tuple:
    """What a plan (and its captured graphs) depends on: dtype, device, and where the weights live.
    .to()/.half()/.cuda() move every tensor, so a few of them stand for all."""
    rwkv = model.rwkv
    probes = (rwkv.embeddings.weight, model.head.weight, rwkv.blocks[0].attention.key.weight,
              rwkv.blocks[-1].feed_forward.value.weight, rwkv.ln_out.weight)
    return (model.config.rescale_every, len(rwkv.blocks), *((p.dtype, p.device, p.data_ptr()) for p in probes))


def _layer_weights(model, block) -> LayerWeights:
    att, ffn, rwkv = block.attention, block.feed_forward, model.rwkv
    scale = rwkv.rescale_factor(block.layer_id)
    return LayerWeights(
        ln1=(block.ln1.weight, block.ln1.bias),
        att_mix=tuple(m.view(-1) for m in (att.time_mix_key, att.time_mix_value, att.time_mix_receptance)),
        time_decay=att.time_decay, time_first=att.time_first,
        att_key=att.key.weight, att_value=att.value.weight, att_receptance=att.receptance.weight,
        att_output=att.output.weight,
        ln2=(block.ln2.weight, block.ln2.bias),
        ffn_mix=(ffn.time_mix_key.view(-1), ffn.time_mix_receptance.view(-1)),
        ffn_key=ffn.key.weight, ffn_receptance=ffn.receptance.weight, ffn_value=ffn.value.weight,
        out_scale=scale,
        residual_scale=0.5 if rwkv.rescale_factor(block.layer_id + 1) != scale else 1.0,
    )


@torch.no_grad()
def build_plan(model) -> DecodePlan:
    """Read the weights out of an eval-mode RwkvForCausalLM (rescale factors depend on eval mode)."""
    rwkv = model.rwkv
    return DecodePlan(
        embeddings=rwkv.embeddings.weight,
        pre_ln=(rwkv.blocks[0].pre_ln.weight, rwkv.blocks[0].pre_ln.bias),
        layers=tuple(_layer_weights(model, block) for block in rwkv.blocks),
        ln_out=(rwkv.ln_out.weight, rwkv.ln_out.bias),
        head=model.head.weight,
        eps=model.config.layer_norm_epsilon,
        out_eps=rwkv.ln_out.eps,
        signature=_signature(model),
    )


def _block_step(layer: LayerWeights, index: int, hidden: torch.Tensor, state_in, state_out, eps: float):
    """One block for one token: hidden (B, H) -> (B, H); writes this layer's slice of state_out."""
    from kernels import triton_decode as td

    def layer_slice(states, k):
        return states[k][:, :, index]  # (B, C) view of (B, C, L)

    _, xk, xv, xr = td.ln_mix(hidden, *layer.ln1, eps, layer.att_mix, layer_slice(state_in, 1),
                              layer_slice(state_out, 1))  # (B, H) each
    key = F.linear(xk, layer.att_key)  # (B, A)
    value = F.linear(xv, layer.att_value)  # (B, A)
    receptance = F.linear(xr, layer.att_receptance)  # (B, A)
    wkv_in = tuple(layer_slice(state_in, k) for k in (2, 3, 4))
    wkv_out = tuple(layer_slice(state_out, k) for k in (2, 3, 4))
    mixed = td.wkv_step(layer.time_decay, layer.time_first, key, value, receptance, wkv_in, wkv_out,
                        layer.out_scale)  # (B, A)
    attention = F.linear(mixed, layer.att_output)  # (B, H)
    hidden, xk, xr = td.ln_mix(hidden, *layer.ln2, eps, layer.ffn_mix, layer_slice(state_in, 0),
                               layer_slice(state_out, 0), add=attention)  # (B, H) each
    key = td.relu_square(F.linear(xk, layer.ffn_key), layer.out_scale)  # (B, I)
    receptance = F.linear(xr, layer.ffn_receptance)  # (B, H)
    return td.gate_residual(hidden, receptance, F.linear(key, layer.ffn_value), layer.residual_scale)  # (B, H)


@torch.no_grad()
def decode_step(plan: DecodePlan, input_ids: torch.Tensor, state_in: list[torch.Tensor],
                state_out: list[torch.Tensor]) -> torch.Tensor:
    """One token through the whole model: input_ids (B, 1) -> logits (B, 1, V).

    state_in: the five (B, C, L) state tensors, contiguous, shifts in the model dtype, WKV float32;
    read only. state_out: five tensors like them, every element overwritten with the next state.
    """
    from kernels.wkv_triton import on_device

    hidden = F.embedding(input_ids[:, 0], plan.embeddings)  # (B, H)
    hidden = F.layer_norm(hidden, hidden.shape[-1:], *plan.pre_ln, plan.eps)  # (B, H)
    with on_device(hidden):  # the Triton kernels launch on the current device
        for index, layer in enumerate(plan.layers):
            hidden = _block_step(layer, index, hidden, state_in, state_out, plan.eps)  # (B, H)
    hidden = F.layer_norm(hidden, hidden.shape[-1:], *plan.ln_out, plan.out_eps)  # (B, H)
    return F.linear(hidden, plan.head).unsqueeze(1)  # (B, 1, V)


def state_buffers(state: list[torch.Tensor], dtype: torch.dtype) -> list[torch.Tensor]:
    """The caller's state as decode_step reads it: contiguous, shifts in the model dtype, WKV float32.
    Usually the caller's own tensors (read, never written)."""
    return [s.to(dtype if i < 2 else torch.float32).contiguous() for i, s in enumerate(state)]


def eager_step(plan: DecodePlan, input_ids: torch.Tensor, state: list[torch.Tensor]):
    """The fused step without a graph: (logits (B, 1, V), a fresh state)."""
    state_in = state_buffers(state, plan.dtype)
    state_out = [torch.empty_like(s) for s in state_in]
    return decode_step(plan, input_ids, state_in, state_out), state_out


_PLANS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()  # model -> DecodePlan (and its graphs)


def plan_for(model) -> DecodePlan:
    """The model's cached plan, rebuilt (its graphs dropped) when its weights moved or changed dtype."""
    plan = _PLANS.get(model)
    if plan is None or plan.signature != _signature(model):
        plan = _PLANS[model] = build_plan(model)
    return plan


def applies(model, input_ids, inputs_embeds, state, labels, output_hidden_states, attention_mask) -> bool:
    """Whether forward() takes the fused path: inference on CUDA, one token per row, a state given,
    nothing asked for that only the per-op path computes, and the Triton kernels available."""
    mode = getattr(model, "cuda_decode", "ops")
    if mode == "ops" or not model.rwkv.embeddings.weight.is_cuda:  # (the head may be an int8 CPU module)
        return False
    if mode not in MODES:
        raise InputError(f"model.cuda_decode must be one of {MODES}, got {mode!r}")
    if model.training or (torch.is_grad_enabled() and model.head.weight.requires_grad):
        return False
    if state is None or inputs_embeds is not None or labels is not None or attention_mask is not None:
        return False
    if output_hidden_states or (output_hidden_states is None and model.config.output_hidden_states):
        return False
    one_token = isinstance(input_ids, torch.Tensor) and input_ids.dim() == 2 and input_ids.size(1) == 1
    return one_token and model.wkv_impl in ("auto", "triton") and kernels.triton_available()


def checked_ids(model, input_ids: torch.Tensor) -> torch.Tensor:
    """The per-op path's token-id checks with one device sync instead of two; its errors where they fail."""
    ids = input_ids.to(model.head.weight.device)  # (B, 1)
    if ids.numel() and not ids.dtype.is_floating_point and ids.dtype != torch.bool:
        low, high = torch.stack(torch.aminmax(ids)).tolist()
        if 0 <= low and high < model.config.vocab_size:
            return ids
    return model.rwkv._check_ids(ids)  # raises InputError naming the problem

