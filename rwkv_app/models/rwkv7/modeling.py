"""RWKV-7 "Goose" (x070) in plain PyTorch, with flash-linear-attention's parameter names.

Reads top to bottom: the low-rank branch, time mixing (attention), channel mixing (feed-forward), block, model,
causal LM. The arithmetic is BlinkDL's RWKV_x070 (the `rwkv` pip package, RWKV-LM); the WKV recurrence itself
lives in kernels/rwkv7. Parameter names follow fla, so fla's Hugging Face folders load with strict=True; the
BlinkDL names map one to one (see blinkdl.py). `ln0` is `layers.0.pre_norm`, applied to the embedded tokens,
which is what BlinkDL's folding it into the embedding matrix computes.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from kernels.rwkv7 import wkv7

from ...errors import InputError
from ...core.generation import GenerationMixin
from ..rwkv4.modeling import RwkvModel, causal_lm_loss, token_shift
from ..quantize import project
from ...core.outputs import RwkvCausalLMOutput, RwkvOutput
from . import cpu_decode
from .config import DECAY_SCALE, Rwkv7Config
from .family import RWKV7_FAMILY
from .init import init_model_weights
from .pretrained import Rwkv7PretrainedMixin
from .state import LayerState7, check_state7, new_wkv_buffer, split_layers7, stack_layers7



class LoRA(nn.Module):
    """A low-rank branch, fla's layout: lora.0 (C -> D), an activation, lora.2 (D -> C; its bias is BlinkDL's x0)."""

    def __init__(self, dim: int, rank: int, activation: nn.Module, bias: bool = True):
        super().__init__()
        self.lora = nn.Sequential(nn.Linear(dim, rank, bias=False), activation, nn.Linear(rank, dim, bias=bias))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lora(x)


class Rwkv7Attention(nn.Module):
    """Time mixing: six token-shift mixes, the decay/in-context-rate/value/gate branches and the WKV delta rule."""

    def __init__(self, config: Rwkv7Config, layer_idx: int):
        super().__init__()
        self.layer_idx = layer_idx
        C, H, N = config.hidden_size, config.num_heads, config.head_dim
        self.num_heads, self.head_dim = H, N
        for name in ("x_r", "x_w", "x_k", "x_v", "x_a", "x_g"):
            setattr(self, name, nn.Parameter(torch.empty(1, 1, C)))
        self.k_k = nn.Parameter(torch.empty(C))
        self.k_a = nn.Parameter(torch.empty(C))
        self.r_k = nn.Parameter(torch.empty(H, N))
        self.r_proj = nn.Linear(C, C, bias=False)
        self.k_proj = nn.Linear(C, C, bias=False)
        self.v_proj = nn.Linear(C, C, bias=False)
        self.o_proj = nn.Linear(C, C, bias=False)
        self.w_lora = LoRA(C, config.decay_low_rank_dim, nn.Tanh())
        if layer_idx != 0:  # layer 0 makes v_first; the others mix it back in
            self.v_lora = LoRA(C, config.v_low_rank_dim, nn.Identity())
        self.a_lora = LoRA(C, config.a_low_rank_dim, nn.Identity())
        self.g_lora = LoRA(C, config.gate_low_rank_dim, nn.Sigmoid(), bias=False)
        self.g_norm = nn.GroupNorm(H, C, eps=config.group_norm_eps)

    def forward(self, x: torch.Tensor, layer: LayerState7, v_first: torch.Tensor | None, impl: str):
        """x (B, T, C) after attn_norm -> (output (B, T, C), v_first (B, T, C)); updates `layer` in place."""
        B, T, C = x.shape
        H, N = self.num_heads, self.head_dim
        xx = token_shift(x, layer.att_shift) - x  # (B, T, C)
        xr, xw, xk, xv, xa, xg = (torch.addcmul(x, xx, mix) for mix in
                                  (self.x_r, self.x_w, self.x_k, self.x_v, self.x_a, self.x_g))  # (B, T, C) each
        r = project(xr, self.r_proj)  # (B, T, C)
        k = project(xk, self.k_proj)  # (B, T, C)
        v = project(xv, self.v_proj)  # (B, T, C)
        a = self.in_context_rate(xa)  # (B, T, C)
        g = self.g_lora(xg)  # (B, T, C) output gate
        log_w = self.log_decay(xw)  # (B, T, C) float32
        kk = F.normalize((k * self.k_k).view(B, T, H, N), dim=-1, p=2.0)  # (B, T, H, N) normalised key
        k = k * (1 + (a - 1) * self.k_a)  # (B, T, C)
        if self.layer_idx == 0:
            v_first = v
        else:
            v = v + (v_first - v) * torch.sigmoid(self.v_lora(xv))  # (B, T, C) value residual
        heads = [t.view(B, T, H, N) for t in (r, log_w, k, v)]
        a_h = a.view(B, T, H, N)  # (B, T, H, N)
        out, layer.wkv = wkv7(*heads, -kk, kk * a_h, layer.wkv, impl=impl,
                              out_state=layer.wkv_out)  # (B, T, H, N), (B, H, N, N)
        layer.att_shift = x[:, -1]  # (B, C)
        out = self.g_norm(out.reshape(B * T, C)).view(B, T, C)  # (B, T, C) per-head GroupNorm (ln_x)
        bonus = (r * k * self.r_k.view(C)).view(B, T, H, N).sum(-1, keepdim=True) * v.view(B, T, H, N)  # (B, T, H, N)
        out = out + bonus.view(B, T, C)  # (B, T, C)
        return project(out * g, self.o_proj), v_first  # (B, T, C)


    def log_decay(self, xw: torch.Tensor) -> torch.Tensor:
        """The log of each channel's decay for the decay-mixed input xw (B, T, C): -exp(-0.5) * sigmoid(w0 + lora),
        BlinkDL's w; the state is multiplied by exp(log_w), in (0.545, 1), each token. Float32."""
        return -DECAY_SCALE * torch.sigmoid(self.w_lora(xw).float())  # (B, T, C)

    def in_context_rate(self, xa: torch.Tensor) -> torch.Tensor:
        """The in-context learning rate a in (0, 1) for the a-mixed input xa (B, T, C): how much of what the state
        holds under the token's normalised key is erased before the new value is written (the delta rule)."""
        return torch.sigmoid(self.a_lora(xa))  # (B, T, C)


class Rwkv7FeedForward(nn.Module):
    """Channel mixing: a token-shifted squared-ReLU MLP."""

    def __init__(self, config: Rwkv7Config, layer_idx: int):
        super().__init__()
        C, I = config.hidden_size, config.intermediate_size
        self.x_k = nn.Parameter(torch.empty(C))
        self.key = nn.Linear(C, I, bias=False)
        self.value = nn.Linear(I, C, bias=False)

    def forward(self, x: torch.Tensor, layer: LayerState7) -> torch.Tensor:
        xx = token_shift(x, layer.ffn_shift) - x  # (B, T, C)
        layer.ffn_shift = x[:, -1]  # (B, C)
        k = torch.relu(project(torch.addcmul(x, xx, self.x_k), self.key)).square()  # (B, T, I)
        return project(k, self.value)  # (B, T, C)


class Rwkv7Block(nn.Module):
    def __init__(self, config: Rwkv7Config, layer_idx: int):
        super().__init__()
        self.layer_idx = layer_idx
        C, eps = config.hidden_size, config.norm_eps
        if layer_idx == 0:
            self.pre_norm = nn.LayerNorm(C, eps=eps)  # BlinkDL's ln0
        self.attn_norm = nn.LayerNorm(C, eps=eps)  # ln1
        self.attn = Rwkv7Attention(config, layer_idx)
        self.ffn_norm = nn.LayerNorm(C, eps=eps)  # ln2
        self.ffn = Rwkv7FeedForward(config, layer_idx)

    def forward(self, hidden: torch.Tensor, layer: LayerState7, v_first, impl: str):
        if self.layer_idx == 0:
            hidden = self.pre_norm(hidden)  # (B, T, C)
        mixed, v_first = self.attn(self.attn_norm(hidden), layer, v_first, impl)  # (B, T, C)
        hidden = hidden + mixed  # (B, T, C)
        return hidden + self.ffn(self.ffn_norm(hidden), layer), v_first  # (B, T, C)


class Rwkv7Model(Rwkv7PretrainedMixin, nn.Module):
    """The bare RWKV-7 stack: embeddings, blocks, final layer norm."""

    family = RWKV7_FAMILY  # what the services use to handle its state
    base_prefix = "model."
    # The input checks are RWKV-4's, shared: one home for the token-id range check and the embeds check.
    _embed, _check_ids, _check_embeds = RwkvModel._embed, RwkvModel._check_ids, RwkvModel._check_embeds
    _resolve_use_cache = RwkvModel._resolve_use_cache

    def __init__(self, config: Rwkv7Config):
        super().__init__()
        self.config = config
        self.wkv_impl = "auto"  # see kernels.rwkv7.wkv7
        self.embeddings = nn.Embedding(config.vocab_size, config.hidden_size)
        self.layers = nn.ModuleList(Rwkv7Block(config, i) for i in range(config.num_hidden_layers))
        self.norm = nn.LayerNorm(config.hidden_size, eps=config.norm_eps)
        if not self.embeddings.weight.is_meta:  # from_pretrained builds on "meta" and loads real weights after
            init_model_weights(self, config)

    def forward(self, input_ids=None, attention_mask=None, inputs_embeds=None, state=None, use_cache=None,
                output_attentions=None, output_hidden_states=None, return_dict=None, **kwargs):
        check_unsupported(output_attentions, kwargs)
        hidden = self._embed(input_ids, inputs_embeds, attention_mask)  # (B, T, C)
        use_cache = self._resolve_use_cache(use_cache, state)
        if state is not None:
            check_state7(state, self.config, hidden.size(0), hidden.device)
        buffer = new_wkv_buffer(self.config, hidden.size(0), hidden.device) if use_cache else None  # (L, B, H, N, N)
        layers = split_layers7(state, self.config.num_hidden_layers, hidden.dtype, buffer)
        keep_hidden = self.config.output_hidden_states if output_hidden_states is None else output_hidden_states
        all_hidden, v_first = [], None
        for block, layer in zip(self.layers, layers):
            hidden, v_first = block(hidden, layer, v_first, self.wkv_impl)  # (B, T, C)
            if keep_hidden:
                all_hidden.append(hidden)
        hidden = self.norm(hidden)  # (B, T, C)
        if keep_hidden:
            all_hidden.append(hidden)
        output = RwkvOutput(last_hidden_state=hidden, state=stack_layers7(layers, buffer) if use_cache else None,
                            hidden_states=tuple(all_hidden) if keep_hidden else None)
        as_dict = self.config.return_dict if return_dict is None else return_dict
        return output if as_dict else output.to_tuple()


def check_unsupported(output_attentions, kwargs: dict) -> None:
    """RWKV has no attention weights to return; other keyword arguments must be unset."""
    if output_attentions:
        raise InputError("output_attentions=True is not supported: RWKV-7 has no attention weights")
    unknown = sorted(name for name, value in kwargs.items() if value is not None)
    if unknown:
        raise InputError(f"unexpected argument(s) to forward: {', '.join(unknown)}")


class Rwkv7ForCausalLM(GenerationMixin, Rwkv7PretrainedMixin, nn.Module):
    """Rwkv7Model plus the language-model head; `generate` and `stream_generate` come from the generation mixin."""

    family = RWKV7_FAMILY  # what the services use to handle its state
    base_prefix = ""

    def __init__(self, config: Rwkv7Config):
        super().__init__()
        self.config = config
        self.model = Rwkv7Model(config)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        if not self.lm_head.weight.is_meta:
            nn.init.orthogonal_(self.lm_head.weight, gain=0.5 * math.sqrt(max(config.vocab_size / config.hidden_size, 1)))
        self.tie_weights()
        self.cpu_decode = "fused"  # one-token steps of int8 models on x86: "fused" | "ops"; see cpu_decode.py

    def tie_weights(self) -> None:
        if self.config.tie_word_embeddings:
            self.lm_head.weight = self.model.embeddings.weight

    @property
    def wkv_impl(self) -> str:
        return self.model.wkv_impl

    @wkv_impl.setter
    def wkv_impl(self, impl: str) -> None:
        self.model.wkv_impl = impl

    def forward(self, input_ids=None, attention_mask=None, inputs_embeds=None, state=None, labels=None,
                use_cache=None, output_attentions=None, output_hidden_states=None, return_dict=None,
                logits_to_keep: int = 0, **kwargs):
        as_dict = self.config.return_dict if return_dict is None else return_dict
        if not output_attentions and cpu_decode.applies(self, input_ids, inputs_embeds, state, labels,
                                                        output_hidden_states, attention_mask,
                                                        [k for k, v in kwargs.items() if v is not None]):
            logits, state = cpu_decode.decode_step(self, input_ids, state,
                                                   self.model._resolve_use_cache(use_cache, state))
            output = RwkvCausalLMOutput(logits=logits, state=state)  # int8 on x86, one token: the C++ layer step
            return output if as_dict else output.to_tuple()
        base = self.model(input_ids=input_ids, attention_mask=attention_mask, inputs_embeds=inputs_embeds,
                          state=state, use_cache=use_cache, output_attentions=output_attentions,
                          output_hidden_states=output_hidden_states, return_dict=True, **kwargs)
        hidden = base.last_hidden_state  # (B, T, C)
        if logits_to_keep:
            hidden = hidden[:, -logits_to_keep:]  # (B, K, C)
        logits = self.lm_head(hidden)  # (B, T or K, V)
        loss = None if labels is None else causal_lm_loss(logits, labels, self.config.vocab_size)
        output = RwkvCausalLMOutput(loss=loss, logits=logits, state=base.state, hidden_states=base.hidden_states)
        return output if as_dict else output.to_tuple()


Rwkv7PretrainedMixin.causal_lm_class = Rwkv7ForCausalLM  # the checkpoint checks build one on the meta device
