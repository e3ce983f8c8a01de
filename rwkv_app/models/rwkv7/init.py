"""Random weights for a fresh RWKV-7: BlinkDL's x070 initialisation schedule (RWKV-LM train_temp, as fla has it)."""
from __future__ import annotations

import torch
from torch import nn

from .config import Rwkv7Config


@torch.no_grad()
def init_model_weights(model: nn.Module, config: Rwkv7Config) -> None:
    """Layer norms at identity, a tiny embedding, and each block's time/channel-mix schedule."""
    for module in model.modules():
        if isinstance(module, (nn.LayerNorm, nn.GroupNorm)):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
    nn.init.uniform_(model.embeddings.weight, -1e-4, 1e-4)
    for block in model.layers:
        init_attention(block.attn, block.layer_idx, config)
        init_feed_forward(block.ffn, block.layer_idx, config)


def _schedules(layer_idx: int, config: Rwkv7Config) -> dict[str, torch.Tensor | float]:
    C, N, L = config.hidden_size, config.head_dim, config.num_hidden_layers
    n = torch.arange(C, dtype=torch.float32)  # (C,)
    zigzag = ((n % N) - (N - 1) / 2) / ((N - 1) / 2)  # (C,) in [-1, 1] within each head
    return {
        "ratio_0_to_1": layer_idx / max(L - 1, 1),
        "ratio_1_to_almost0": 1.0 - layer_idx / L,
        "position": n / C,  # (C,)
        "linear": n / max(C - 1, 1) - 0.5,  # (C,)
        "zigzag": zigzag * zigzag.abs(),  # (C,)
        "ramp": n / max(C - 1, 1),  # (C,)
    }


def _lora(lora: nn.Module, bias: torch.Tensor | None) -> None:
    nn.init.zeros_(lora.lora[0].weight)
    nn.init.orthogonal_(lora.lora[2].weight, gain=0.1)
    if bias is not None:
        lora.lora[2].bias.copy_(bias)


def init_attention(attn: nn.Module, layer_idx: int, config: Rwkv7Config) -> None:
    s = _schedules(layer_idx, config)
    r1, pos, linear, zigzag = s["ratio_1_to_almost0"], s["position"], s["linear"], s["zigzag"]
    for name, power in (("x_r", 0.2), ("x_w", 0.9), ("x_k", 0.7), ("x_v", 0.7), ("x_a", 0.9), ("x_g", 0.2)):
        getattr(attn, name).copy_((1.0 - pos.pow(power * r1)).view(1, 1, -1))
    decay = -6 + 6 * s["ramp"].pow(1 + s["ratio_0_to_1"] ** 0.3)  # (C,)
    _lora(attn.w_lora, decay + 0.5 + zigzag * 2.5)
    _lora(attn.a_lora, -0.19 + zigzag * 0.3 + linear * 0.4)
    if hasattr(attn, "v_lora"):
        _lora(attn.v_lora, 0.73 - linear * 0.4)
    _lora(attn.g_lora, None)
    attn.k_k.copy_(0.71 - linear * 0.1)
    attn.k_a.fill_(1.02)
    attn.r_k.fill_(-0.04)
    attn.g_norm.weight.fill_(((layer_idx + 1) / config.num_hidden_layers) ** 0.7)
    nn.init.orthogonal_(attn.r_proj.weight)
    nn.init.orthogonal_(attn.k_proj.weight, gain=0.1)
    nn.init.orthogonal_(attn.v_proj.weight)
    nn.init.zeros_(attn.o_proj.weight)


def init_feed_forward(ffn: nn.Module, layer_idx: int, config: Rwkv7Config) -> None:
    s = _schedules(layer_idx, config)
    ffn.x_k.copy_(1.0 - s["position"].pow(s["ratio_1_to_almost0"] ** 4))
    nn.init.orthogonal_(ffn.key.weight)
    nn.init.zeros_(ffn.value.weight)
