"""RWKV-7 state files: RWKV-Runner / RWKV-PEFT "state tuning" tensors, and back.

A state-tuned RWKV-7 is shared as a file of one tensor per layer,

    blocks.{i}.att.time_state   (H, N, N)   heads x head size x head size, indexed [head, key, value]

(RWKV-PEFT trains it as a parameter and saves it with torch.save; Ai00 reads the same keys from a `.state`
safetensors file). It is the transpose of BlinkDL's x070 WKV matrix, which is indexed [value, key]
(`state @ r` reads it, `v.view(H,N,1) @ k.view(H,1,N)` writes it): every loader applies
`w[f'blocks.{i}.att.time_state'].transpose(1, 2)` before use -- RWKV-Runner's backend (its fork of the `rwkv`
pip package, and its API's state cache), BlinkDL's ChatRWKV state demo, and the x070 ONNX exporters built on
RWKV_x070 -- and they start the two token shifts (att_x_prev, ffn_x_prev) at zero. So here: load transposes each
matrix into our [value, key] layout (state[2][0, i, h] = time_state[h].T) and zeroes the shifts; export
transposes back.

Two optional keys per layer, our own, keep a state exactly (RWKV-Runner and Ai00 look keys up by name, so they
ignore them; `token_shifts=False` leaves them out):

    blocks.{i}.att.token_shift  (C,)  the last input of layer i's time mix   (our state[0][0, i])
    blocks.{i}.ffn.token_shift  (C,)  the last input of layer i's channel mix (our state[1][0, i])
"""
from __future__ import annotations

import re

import torch

from ...errors import CheckpointError
from .config import Rwkv7Config
from .state import init_state7

TIME_STATE = "blocks.{}.att.time_state"
ATT_SHIFT = "blocks.{}.att.token_shift"
FFN_SHIFT = "blocks.{}.ffn.token_shift"
_LAYER = re.compile(r"^blocks\.(\d+)\.att\.time_state$")


def expected_tensors7(config: Rwkv7Config) -> tuple[dict[str, tuple[int, ...]], set[str]]:
    """({key: shape} of a state file for this config, the keys that may be absent)."""
    L, C, H, N = config.num_hidden_layers, config.hidden_size, config.num_heads, config.head_dim
    shapes, optional = {}, set()
    for i in range(L):
        shapes[TIME_STATE.format(i)] = (H, N, N)
        for key in (ATT_SHIFT.format(i), FFN_SHIFT.format(i)):
            shapes[key] = (C,)
            optional.add(key)
    return shapes, optional


def describe_mismatch7(tensors: dict[str, torch.Tensor], config: Rwkv7Config) -> str | None:
    """A sentence naming how the file's time_state tensors differ from this model (layers, heads, head size)."""
    layers = sorted(int(m.group(1)) for m in map(_LAYER.match, tensors) if m)
    L, H, N = config.num_hidden_layers, config.num_heads, config.head_dim
    if not layers:
        return f"it has no blocks.{{i}}.att.time_state tensors (keys: {', '.join(sorted(tensors)[:5]) or 'none'})"
    if layers != list(range(L)):
        return (f"it holds time_state for {len(layers)} layers (blocks {layers[0]}..{layers[-1]}) but the model has "
                f"{L} layers")
    shape = tuple(tensors[TIME_STATE.format(0)].shape)
    if len(shape) != 3 or shape[1] != shape[2]:
        return f"its time_state has shape {shape}; an RWKV-7 state is (heads, head size, head size) = {(H, N, N)}"
    differences = [f"{shape[0]} heads but the model has {H}"] if shape[0] != H else []
    if shape[1] != N:
        differences.append(f"head size {shape[1]} but the model's is {N}")
    if differences:
        return f"its time_state has {' and '.join(differences)} (shape {shape}, expected {(H, N, N)})"
    return None


def file_model7(tensors: dict[str, torch.Tensor]) -> str | None:
    """The model a file in this layout is for, for people ("24 layers, 32 heads of 64"); None when it has no
    blocks.{i}.att.time_state tensor (not an RWKV-7 state file)."""
    keys = [key for key in tensors if _LAYER.match(key)]
    if not keys:
        return None
    shape = tuple(tensors[keys[0]].shape)  # (H, N, N)
    return f"{len(keys)} layers" + (f", {shape[0]} heads of {shape[-1]}" if len(shape) == 3 else "")


def state7_to_tensors(state: list[torch.Tensor], config: Rwkv7Config, token_shifts: bool = True) -> dict:
    """The file's tensors for a batch-1 state: time_state float32 [head, key, value]; shifts in their dtype."""
    if state[2].shape[0] != 1:
        raise CheckpointError(f"a state file holds one state; this one has a batch of {state[2].shape[0]}")
    tensors = {}
    for i in range(config.num_hidden_layers):
        tensors[TIME_STATE.format(i)] = state[2][0, i].float().transpose(1, 2).contiguous()  # (H, N, N)
        if token_shifts:
            tensors[ATT_SHIFT.format(i)] = state[0][0, i].contiguous()  # (C,)
            tensors[FFN_SHIFT.format(i)] = state[1][0, i].contiguous()  # (C,)
    return tensors


def state7_from_tensors(tensors: dict, config: Rwkv7Config, dtype: torch.dtype, device) -> list[torch.Tensor]:
    """A batch-1 state from checked file tensors: WKV transposed to [value, key] float32, absent shifts zero."""
    state = init_state7(config, 1, dtype, device)
    for i in range(config.num_hidden_layers):
        state[2][0, i] = tensors[TIME_STATE.format(i)].to(torch.float32).transpose(1, 2)  # (H, N, N)
        for index, key in ((0, ATT_SHIFT.format(i)), (1, FFN_SHIFT.format(i))):
            if key in tensors:
                state[index][0, i] = tensors[key].to(dtype)  # (C,)
    return state


def mix7(states: list[list[torch.Tensor]], weights: list[float]) -> list[torch.Tensor]:
    """sum_j w_j * state_j for every tensor: the WKV matrices as RWKV-Infer's state mixing does, and the token
    shifts with the same weights (zeroing them would forget both states' last token). float32 accumulation."""
    mixed = []
    for parts in zip(*states):
        total = sum(w * part.float() for w, part in zip(weights, parts))  # same shape as each part
        mixed.append(total.to(parts[0].dtype))
    return mixed
