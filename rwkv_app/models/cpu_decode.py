"""What the int8 CPU decode steps of both families share: when a forward takes one, and each model's weights.

kernels/int8_cpu runs a whole block for one token per row in one C++ call (rwkv4_step.cpp, rwkv7_step.cpp), where
the per-op forward in the family's modeling.py spends ~45 (RWKV-4) or ~90 (RWKV-7) torch ops a block; at batch 1
those ops cost more than reading the int8 weights (docs/BENCHMARKS.md, "sixth pass"). The per-op forward is the
step's reference: tests/test_cpu_decode.py holds the two together, and `model.cpu_decode = "ops"` (or
RWKV_INT8_KERNEL=0) runs it.

A forward takes the step where: the model is int8 (quantize.py) with every projection and the head in
kernels/int8_cpu's layout and the extension built; it runs under no_grad (or its parameters need no gradient) and
not in training mode; it gets token ids, one per row; nothing is asked that only the per-op path computes (hidden
states, attentions, a loss, an attention mask, embeddings in); the Int8Linears are not on their float32 oracle
(`quantize.set_reference`).
"""
from __future__ import annotations

import weakref
from typing import Callable

import torch

from kernels import int8_cpu

from ..errors import InputError
from .quantize import INT8, Int8Linear

MODES = ("fused", "ops")  # a model's `cpu_decode`: the C++ layer step, or the per-op path


def applies(model, head, input_ids, inputs_embeds, labels, output_hidden_states, attention_mask, extra=()) -> bool:
    """The conditions in the module docstring that do not depend on the family; `head` is the model's head."""
    mode = getattr(model, "cpu_decode", "ops")
    if mode not in MODES:
        raise InputError(f"model.cpu_decode must be one of {MODES}, got {mode!r}")
    if mode == "ops" or getattr(model, "weight_dtype", None) != INT8 or model.training:
        return False
    if getattr(head, "reference", False):  # quantize.set_reference sets every Int8Linear's flag
        return False
    if torch.is_grad_enabled() and any(p.requires_grad for p in model.parameters()):
        return False
    if inputs_embeds is not None or labels is not None or attention_mask is not None or extra:
        return False
    if output_hidden_states or (output_hidden_states is None and model.config.output_hidden_states):
        return False
    one_token = isinstance(input_ids, torch.Tensor) and input_ids.dim() == 2 and input_ids.size(1) == 1
    return one_token and int8_cpu.load() is not None


def all_packed(linears) -> bool:
    """Every one of these modules an Int8Linear in kernels/int8_cpu's layout."""
    return all(isinstance(m, Int8Linear) and m.packed for m in linears)


class Plans:
    """model -> its blocks' weight lists in the C++ step's order, taken once per model (nn.Module lookups cost
    ~0.5 ms a step at 12 layers) and again when `probes(model)` move: moving the model, or replacing the embedding,
    the head, or the first or last block's modules. In-place updates (load_state_dict) keep the tensors a plan
    holds. Code that swaps a middle block's modules after a fused step calls `forget(model)`."""

    def __init__(self, probes: Callable[[object], list[torch.Tensor]], build: Callable[[object], list | None]):
        self.probes, self.build = probes, build
        self.plans: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()  # model -> (signature, weights)

    def get(self, model) -> list[list[torch.Tensor]] | None:
        """The weight lists, or None where `build` finds a projection the step cannot take."""
        key = tuple(p.data_ptr() for p in self.probes(model))
        cached = self.plans.get(model)
        if cached is None or cached[0] != key:
            cached = self.plans[model] = (key, self.build(model))
        return cached[1]

    def forget(self, model) -> None:
        self.plans.pop(model, None)
