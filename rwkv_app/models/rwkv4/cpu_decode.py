"""One-token decode for int8 RWKV-4 models on x86 CPUs: kernels/int8_cpu/rwkv4_step.cpp, one C++ call per block.

The step runs a whole RwkvBlock: the layer norms, the token-shift mixes, the seven int8 projections (the kernel the
per-op path calls), the WKV step (kernels/reference.py's arithmetic), the gates, rescale_every's output scaling.
When it applies and why: rwkv_app/models/cpu_decode.py. Its reference is modeling.py's per-op forward
(tests/test_cpu_decode.py).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from kernels import int8_cpu

from .. import cpu_decode
from .state import check_state, init_state


def applies(model, input_ids, inputs_embeds, state, labels, output_hidden_states, attention_mask,
            logits_to_keep) -> bool:
    return cpu_decode.applies(model, model.head, input_ids, inputs_embeds, labels, output_hidden_states,
                              attention_mask) \
        and isinstance(logits_to_keep, int) and model.wkv_impl in ("auto", "cpu", "cpp") and PLANS.get(model) is not None


def projections(model) -> list:
    return [model.head] + [m for block in model.rwkv.blocks
                           for m in (block.attention.key, block.attention.value, block.attention.receptance,
                                     block.attention.output, block.feed_forward.key, block.feed_forward.receptance,
                                     block.feed_forward.value)]


def layer_weights(block) -> list[torch.Tensor]:
    """One block's tensors in the order of rwkv4_step.cpp's `enum Weight`."""
    att, ffn = block.attention, block.feed_forward
    int8 = lambda proj: (proj.stored_int8, proj.scales)  # noqa: E731
    return [
        block.ln1.weight, block.ln1.bias, att.time_mix_key, att.time_mix_value, att.time_mix_receptance,
        att.time_decay, att.time_first,
        *int8(att.key), *int8(att.value), *int8(att.receptance), *int8(att.output),
        block.ln2.weight, block.ln2.bias, ffn.time_mix_key, ffn.time_mix_receptance,
        *int8(ffn.key), *int8(ffn.receptance), *int8(ffn.value),
    ]


def probes(model) -> list[torch.Tensor]:
    first, last = model.rwkv.blocks[0], model.rwkv.blocks[-1]
    return [model.rwkv.embeddings.weight, model.head.stored_int8, first.attention.key.stored_int8,
            first.ln1.weight, last.feed_forward.value.stored_int8, last.attention.time_decay]


PLANS = cpu_decode.Plans(probes, lambda model: [layer_weights(block) for block in model.rwkv.blocks]
                         if cpu_decode.all_packed(projections(model)) else None)


@torch.no_grad()
def decode_step(model, input_ids: torch.Tensor, state, use_cache: bool):
    """(B, 1) token ids and a state (or None) -> (logits (B, 1, V), the new state or None), as forward returns
    them; the caller's state is only read."""
    rwkv, config = model.rwkv, model.config
    ids = rwkv._check_ids(input_ids)  # (B, 1): InputError naming the problem
    batch, L, H = ids.size(0), config.num_hidden_layers, config.hidden_size
    if state is None:
        state = init_state(config, batch, torch.float32, ids.device)
    else:
        check_state(state, config, batch, ids.device)
    state_in = [t.float() for t in state]  # 5 x (B, C, L)
    state_out = [torch.empty(L, *t.shape[:2]) for t in state_in]  # 5 x (L, B, C): layer-major, as stack_layers
    first = rwkv.blocks[0].pre_ln
    x = F.layer_norm(rwkv.embeddings(ids[:, 0]), (H,), first.weight, first.bias, first.eps).contiguous()  # (B, H)
    for index, weights in enumerate(PLANS.get(model)):
        int8_cpu.rwkv4_layer_step(x, [t[..., index] for t in state_in], [t[index] for t in state_out], weights,
                                  config.layer_norm_epsilon, rwkv.rescale_factor(index))
        if rwkv.rescale_factor(index + 1) != rwkv.rescale_factor(index):
            x.div_(2)  # (B, H): the per-op path's rescale_every halving
    x = F.layer_norm(x, (H,), rwkv.ln_out.weight, rwkv.ln_out.bias, rwkv.ln_out.eps)  # (B, H)
    logits = model.head(x[:, None])  # (B, 1, V)
    return logits, ([t.permute(1, 2, 0) for t in state_out] if use_cache else None)  # 5 x (B, C, L)
