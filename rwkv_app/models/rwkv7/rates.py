"""What RWKV-7's state update does at one token, per layer and head, for the state inspector.

Each token, each head's WKV matrix S (value x key) is updated by the delta rule (BlinkDL's x070):

    S <- S (diag(w) - kk (a * kk)^T) + v k^T

w = exp(log_w) in (0.545, 1) is the decay of each key channel (the fraction of S kept), a in (0, 1) the in-context
learning rate (how much of what S holds under the normalised key kk is erased before v is written). Both are
computed from the token (and the token before it, through the token shift), so they are a property of a step, not
of a state. `token_rates` runs one token on the state before it and returns, per layer and head, the mean over the
head's channels of w and of a.
"""
from __future__ import annotations

import torch

from ..rwkv4.modeling import token_shift


@torch.no_grad()
def token_rates(model, state: list[torch.Tensor], token: int) -> dict[str, torch.Tensor]:
    """{"decay": (L, H), "iclr": (L, H)} float32 on the CPU: each head's mean w and mean a when `token` is read on the
    one-row `state` (the state before it). The blocks' inputs come from the model's own forward."""
    base, config = model.model, model.config
    ids = torch.tensor([[int(token)]], device=model.device)  # (1, 1)
    hidden = base(input_ids=ids, state=state, output_hidden_states=True, use_cache=False).hidden_states
    inputs = [base.embeddings(ids)] + list(hidden[:config.num_hidden_layers - 1])  # L x (1, 1, C): each block's input
    decay, iclr = [], []
    for index, (block, x) in enumerate(zip(base.layers, inputs)):
        if index == 0:
            x = block.pre_norm(x)  # (1, 1, C)
        x = block.attn_norm(x)  # (1, 1, C)
        xx = token_shift(x, state[0][:, index].to(x.dtype)) - x  # (1, 1, C) att_shift: the previous token's input
        log_w = block.attn.log_decay(torch.addcmul(x, xx, block.attn.x_w))  # (1, 1, C) float32
        a = block.attn.in_context_rate(torch.addcmul(x, xx, block.attn.x_a))  # (1, 1, C)
        decay.append(log_w.exp().view(config.num_heads, config.head_dim).mean(-1))  # (H,)
        iclr.append(a.float().view(config.num_heads, config.head_dim).mean(-1))  # (H,)
    return {"decay": torch.stack(decay).cpu(), "iclr": torch.stack(iclr).cpu()}  # (L, H) each
