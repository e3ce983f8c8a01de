"""RWKV-4 in plain PyTorch, with Hugging Face's parameter names, state layout and outputs.

Reads top to bottom: time-mixing (attention), channel-mixing (feed-forward), block, model, causal LM.
The WKV recurrence itself lives in `kernels/`.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

import kernels

from . import cpu_decode, cuda_graph, fused_decode
from .config import RwkvConfig
from ...errors import InputError, check_token_range
from ...core.generation import GenerationMixin
from .hf_api import HfApiMixin
from ..quantize import project
from ...core.outputs import RwkvCausalLMOutput, RwkvOutput
from ...weights.pretrained import PretrainedMixin
from .family import RWKV4_FAMILY
from .state import LayerState, check_state, split_layers, stack_layers

LN_OUT_EPS = 1e-5  # the final layer norm's, fixed as in transformers and BlinkDL (layer_norm_epsilon is the blocks')


def token_shift(x: torch.Tensor, previous: torch.Tensor | None) -> torch.Tensor:
    """Each position sees the token before it; position 0 sees `previous` (zeros at the start)."""
    if previous is None:
        return F.pad(x, (0, 0, 1, -1))  # (B, T, C)
    if x.size(1) == 1:
        return previous.unsqueeze(1)  # (B, 1, C)
    return torch.cat([previous.unsqueeze(1), x[:, :-1]], dim=1)  # (B, T, C)


class RwkvSelfAttention(nn.Module):
    """Time mixing: token-shifted key, value and receptance feeding the WKV recurrence.

    The projections are nn.Linear for HF's parameter names, called through F.linear: decode runs
    a few hundred tiny ops per token and nn.Module's call machinery is a visible share of them.
    """

    def __init__(self, config: RwkvConfig, layer_id: int):
        super().__init__()
        self.layer_id = layer_id
        H, A = config.hidden_size, config.attention_hidden_size
        self.time_decay = nn.Parameter(torch.empty(A))
        self.time_first = nn.Parameter(torch.empty(A))
        self.time_mix_key = nn.Parameter(torch.empty(1, 1, H))
        self.time_mix_value = nn.Parameter(torch.empty(1, 1, H))
        self.time_mix_receptance = nn.Parameter(torch.empty(1, 1, H))
        self.key = nn.Linear(H, A, bias=False)
        self.value = nn.Linear(H, A, bias=False)
        self.receptance = nn.Linear(H, A, bias=False)
        self.output = nn.Linear(A, H, bias=False)

    def forward(self, x: torch.Tensor, layer: LayerState, out_scale: float, wkv_impl: str) -> torch.Tensor:
        shifted = token_shift(x, layer.att_shift)  # (B, T, H)
        key = project(torch.lerp(shifted, x, self.time_mix_key), self.key)  # (B, T, A)
        value = project(torch.lerp(shifted, x, self.time_mix_value), self.value)  # (B, T, A)
        receptance = project(torch.lerp(shifted, x, self.time_mix_receptance), self.receptance).sigmoid()  # (B, T, A)
        wkv, layer.wkv = kernels.wkv(self.time_decay, self.time_first, key, value, layer.wkv, impl=wkv_impl)
        layer.att_shift = x[:, -1]  # (B, H)
        mixed = receptance * wkv  # (B, T, A)
        if out_scale != 1.0:
            mixed = mixed * out_scale  # a power of two: the same as scaling the output weights
        return project(mixed, self.output)  # (B, T, H)


class RwkvFeedForward(nn.Module):
    """Channel mixing: a token-shifted, receptance-gated squared-ReLU MLP."""

    def __init__(self, config: RwkvConfig, layer_id: int):
        super().__init__()
        self.layer_id = layer_id
        H, I = config.hidden_size, config.intermediate_size
        self.time_mix_key = nn.Parameter(torch.empty(1, 1, H))
        self.time_mix_receptance = nn.Parameter(torch.empty(1, 1, H))
        self.key = nn.Linear(H, I, bias=False)
        self.receptance = nn.Linear(H, H, bias=False)
        self.value = nn.Linear(I, H, bias=False)

    def forward(self, x: torch.Tensor, layer: LayerState, out_scale: float) -> torch.Tensor:
        shifted = token_shift(x, layer.ffn_shift)  # (B, T, H)
        key = project(torch.lerp(shifted, x, self.time_mix_key), self.key).relu().square()  # (B, T, I)
        receptance = project(torch.lerp(shifted, x, self.time_mix_receptance), self.receptance).sigmoid()  # (B, T, H)
        layer.ffn_shift = x[:, -1]  # (B, H)
        if out_scale != 1.0:
            key = key * out_scale  # a power of two: the same as scaling the value weights
        return receptance * project(key, self.value)  # (B, T, H)


class RwkvBlock(nn.Module):
    def __init__(self, config: RwkvConfig, layer_id: int):
        super().__init__()
        self.layer_id = layer_id
        H, eps = config.hidden_size, config.layer_norm_epsilon
        if layer_id == 0:
            self.pre_ln = nn.LayerNorm(H, eps=eps)
        self.ln1 = nn.LayerNorm(H, eps=eps)
        self.ln2 = nn.LayerNorm(H, eps=eps)
        self.attention = RwkvSelfAttention(config, layer_id)
        self.feed_forward = RwkvFeedForward(config, layer_id)

    def forward(self, hidden: torch.Tensor, layer: LayerState, out_scale: float, wkv_impl: str):
        """(B, T, H) -> (the block's output, its time-mixing output: what transformers returns as `attentions`)."""
        if self.layer_id == 0:
            hidden = self.pre_ln(hidden)  # (B, T, H)
        attention = self.attention(self.ln1(hidden), layer, out_scale, wkv_impl)  # (B, T, H)
        hidden = hidden + attention  # (B, T, H)
        return hidden + self.feed_forward(self.ln2(hidden), layer, out_scale), attention  # (B, T, H) each


def checkpointed_block(block: RwkvBlock, hidden: torch.Tensor, layer: LayerState, out_scale: float, wkv_impl: str):
    """The block under activation checkpointing: its inputs, the layer's state included, pass as arguments,
    so the recomputation in the backward pass starts from the same state. Writes the new state into `layer`."""
    def run(hidden, ffn_shift, att_shift, *wkv):
        fresh = LayerState(ffn_shift, att_shift, tuple(wkv) if wkv else None)
        out, attention = block(hidden, fresh, out_scale, wkv_impl)  # (B, T, H) each
        return out, attention, fresh.ffn_shift, fresh.att_shift, *fresh.wkv

    outs = checkpoint(run, hidden, layer.ffn_shift, layer.att_shift, *(layer.wkv or ()), use_reentrant=False)
    layer.ffn_shift, layer.att_shift, layer.wkv = outs[2], outs[3], tuple(outs[4:7])
    return outs[0], outs[1]


class RwkvModel(HfApiMixin, PretrainedMixin, nn.Module):
    """The bare RWKV-4 stack: embeddings, blocks, final layer norm."""

    family = RWKV4_FAMILY  # what the services use to handle its state
    base_prefix = "rwkv."

    def __init__(self, config: RwkvConfig):
        super().__init__()
        self.config = config
        self.wkv_impl = "auto"  # "reference" | "cpu" | "cpp" | "triton" | "auto"; see kernels.wkv
        self.embeddings = nn.Embedding(config.vocab_size, config.hidden_size)
        self.blocks = nn.ModuleList(RwkvBlock(config, i) for i in range(config.num_hidden_layers))
        self.ln_out = nn.LayerNorm(config.hidden_size, eps=LN_OUT_EPS)
        self.gradient_checkpointing = False  # see gradient_checkpointing_enable()
        if not self.embeddings.weight.is_meta:  # from_pretrained builds on "meta" and loads real weights after
            self.init_weights()

    def rescale_factor(self, layer_id: int) -> float:
        """At inference the residual stream is halved every `rescale_every` blocks (HF's float16 guard)."""
        every = self.config.rescale_every
        if self.training or every <= 0:
            return 1.0
        return 0.5 ** (layer_id // every)

    def forward(self, input_ids=None, attention_mask=None, inputs_embeds=None, state=None, use_cache=None,
                output_attentions=None, output_hidden_states=None, return_dict=None, **kwargs):
        """transformers' RwkvModel.forward, in its positional order; other keyword arguments are ignored, as there.
        `attentions` (output_attentions=True) are each block's time-mixing output (B, T, H), as transformers
        returns them: RWKV has no attention maps."""
        hidden = self._embed(input_ids, inputs_embeds, attention_mask)  # (B, T, H)
        use_cache = self._resolve_use_cache(use_cache, state)
        if state is not None:
            check_state(state, self.config, hidden.size(0), hidden.device)
        layers = split_layers(state, self.config.num_hidden_layers, hidden.dtype)
        keep_hidden = self.config.output_hidden_states if output_hidden_states is None else output_hidden_states
        keep_attention = getattr(self.config, "output_attentions", False) if output_attentions is None \
            else output_attentions
        all_hidden, all_attention = [], []
        for block, layer in zip(self.blocks, layers):
            hidden, attention = self._run_block(block, hidden, layer)  # (B, T, H) each
            if self.rescale_factor(block.layer_id + 1) != self.rescale_factor(block.layer_id):
                hidden = hidden / 2
            if keep_hidden:
                all_hidden.append(hidden)
            if keep_attention:
                all_attention.append(attention)
        hidden = self.ln_out(hidden)  # (B, T, H)
        output = RwkvOutput(
            last_hidden_state=hidden,
            state=stack_layers(layers) if use_cache else None,
            hidden_states=(*all_hidden, hidden) if keep_hidden else None,
            attentions=tuple(all_attention) if keep_attention else None,
        )
        as_dict = self.config.return_dict if return_dict is None else return_dict
        return output if as_dict else output.to_tuple()

    def _run_block(self, block: RwkvBlock, hidden: torch.Tensor, layer: LayerState):
        scale = self.rescale_factor(block.layer_id)
        if self.gradient_checkpointing and self.training and torch.is_grad_enabled():
            return checkpointed_block(block, hidden, layer, scale, self.wkv_impl)
        return block(hidden, layer, scale, self.wkv_impl)

    def _resolve_use_cache(self, use_cache: bool | None, state) -> bool:
        if use_cache is None:
            use_cache = self.config.use_cache and not self.training
        return bool(use_cache) or state is not None

    def _embed(self, input_ids, inputs_embeds, attention_mask) -> torch.Tensor:
        if (input_ids is None) == (inputs_embeds is None):
            raise InputError("pass exactly one of input_ids and inputs_embeds")
        if attention_mask is not None and not bool(torch.as_tensor(attention_mask).all()):
            raise InputError("attention_mask with zeros (padding) is not supported: RWKV has no attention mask; "
                             "run sequences of different lengths separately")
        if inputs_embeds is not None:
            return self._check_embeds(inputs_embeds)
        return self.embeddings(self._check_ids(input_ids))  # (B, T, H)

    def _check_ids(self, input_ids) -> torch.Tensor:
        input_ids = torch.as_tensor(input_ids, device=self.embeddings.weight.device)
        if input_ids.dtype.is_floating_point or input_ids.dtype == torch.bool:
            raise InputError(f"input_ids must be integer token ids, got dtype {input_ids.dtype}")
        if input_ids.dim() != 2:
            raise InputError(f"input_ids must have shape (batch, sequence), got {tuple(input_ids.shape)}"
                             + (" (add a batch dimension: input_ids[None])" if input_ids.dim() == 1 else ""))
        if input_ids.numel() == 0:
            raise InputError(f"input_ids is empty (shape {tuple(input_ids.shape)}): give at least one token")
        check_token_range(input_ids, self.config.vocab_size, "input_ids")
        return input_ids

    def _check_embeds(self, inputs_embeds: torch.Tensor) -> torch.Tensor:
        H = self.config.hidden_size
        if not isinstance(inputs_embeds, torch.Tensor) or inputs_embeds.dim() != 3 or inputs_embeds.size(-1) != H:
            shape = tuple(inputs_embeds.shape) if isinstance(inputs_embeds, torch.Tensor) else type(inputs_embeds).__name__
            raise InputError(f"inputs_embeds must have shape (batch, sequence, {H}), got {shape}")
        if inputs_embeds.size(0) == 0 or inputs_embeds.size(1) == 0:
            raise InputError(f"inputs_embeds is empty (shape {tuple(inputs_embeds.shape)})")
        weight = self.embeddings.weight
        return inputs_embeds.to(device=weight.device, dtype=weight.dtype)

    @torch.no_grad()
    def init_weights(self) -> None:
        """Random weights shaped like a freshly initialised RWKV-4 (BlinkDL's/HF's time-parameter schedule)."""
        for block in self.blocks:
            init_time_params(block, self.config)
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, std=1.0 / math.sqrt(module.in_features))
            elif isinstance(module, nn.LayerNorm):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
        nn.init.uniform_(self.embeddings.weight, -1e-4, 1e-4)


@torch.no_grad()
def init_time_params(block: RwkvBlock, config: RwkvConfig) -> None:
    """The decay/first/mix schedule Hugging Face and BlinkDL use at initialisation."""
    layer, L = block.layer_id, config.num_hidden_layers
    ratio_0_to_1 = layer / max(L - 1, 1)
    ratio_1_to_almost0 = 1.0 - layer / L
    H, A = config.hidden_size, config.attention_hidden_size
    position = torch.arange(H, dtype=torch.float32) / H  # (H,)
    channel = torch.arange(A, dtype=torch.float32) / max(A - 1, 1)  # (A,)
    att, ffn = block.attention, block.feed_forward
    att.time_decay.copy_(-5 + 8 * channel ** (0.7 + 1.3 * ratio_0_to_1))
    zigzag = ((torch.arange(A) + 1) % 3 - 1).float() * 0.5  # (A,)
    att.time_first.copy_(math.log(0.3) + zigzag)
    att.time_mix_key.copy_(position.pow(ratio_1_to_almost0).view(1, 1, H))
    att.time_mix_value.copy_((position.pow(ratio_1_to_almost0) + 0.3 * ratio_0_to_1).view(1, 1, H))
    att.time_mix_receptance.copy_(position.pow(0.5 * ratio_1_to_almost0).view(1, 1, H))
    ffn.time_mix_key.copy_(position.pow(ratio_1_to_almost0).view(1, 1, H))
    ffn.time_mix_receptance.copy_(position.pow(ratio_1_to_almost0).view(1, 1, H))


class RwkvForCausalLM(GenerationMixin, HfApiMixin, PretrainedMixin, nn.Module):
    """RwkvModel plus the language-model head; `generate` comes from the generation mixin."""

    family = RWKV4_FAMILY  # what the services use to handle its state
    base_prefix = ""

    def __init__(self, config: RwkvConfig):
        super().__init__()
        self.config = config
        self.rwkv = RwkvModel(config)
        self.head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        if not self.head.weight.is_meta:
            nn.init.normal_(self.head.weight, std=0.5 / math.sqrt(config.hidden_size))
        self.tie_weights()
        self.cuda_decode = "graph"  # one-token steps on CUDA: "graph" | "fused" | "ops"; see fused_decode.py
        self.cpu_decode = "fused"  # one-token steps of int8 models on x86: "fused" | "ops"; see cpu_decode.py

    def tie_weights(self) -> None:
        if self.config.tie_word_embeddings:
            self.head.weight = self.rwkv.embeddings.weight
            self.head.out_features = self.head.weight.size(0)

    @property
    def wkv_impl(self) -> str:
        return self.rwkv.wkv_impl

    @wkv_impl.setter
    def wkv_impl(self, impl: str) -> None:
        self.rwkv.wkv_impl = impl

    def forward(self, input_ids=None, attention_mask=None, inputs_embeds=None, state=None, labels=None,
                use_cache=None, output_attentions=None, output_hidden_states=None, return_dict=None,
                logits_to_keep: int | torch.Tensor = 0, **kwargs):
        """transformers' RwkvForCausalLM.forward, in its positional order. Of the other keyword arguments,
        `num_items_in_batch` (the loss is then summed and divided by it) is used, as there; the rest are ignored."""
        as_dict = self.config.return_dict if return_dict is None else return_dict
        if not output_attentions and fused_decode.applies(self, input_ids, inputs_embeds, state, labels,
                                                          output_hidden_states, attention_mask):
            logits, state = cuda_graph.causal_lm_step(self, input_ids, state)  # CUDA, one token: fused kernels
            output = RwkvCausalLMOutput(logits=logits, state=state)
            return output if as_dict else output.to_tuple()
        if not output_attentions and cpu_decode.applies(self, input_ids, inputs_embeds, state, labels,
                                                        output_hidden_states, attention_mask, logits_to_keep):
            logits, state = cpu_decode.decode_step(self, input_ids, state,
                                                   self.rwkv._resolve_use_cache(use_cache, state))
            output = RwkvCausalLMOutput(logits=logits, state=state)  # int8 on x86, one token: the C++ layer step
            return output if as_dict else output.to_tuple()
        base = self.rwkv(input_ids, attention_mask, inputs_embeds, state, use_cache, output_attentions,
                         output_hidden_states, return_dict=True)
        hidden = base.last_hidden_state  # (B, T, H)
        if isinstance(logits_to_keep, torch.Tensor):
            hidden = hidden[:, logits_to_keep.to(hidden.device)]  # (B, K, H): the positions listed
        elif logits_to_keep:
            hidden = hidden[:, -logits_to_keep:]  # (B, K, H)
        logits = self.head(hidden)  # (B, T or K, V)
        loss = None if labels is None else causal_lm_loss(logits, labels, self.config.vocab_size,
                                                          kwargs.get("num_items_in_batch"))
        output = RwkvCausalLMOutput(loss=loss, logits=logits, state=base.state, hidden_states=base.hidden_states,
                                    attentions=base.attentions)
        return output if as_dict else output.to_tuple()


def causal_lm_loss(logits: torch.Tensor, labels: torch.Tensor, vocab_size: int,
                   num_items_in_batch: int | torch.Tensor | None = None) -> torch.Tensor:
    """Next-token cross-entropy: labels are shifted here, so labels=input_ids works; -100 is ignored.
    With `num_items_in_batch` (gradient accumulation, as transformers' Trainer passes it): sum / that count."""
    labels = torch.as_tensor(labels, device=logits.device)
    if labels.shape != logits.shape[:2]:
        raise InputError(f"labels must have shape {tuple(logits.shape[:2])} (batch, sequence), got {tuple(labels.shape)}")
    valid = labels != -100
    if bool(((labels < 0) | (labels >= vocab_size))[valid].any()):
        raise InputError(f"labels must be -100 or token ids in [0, {vocab_size})")
    shift_logits = logits[:, :-1].float().reshape(-1, logits.size(-1))  # (B*(T-1), V)
    shift_labels = labels[:, 1:].reshape(-1)  # (B*(T-1),)
    if num_items_in_batch is None:
        return F.cross_entropy(shift_logits, shift_labels, ignore_index=-100)
    total = F.cross_entropy(shift_logits, shift_labels, ignore_index=-100, reduction="sum")
    return total / torch.as_tensor(num_items_in_batch, device=total.device)
