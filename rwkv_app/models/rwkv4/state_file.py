"""RWKV-4 state files: a saved state of an RWKV-4 model, five tensors per layer under clear names.

RWKV-4 has no state-tuning ecosystem format (its WKV state is three vectors per layer, not a matrix), so the file
spells out this playground's state (Hugging Face's layout, rwkv_app/state.py) one layer at a time:

    blocks.{i}.ffn.token_shift  (C,)  the last input of layer i's channel mix        (state[0][0, :, i])
    blocks.{i}.att.token_shift  (C,)  the last input of layer i's time mix           (state[1][0, :, i])
    blocks.{i}.att.wkv_num      (A,)  WKV numerator, scaled by exp(-wkv_max), float32 (state[2][0, :, i])
    blocks.{i}.att.wkv_den      (A,)  WKV denominator, scaled the same way, float32   (state[3][0, :, i])
    blocks.{i}.att.wkv_max      (A,)  the running max exponent, float32 (-1e38 before any token) (state[4][0, :, i])

C = hidden_size, A = attention_hidden_size. All five are required.
"""
from __future__ import annotations

import torch

from .config import RwkvConfig
from ...errors import CheckpointError
from .state import init_state

NAMES = ("blocks.{}.ffn.token_shift", "blocks.{}.att.token_shift", "blocks.{}.att.wkv_num",
         "blocks.{}.att.wkv_den", "blocks.{}.att.wkv_max")  # in the order of the state's five tensors


def expected_tensors4(config: RwkvConfig) -> tuple[dict[str, tuple[int, ...]], set[str]]:
    C, A = config.hidden_size, config.attention_hidden_size
    shapes = {}
    for i in range(config.num_hidden_layers):
        for index, name in enumerate(NAMES):
            shapes[name.format(i)] = (C if index < 2 else A,)
    return shapes, set()


def describe_mismatch4(tensors: dict[str, torch.Tensor], config: RwkvConfig) -> str | None:
    layers = {int(key.split(".")[1]) for key in tensors if key.startswith("blocks.") and key.count(".") >= 2
              and key.split(".")[1].isdigit()}
    if not layers:
        return f"it has no blocks.{{i}}.* tensors (keys: {', '.join(sorted(tensors)[:5]) or 'none'})"
    if layers != set(range(config.num_hidden_layers)):
        return f"it holds {len(layers)} layers but the model has {config.num_hidden_layers}"
    shape = tuple(tensors.get(NAMES[0].format(0), torch.empty(0)).shape)
    if shape and shape != (config.hidden_size,):
        return f"its hidden size is {shape[0]} but the model's is {config.hidden_size}"
    return None


def file_model4(tensors: dict[str, torch.Tensor]) -> str | None:
    """The model a file in this layout is for, for people ("24 layers of 2048 channels"); None when it has no
    blocks.{i}.att.wkv_num tensor (not an RWKV-4 state file)."""
    keys = [key for key in tensors if key.startswith("blocks.") and key.endswith(".att.wkv_num")]
    if not keys:
        return None
    return f"{len(keys)} layers of {tensors[keys[0]].numel()} channels"


def state4_to_tensors(state: list[torch.Tensor], config: RwkvConfig, token_shifts: bool = True) -> dict:
    """The file's tensors for a batch-1 state (`token_shifts` is accepted for symmetry; RWKV-4 keeps all five)."""
    if state[0].shape[0] != 1:
        raise CheckpointError(f"a state file holds one state; this one has a batch of {state[0].shape[0]}")
    return {name.format(i): state[index][0, :, i].contiguous()  # (C,) or (A,)
            for i in range(config.num_hidden_layers) for index, name in enumerate(NAMES)}


def state4_from_tensors(tensors: dict, config: RwkvConfig, dtype: torch.dtype, device) -> list[torch.Tensor]:
    state = init_state(config, 1, dtype, device)
    for i in range(config.num_hidden_layers):
        for index, name in enumerate(NAMES):
            state[index][0, :, i] = tensors[name.format(i)].to(state[index].dtype)
    return state


def mix4(states: list[list[torch.Tensor]], weights: list[float]) -> list[torch.Tensor]:
    """sum_j w_j * state_j in the real domain: the WKV sums are stored as (num, den) * exp(-max), so each is
    rescaled to the common max before the weighted sum; the token shifts mix with the same weights."""
    shifts = [sum(w * s[k].float() for w, s in zip(weights, states)).to(states[0][k].dtype) for k in (0, 1)]
    top = torch.stack([s[4] for s in states]).amax(0)  # (1, A, L)
    scales = [w * torch.exp(s[4] - top) for w, s in zip(weights, states)]  # (1, A, L) each
    num = sum(scale * s[2] for scale, s in zip(scales, states))  # (1, A, L)
    den = sum(scale * s[3] for scale, s in zip(scales, states))  # (1, A, L)
    return shifts + [num, den, top.clone()]
