"""RWKV-4's family: Hugging Face's state layout, five (B, C, L) tensors (see rwkv_app/models/rwkv4/state.py)."""
from __future__ import annotations

import torch

from kernels.reference import EMPTY_MAX

from .state import STATE_NAMES, check_state
from ..family import ModelFamily, sampled_rows

MEANINGS = {
    "ffn_shift": "the feed-forward's token shift: the last token's ln2 output",
    "att_shift": "the attention's token shift: the last token's ln1 output",
    "num": "WKV numerator: decayed sum of exp(key) * value, scaled by exp(-max)",
    "den": "WKV denominator: decayed sum of exp(key), scaled by exp(-max)",
    "max": "WKV running max of the exponents (0 before the first token)",
}


class Rwkv4Family(ModelFamily):
    name, label = "rwkv4", "RWKV-4"
    state_names = STATE_NAMES
    meanings = MEANINGS
    memory_tensor = "num"
    chat_names = ("User", "Bot")
    initial_values = {"max": EMPTY_MAX}

    def state_spec(self, model) -> dict:
        H, A, L = (model.config.hidden_size, model.config.attention_hidden_size,
                   model.config.num_hidden_layers)
        shift, wkv = (model.dtype, (1, H, L)), (torch.float32, (1, A, L))
        return dict(zip(STATE_NAMES, (shift, shift, wkv, wkv, wkv)))

    def check_state(self, state, model, batch: int, device=None) -> None:
        check_state(state, model.config, batch, torch.device(model.device if device is None else device))

    def layer_matrix(self, state, name: str) -> torch.Tensor:
        tensor = state[self.state_names.index(name)][0].detach().float().cpu().T  # (L, C)
        if name == "max":  # the "no token yet" sentinel reads as 0
            tensor = torch.where(tensor <= EMPTY_MAX / 10, torch.zeros_like(tensor), tensor)
        return tensor

    def decay_rows(self, model) -> list[dict]:
        """Each layer's per-channel decay exp(-exp(time_decay)), sorted, sampled evenly."""
        rows = []
        for layer, block in enumerate(model.rwkv.blocks):
            decay = torch.exp(-torch.exp(block.attention.time_decay.detach().float().cpu())).sort().values  # (A,)
            rows += sampled_rows(layer, decay)
        return rows

    def fingerprint_tensors(self, model) -> list[torch.Tensor]:
        base = model.rwkv
        sample = [base.embeddings.weight[:2], base.embeddings.weight[-2:], model.head.weight[:2],
                  model.head.weight[-2:]]
        for block in base.blocks:
            sample += [block.attention.time_decay, block.attention.time_first, block.ln1.weight]
        return sample

    def identity_sizes(self, config) -> dict[str, int]:
        return {"hidden_size": config.hidden_size, "attention_hidden_size": config.attention_hidden_size,
                "num_hidden_layers": config.num_hidden_layers}



RWKV4_FAMILY = Rwkv4Family()
