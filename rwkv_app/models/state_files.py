"""State files: a model's recurrent state (batch 1) saved to and loaded from a file of named tensors.

    load_state_file(path, model)            -> a batch-1 state for `model`, refused unless it fits
    save_state_file(state, model, path)     -> .safetensors / .state (safetensors) or .pth / .pt (torch.save)
    mix_states([s1, s2], [w1, w2], model)   -> sum_j w_j * s_j, a new state (each family defines the sum)

The layouts are the families' (RWKV-7: RWKV-Runner / RWKV-PEFT `blocks.{i}.att.time_state`, see
rwkv7/state_file.py; RWKV-4: five named tensors per layer, see rwkv4/state_file.py). Export then import gives the
same state bit for bit. Reading never unpickles anything but tensors: `.pth` goes through
torch.load(weights_only=True) and must hold a flat dict of tensors; safetensors headers are checked before
parsing; files larger than the model's state could need are refused unread; every tensor must be floating point
and finite, with exactly the expected keys and shapes (the error names the mismatch).
"""
from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .rwkv4.config import RwkvConfig
from ..errors import CheckpointError, InputError, WrongModelError
from .rwkv4.state_file import (describe_mismatch4, expected_tensors4, file_model4, mix4, state4_from_tensors,
                               state4_to_tensors)
from .rwkv7.config import Rwkv7Config
from .rwkv7.state_file import (describe_mismatch7, expected_tensors7, file_model7, mix7, state7_from_tensors,
                               state7_to_tensors)

SAFETENSORS_SUFFIXES = (".safetensors", ".state")  # Ai00 names its safetensors state files .state
TORCH_SUFFIXES = (".pth", ".pt")
SUFFIXES = ", ".join(SAFETENSORS_SUFFIXES + TORCH_SUFFIXES)
SLACK_BYTES = 1 << 20  # headers, zip structure, names: a state file may exceed its tensors' bytes by this much
MAX_HEADER_BYTES = 1 << 20  # a safetensors header (JSON) longer than this is not a state file's


@dataclass(frozen=True)
class StateLayout:
    """A family's state-file functions (see the module docstring)."""

    expected: Callable  # config -> ({key: shape}, optional keys)
    describe_mismatch: Callable  # (tensors, config) -> str | None
    to_tensors: Callable  # (state, config, token_shifts) -> {key: tensor}
    from_tensors: Callable  # (tensors, config, dtype, device) -> state
    mix: Callable  # (states, weights) -> state
    label: str  # the family, for people: "RWKV-7"
    file_model: Callable  # tensors -> the model a file in this layout is for, in words; None: not this layout


class StateModelError(CheckpointError, WrongModelError):
    """A state file of another family than the model's (`needed` names the model it is for)."""


LAYOUTS = {
    Rwkv7Config: StateLayout(expected_tensors7, describe_mismatch7, state7_to_tensors, state7_from_tensors, mix7,
                             "RWKV-7", file_model7),
    RwkvConfig: StateLayout(expected_tensors4, describe_mismatch4, state4_to_tensors, state4_from_tensors, mix4,
                            "RWKV-4", file_model4),
}


def layout_of(config) -> StateLayout:
    for kind, layout in LAYOUTS.items():
        if isinstance(config, kind):
            return layout
    raise InputError(f"no state-file layout for a model configured by {type(config).__name__}")


# ---- public API --------------------------------------------------------------------------------------------
def load_state_file(path: str | Path, model) -> list[torch.Tensor]:
    """The batch-1 state stored in `path`, in `model`'s dtype (WKV float32) and on its device."""
    path, config = Path(path), model.config
    layout = layout_of(config)
    shapes, optional = layout.expected(config)
    tensors = read_state_tensors(path, max_bytes=8 * sum(_numel(s) for s in shapes.values()) + SLACK_BYTES)
    check_family(tensors, layout, path)
    check_state_tensors(tensors, shapes, optional, path, layout.describe_mismatch(tensors, config))
    return layout.from_tensors(tensors, config, model.dtype, model.device)


def save_state_file(state: list[torch.Tensor], model, path: str | Path, token_shifts: bool = True) -> Path:
    """Write a batch-1 state of `model` to `path` (format by suffix); returns the path."""
    path = Path(path)
    tensors = layout_of(model.config).to_tensors(state, model.config, token_shifts)
    tensors = {key: value.detach().to("cpu").contiguous() for key, value in tensors.items()}
    if path.suffix in SAFETENSORS_SUFFIXES:
        save_file(tensors, str(path), metadata={"format": "pt"})
    elif path.suffix in TORCH_SUFFIXES:
        torch.save(tensors, path)
    else:
        raise InputError(f"state file {path.name!r}: choose a name ending in {SUFFIXES}")
    return path


def mix_states(states: list[list[torch.Tensor]], weights: list[float], model) -> list[torch.Tensor]:
    """A new state, the weighted sum of batch-1 states of `model` (weights finite, >= 0, not all 0)."""
    if len(states) != len(weights) or not states:
        raise InputError(f"mixing needs one weight per state: got {len(states)} states and {len(weights)} weights")
    weights = [float(w) for w in weights]
    if not all(w >= 0 and w != float("inf") for w in weights) or not any(w > 0 for w in weights):
        raise InputError(f"mixing weights must be finite, >= 0 and not all zero, got {weights}")
    return layout_of(model.config).mix(states, weights)


# ---- reading and checking ----------------------------------------------------------------------------------
def read_state_tensors(path: Path, max_bytes: int) -> dict[str, torch.Tensor]:
    """{key: tensor} from a safetensors or torch file, refusing what is too large or not a flat dict of tensors."""
    if not path.is_file():
        raise CheckpointError(f"state file not found: {path}")
    size = path.stat().st_size
    if size > max_bytes:
        raise CheckpointError(f"state file {path.name} is too large: {size} bytes, while this model's state needs "
                              f"at most {max_bytes} (is it a model checkpoint, or a state of a bigger model?)")
    if path.suffix in SAFETENSORS_SUFFIXES:
        return _read_safetensors(path, size)
    if path.suffix in TORCH_SUFFIXES:
        return _read_torch(path)
    raise CheckpointError(f"unsupported state file {path.name}: expected {SUFFIXES}")


def _read_safetensors(path: Path, size: int) -> dict[str, torch.Tensor]:
    with open(path, "rb") as handle:
        head = handle.read(8)
    header_len = struct.unpack("<Q", head)[0] if len(head) == 8 else None
    if header_len is None or header_len > min(size - 8, MAX_HEADER_BYTES):
        raise CheckpointError(f"state file {path.name} is not a valid safetensors file (truncated, or a header of "
                              f"{header_len} bytes in a file of {size})")
    try:
        return load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError, json.JSONDecodeError) as err:
        raise CheckpointError(f"cannot read state file {path.name} (truncated or corrupt?): {err}") from None


def _read_torch(path: Path) -> dict[str, torch.Tensor]:
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # weights_only refusals, zip and pickle errors all mean: not a plain tensor file
        first = (str(err).strip().splitlines() or ["(no message)"])[0]
        raise CheckpointError(f"cannot read state file {path.name} (truncated, corrupt, or holding objects other "
                              f"than tensors; only tensors are loaded): {type(err).__name__}: {first}") from None
    if not isinstance(loaded, dict):
        raise CheckpointError(f"state file {path.name} holds a {type(loaded).__name__}, not a dict of tensors")
    for key, value in loaded.items():
        if not isinstance(key, str) or not isinstance(value, torch.Tensor):
            raise CheckpointError(f"state file {path.name}: entry {key!r} is a {type(value).__name__}, not a tensor")
    return loaded


def check_family(tensors: dict, layout: StateLayout, path: Path) -> None:
    """Refuse a state file of another family, naming it and the model it is for (a StateModelError)."""
    if layout.file_model(tensors) is not None:
        return
    for other in LAYOUTS.values():
        sizes = other.file_model(tensors)
        if sizes is not None:
            raise StateModelError(f"state file {path.name} holds an {other.label} state ({sizes}) but this model is "
                                  f"an {layout.label} model: a state file only opens on its own family",
                                  f"an {other.label} model with {sizes}")


def check_state_tensors(tensors: dict, shapes: dict, optional: set, path: Path, mismatch: str | None) -> None:
    """Refuse a file whose keys, shapes or values do not fit, naming the first problem."""
    name = path.name
    if mismatch:
        raise CheckpointError(f"state file {name} does not fit this model: {mismatch}")
    missing = sorted(set(shapes) - set(tensors) - optional)
    extra = sorted(set(tensors) - set(shapes))
    if missing or extra:
        raise CheckpointError(f"state file {name} does not fit this model: missing keys {missing[:5]}, "
                              f"unexpected keys {extra[:5]}")
    for key, tensor in tensors.items():
        if tuple(tensor.shape) != shapes[key]:
            raise CheckpointError(f"state file {name}: {key} has shape {tuple(tensor.shape)}, expected {shapes[key]}")
        if not tensor.is_floating_point():
            raise CheckpointError(f"state file {name}: {key} is {tensor.dtype}, expected a floating point tensor")
        if not bool(torch.isfinite(tensor).all()):
            raise CheckpointError(f"state file {name}: {key} holds NaN or infinite values")


def _numel(shape: tuple[int, ...]) -> int:
    count = 1
    for dim in shape:
        count *= dim
    return count
