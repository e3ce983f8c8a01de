"""RWKV-7's family: three batch-first tensors, each head's WKV state a float32 matrix (see state.py)."""
from __future__ import annotations

import torch

from ..family import ModelFamily, sampled_rows
from .config import DECAY_SCALE
from .rates import token_rates
from .state import STATE_NAMES, state_shapes

MEANINGS = {
    "att_shift": "the time mix's token shift: the last token's attn_norm output",
    "ffn_shift": "the channel mix's token shift: the last token's ffn_norm output",
    "wkv": "each head's WKV matrix [value, key]: what the layer remembers (heatmap: its norm per head)",
}
RATE_MEANINGS = {
    "decay": "mean decay w = exp(-exp(-0.5) sigmoid(w0 + lora)) of the head's key channels: the fraction of the "
             "matrix kept at this token",
    "iclr": "mean in-context learning rate a = sigmoid(a0 + lora): how much of what the matrix held under the "
            "token's key is erased before the new value is written",
}


class Rwkv7Family(ModelFamily):
    name, label = "rwkv7", "RWKV-7"
    state_names = STATE_NAMES
    meanings = MEANINGS
    columns = {"wkv": "head"}
    memory_tensor = "wkv"
    chat_names = ("User", "Assistant")
    thinking_format = True  # the G1 models (their model card)
    rate_meanings = RATE_MEANINGS

    def state_spec(self, model) -> dict:
        dtypes = (model.dtype, model.dtype, torch.float32)
        return {name: (dtype, shape) for name, dtype, shape
                in zip(STATE_NAMES, dtypes, state_shapes(model.config, 1))}

    def layer_matrix(self, state, name: str) -> torch.Tensor:
        tensor = state[self.state_names.index(name)][0].detach().float().cpu()  # (L, C) or (L, H, N, N)
        if name == "wkv":
            return tensor.flatten(2).norm(dim=-1)  # (L, H) each head's Frobenius norm
        return tensor  # (L, C)

    def layer_matrix_column(self, name: str) -> str:
        return "head (its matrix's norm)" if name == "wkv" else "channel"

    def heads(self, model) -> dict:
        config = model.config
        return {"tensor": "wkv", "layers": config.num_hidden_layers, "heads": config.num_heads,
                "size": config.head_dim, "rows": "value", "columns": "key"}

    def head_matrices(self, state) -> torch.Tensor:
        return state[self.state_names.index("wkv")][0].detach().float().cpu()  # (L, H, N, N)

    def token_rates(self, model, state, token: int) -> dict[str, torch.Tensor]:
        return token_rates(model, state, token)

    def decay_rows(self, model) -> list[dict]:
        """Each layer's per-channel decay at zero input, exp(-DECAY_SCALE * sigmoid(w0)), sorted, sampled
        (the decay RWKV-7 uses moves with each token around this)."""
        rows = []
        for layer, block in enumerate(model.model.layers):
            w0 = block.attn.w_lora.lora[2].bias.detach().float().cpu()  # (C,)
            rows += sampled_rows(layer, torch.exp(-DECAY_SCALE * torch.sigmoid(w0)).sort().values)
        return rows

    def fingerprint_tensors(self, model) -> list[torch.Tensor]:
        base = model.model
        sample = [base.embeddings.weight[:2], base.embeddings.weight[-2:], model.lm_head.weight[:2],
                  model.lm_head.weight[-2:]]
        for block in base.layers:
            sample += [block.attn.w_lora.lora[2].bias, block.attn.r_k, block.attn_norm.weight]
        return sample


RWKV7_FAMILY = Rwkv7Family()
