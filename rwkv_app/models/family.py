"""The model-family interface: everything the layers above the models may know about a family.

A family is a model architecture with its own recurrent state layout (RWKV-4: five (B, C, L) tensors in Hugging
Face's layout; RWKV-7: three batch-first tensors with a matrix per head). The engine, the state tree, session
files, the state inspector and the model manager hold a state as an opaque list of tensors and do everything
to it through the model's family:

    family = family_of(model)                      # model.family, set on each family's model classes
    state = family.empty_state(model, batch=1)
    family.check_state(state, model, batch=1)      # the one check, done where a state enters the engine
    batch = family.stack([s1, s2]); family.row(batch, 0); family.select(batch, index)
    family.to_named(state) / family.from_named(tensors)    # a session file's named tensors
    family.tensors(model)                           # the inspector's description: names, shapes, meanings
    family.layer_matrix(state, name)                # (L, columns) float32: per layer, per channel or per head
    family.heads(model); family.head_matrices(state)  # a per-head state: its layout, (L, H, N, N) float32
    family.token_rates(model, state, token)         # what the update does at a token: (L, H) per rate (RWKV-7)

Row operations assume each state tensor holds its batch in dim 0 (both RWKV families do); a family whose
layout differs overrides stack/select/row. Adding a family: see docs/ARCHITECTURE.md.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch

from ..errors import InputError

DECAY_POINTS = 96  # the inspector samples each layer's sorted decays at this many ranks
State = list  # list[torch.Tensor]: a family's state for a batch of rows


@dataclass(frozen=True)
class StateTensor:
    """One tensor of a family's state as the inspector describes it."""

    name: str
    shape: tuple[int, ...]  # for one row (batch 1)
    dtype: str
    meaning: str
    columns: str  # what a column of layer_matrix(state, name) is: "channel" or "head"


class ModelFamily:
    """Base class of a family: the row operations are shared; the layout-specific methods are the family's."""

    name = "family"  # "rwkv4", "rwkv7": recorded in session files
    label = "model family"  # for people: "RWKV-4"
    state_names: tuple[str, ...] = ()
    memory_tensor = ""  # the state tensor the inspector's per-token trace follows
    chat_names = ("User", "Bot")  # the chat roles the family's models were tuned on
    thinking_format = False  # its chat models think in <think>...</think> (state_tree.chat.THINKING's prefills)

    initial_values: dict[str, float] = {}  # a state tensor's value before any token, when not 0
    meanings: dict[str, str] = {}  # state tensor -> what it holds, for people
    columns: dict[str, str] = {}  # state tensor -> what a column of its layer_matrix is, when not "channel"

    # ---- layout (each family) ------------------------------------------------------------------------
    def empty_state(self, model, batch: int = 1, device: torch.device | str | None = None) -> State:
        """The state before any token: state_spec's tensors for `batch` rows, at their initial values."""
        device = model.device if device is None else device
        return [torch.full((batch, *shape[1:]), self.initial_values.get(name, 0.0), dtype=dtype, device=device)
                for name, (dtype, shape) in self.state_spec(model).items()]

    def state_spec(self, model) -> dict[str, tuple[torch.dtype, tuple[int, ...]]]:
        """name -> (dtype, shape) of each tensor of a one-row state on this model."""
        raise NotImplementedError(f"{type(self).__name__}.state_spec")

    def tensors(self, model) -> list[StateTensor]:
        """The inspector's description of each state tensor (one row), from state_spec, meanings and columns."""
        return [StateTensor(name, shape, dtype_name(dtype), self.meanings.get(name, ""),
                            self.columns.get(name, "channel")) for name, (dtype, shape) in self.state_spec(model).items()]

    def layer_matrix(self, state: State, name: str) -> torch.Tensor:
        """Row 0's tensor `name` as (L, columns) float32 on the CPU, for norms and heatmaps."""
        raise NotImplementedError(f"{type(self).__name__}.layer_matrix")

    def layer_matrix_column(self, name: str) -> str:
        """What one column of layer_matrix(state, name) stands for (the heatmap's caption)."""
        return "channel"

    def decay_rows(self, model) -> list[dict]:
        """{layer, channel rank, decay}: how fast each layer forgets; [] for a family without a decay."""
        return []

    # ---- per-head view (a family whose state holds a matrix per head; RWKV-4's has none) ------------------
    def heads(self, model) -> dict | None:
        """{tensor, layers, heads, size, rows, columns}: the state tensor holding one (size x size) matrix per layer
        and head, and what its rows and columns index; None when the state has no heads."""
        return None

    def head_matrices(self, state: State) -> torch.Tensor:
        """Row 0's per-head matrices as (L, H, size, size) float32 on the CPU (only where `heads` is not None)."""
        raise NotImplementedError(f"{type(self).__name__} has no per-head state")

    def token_rates(self, model, state: State, token: int) -> dict[str, torch.Tensor]:
        """What the state update does when `token` is read on the one-row `state`: name -> (L, H) float32, each
        head's mean over its channels (described by `rate_meanings`); {} for a family without per-head rates."""
        return {}

    rate_meanings: dict[str, str] = {}  # token_rates' names -> what they are, for people

    def fingerprint_tensors(self, model) -> list[torch.Tensor]:
        """A small fixed sample of the weights that tells two checkpoints of the same shapes apart."""
        raise NotImplementedError(f"{type(self).__name__}.fingerprint_tensors")

    def identity_sizes(self, config) -> dict[str, int]:
        """The sizes recorded in a session file's model identity."""
        return {"hidden_size": config.hidden_size, "attention_hidden_size": config.hidden_size,
                "num_hidden_layers": config.num_hidden_layers}

    # ---- checks ------------------------------------------------------------------------------------------
    def check_state(self, state, model, batch: int, device: torch.device | None = None) -> None:
        """Raise InputError naming the offending entry unless `state` is a valid state of `batch` rows."""
        spec = self.state_spec(model)
        if not isinstance(state, (list, tuple)) or len(state) != len(spec):
            got = f"{type(state).__name__} of length {len(state)}" if isinstance(state, (list, tuple)) \
                else type(state).__name__
            raise InputError(f"an {self.label} state is a list of {len(spec)} tensors {tuple(spec)}, got {got}")
        device = torch.device(model.device if device is None else device)
        for index, (tensor, (name, (_, shape))) in enumerate(zip(state, spec.items())):
            label = f"state[{index}] ({name})"
            if not isinstance(tensor, torch.Tensor) or not tensor.is_floating_point():
                raise InputError(f"{label} must be a floating point tensor, got "
                                 f"{getattr(tensor, 'dtype', type(tensor).__name__)}")
            expected = (batch,) + tuple(shape[1:])
            if tuple(tensor.shape) != expected:
                raise InputError(f"{label} has shape {tuple(tensor.shape)}, expected {expected}")
            if tensor.device != device:
                raise InputError(f"{label} is on {tensor.device} but the model runs on {device}")

    # ---- rows (batch in dim 0) ---------------------------------------------------------------------------
    def stack(self, states: Sequence[State]) -> State:
        """Per-row states -> one batched state, rows in order."""
        return [torch.cat(parts, dim=0) for parts in zip(*states)]

    def row(self, state: State, i: int) -> State:
        """Row i as its own one-row state (copies: no view keeps the batch alive)."""
        return [s[i:i + 1].clone() for s in state]

    def split(self, state: State) -> list[State]:
        return [self.row(state, i) for i in range(self.batch_size(state))]

    def select(self, state: State, index: torch.Tensor) -> State:
        """The rows `index` (a (B',) long tensor on the state's device), in that order."""
        return [s.index_select(0, index) for s in state]

    def batch_size(self, state: State) -> int:
        return int(state[0].shape[0])

    def clone(self, state: State) -> State:
        return [s.detach().clone() for s in state]

    def to(self, state: State, device: torch.device | str, copy: bool = False) -> State:
        return [s.detach().to(device, copy=copy) for s in state]

    def nbytes(self, state: State) -> int:
        return sum(s.numel() * s.element_size() for s in state)

    def is_finite(self, state: State) -> bool:
        return all(bool(torch.isfinite(s).all()) for s in state)

    # ---- session files ---------------------------------------------------------------------------------
    def to_named(self, state: State) -> dict[str, torch.Tensor]:
        """A one-row state as named CPU tensors (a session file's entries for one node)."""
        return {name: s.detach().cpu().contiguous() for name, s in zip(self.state_names, state)}

    def from_named(self, tensors: dict[str, torch.Tensor]) -> State:
        return [tensors[name] for name in self.state_names]

    def state_bytes(self, model) -> int:
        """Bytes of a one-row state on this model (what a session budget counts per node)."""
        return sum(math.prod(shape) * torch.empty(0, dtype=dtype).element_size()
                   for dtype, shape in self.state_spec(model).values())


def family_of(model) -> ModelFamily:
    """The family of a model (its class's `family`); InputError for an object that has none."""
    family = getattr(model, "family", None)
    if not isinstance(family, ModelFamily):
        raise InputError(f"{type(model).__name__} declares no model family (a `family` attribute holding a "
                         "ModelFamily): the services run only models of a family")
    return family


def sampled_rows(layer: int, decay: torch.Tensor) -> list[dict]:
    """{layer, channel rank, decay} for a sorted (C,) decay, at most DECAY_POINTS evenly spaced ranks."""
    picks = torch.linspace(0, decay.numel() - 1, min(DECAY_POINTS, decay.numel())).round().long()
    return [{"layer": f"layer {layer}", "channel rank": rank / max(1, len(picks) - 1), "decay": float(decay[i])}
            for rank, i in enumerate(picks.tolist())]


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).replace("torch.", "")
