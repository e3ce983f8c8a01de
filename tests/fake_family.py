"""A second model family that is not RWKV, to prove the family interface is the services' only contract: a tiny
tanh RNN whose state is two tensors of shapes unlike either RWKV's, h (B, L, D) and steps (B, 1)."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from rwkv_app.core.generation import GenerationMixin
from rwkv_app.models.family import ModelFamily
from rwkv_app.core.outputs import RwkvCausalLMOutput


class TinyRnnFamily(ModelFamily):
    name, label = "tiny-rnn", "tiny RNN"
    state_names = ("h", "steps")
    memory_tensor = "h"
    meanings = {"h": "each layer's hidden vector", "steps": "tokens taken in"}

    def empty_state(self, model, batch: int = 1, device=None):
        device = model.device if device is None else device
        return [torch.zeros(batch, model.config.num_hidden_layers, model.config.hidden_size, device=device),
                torch.zeros(batch, 1, device=device)]  # (B, L, D), (B, 1)

    def state_spec(self, model) -> dict:
        c = model.config
        return {"h": (torch.float32, (1, c.num_hidden_layers, c.hidden_size)), "steps": (torch.float32, (1, 1))}

    def layer_matrix(self, state, name: str) -> torch.Tensor:
        if name == "h":
            return state[0][0].detach().float().cpu()  # (L, D)
        return state[1][0].detach().float().cpu().expand(state[0].size(1), 1)  # (L, 1) the same count each layer

    def fingerprint_tensors(self, model) -> list[torch.Tensor]:
        return [model.embed.weight[:2], model.head.weight[:2]]


@dataclass
class TinyRnnConfig:
    vocab_size: int = 300
    hidden_size: int = 8
    num_hidden_layers: int = 2
    eos_token_id: int = 0
    pad_token_id: int | None = None


class TinyRnnForCausalLM(GenerationMixin, nn.Module):
    family = TinyRnnFamily()

    def __init__(self, config: TinyRnnConfig, seed: int = 0):
        super().__init__()
        torch.manual_seed(seed)
        self.config = config
        self.embed = nn.Embedding(config.vocab_size, config.hidden_size)
        self.cells = nn.ModuleList(nn.Linear(2 * config.hidden_size, config.hidden_size)
                                   for _ in range(config.num_hidden_layers))
        self.head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)

    device = property(lambda self: self.head.weight.device)
    dtype = property(lambda self: self.head.weight.dtype)

    def forward(self, input_ids=None, attention_mask=None, inputs_embeds=None, state=None, use_cache=True,
                logits_to_keep=0, **kwargs):
        x = self.embed(input_ids) if inputs_embeds is None else inputs_embeds  # (B, T, D)
        h, steps = self.family.empty_state(self, x.size(0)) if state is None else state
        h, outputs = h.clone(), []
        for t in range(x.size(1)):
            value = x[:, t]  # (B, D)
            for layer, cell in enumerate(self.cells):
                h[:, layer] = value = torch.tanh(cell(torch.cat([value, h[:, layer]], dim=-1)))  # (B, D)
            outputs.append(value)
        logits = self.head(torch.stack(outputs, dim=1))[:, -logits_to_keep:]  # (B, k, V)
        return RwkvCausalLMOutput(logits=logits, state=[h, steps + x.size(1)])
