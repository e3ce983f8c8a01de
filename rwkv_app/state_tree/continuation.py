"""Generating under a node: one or more continuations, streamed through the model's own decode loop.

Rows that run on the same model go as ONE batch through `model.stream_generate`, started from the node's
kept state and logits (`state=` + `start_logits=`: no token of the path runs again), each row with its
own SamplingSettings, so a seed gives the same continuation alone or beside other rows. Rows on another
model (same vocabulary) form their own batch, which starts with one forward over the path on that model;
the tree keeps no state for their nodes (its own model recomputes one when needed).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Iterator, Mapping

import torch

from ..core.generation import FinishEvent, TokenEvent
from ..models.family import family_of
from ..core.presets import load_sampling_preset
from ..core.sampling import SamplingSettings
from .grow import Growth
from .nodes import ROLES, STARTS, Change, SessionError

_END = object()


@dataclass(frozen=True)
class Branch:
    """One continuation to generate. `sampling`: SamplingSettings, a preset name, a dict of settings, or None
    (greedy); `seed` and `overrides` (setting -> value) apply on top. `model`: None for the tree's model, or
    another loaded model with the same vocabulary (`model_id` names it in the node's meta)."""

    sampling: SamplingSettings | str | Mapping[str, Any] | None = None
    seed: int | None = None
    model: Any = None
    model_id: str | None = None
    label: str | None = None  # e.g. the preset name; defaults to `sampling` when that is a name
    overrides: Mapping[str, Any] = field(default_factory=dict)


@dataclass
class Row:
    """A branch resolved: its settings, its model, and the tokens streamed so far."""

    settings: SamplingSettings
    label: str | None
    model: Any
    model_id: str
    tokens: list[int] = field(default_factory=list)
    probs: list[float] = field(default_factory=list)
    top: list[tuple] = field(default_factory=list)
    node: str | None = None

    def take(self, event: TokenEvent) -> None:
        self.tokens.append(event.token)
        self.probs.append(event.prob)
        self.top.append(event.top)


def resolve_sampling(spec, overrides: Mapping[str, Any]) -> SamplingSettings:
    if spec is None:
        settings = SamplingSettings()
    elif isinstance(spec, SamplingSettings):
        settings = spec
    elif isinstance(spec, str):
        settings = load_sampling_preset(spec)
    elif isinstance(spec, Mapping):
        settings = SamplingSettings.from_dict(spec)
    else:
        raise SessionError(f"sampling must be SamplingSettings, a preset name or a dict, got {type(spec).__name__}")
    changes = {k: v for k, v in overrides.items() if v is not None}
    if "stop_strings" in changes:
        changes["stop"] = changes.pop("stop_strings")
    return settings.replace(**changes)


def resolve_row(tree, branch: Branch) -> Row:
    settings = resolve_sampling(branch.sampling, branch.overrides)
    if branch.seed is not None:
        settings = settings.replace(seed=branch.seed)
    label = branch.label or (branch.sampling if isinstance(branch.sampling, str) else None)
    if branch.model is None or branch.model is tree.model:
        return Row(settings, label, tree.model, tree.identity.model_id)
    if branch.model.config.vocab_size != tree.model.config.vocab_size:
        raise SessionError(f"model {branch.model_id or 'for a branch'} has vocabulary {branch.model.config.vocab_size}"
                           f", this session's {tree.model.config.vocab_size}: they cannot share a tree")
    return Row(settings, label, branch.model, branch.model_id or "other model")


def start(tree, parent_id: str, branches: list[Branch], role: str, criteria) -> Iterator:
    """Check everything now (unknown node, bad settings); the returned generator does the work."""
    parent = tree.node(parent_id)
    if parent.role in STARTS:  # no token fed yet, so no next-token logits: text first
        where = "at the root" if parent.parent is None else "at a loaded state"
        raise SessionError(f"nothing to continue {where}: add some text first")
    if role not in ROLES or role in STARTS:
        raise SessionError(f"role must be one of {tuple(r for r in ROLES if r not in STARTS)}, got {role!r}")
    rows = [resolve_row(tree, branch) for branch in branches]
    if tree.tokenizer is None and any(row.settings.stop for row in rows):
        raise SessionError("stop strings need the session's tokenizer")
    return run_rows(tree, parent_id, rows, role, list(criteria or ()))


def run_rows(tree, parent_id: str, rows: list[Row], role: str, criteria: list) -> Iterator:
    context = tree.path_tokens(parent_id)
    groups: dict[int, list[int]] = {}
    for index, row in enumerate(rows):
        groups.setdefault(id(row.model), []).append(index)
    streams = [group_stream(tree, parent_id, context, rows, members, criteria) for members in groups.values()]
    growth = Growth(tree, parent_id, rows, role)
    try:
        for event in interleave(streams):
            growth.feed(event)
            yield event
    except GeneratorExit:
        growth.keep_partial()
        raise
    finally:
        for stream in streams:
            stream.close()
    added = tuple(growth.nodes)
    yield Change(added[0] if len(rows) == 1 else parent_id, added)


def group_stream(tree, parent_id: str, context: list[int], rows: list[Row], members: list[int],
                 criteria: list) -> Iterator:
    """The events of one model's batch, rows renumbered to their index among all branches."""
    model = rows[members[0]].model
    device, family = model.device, family_of(model)
    if model is tree.model:
        kept = tree.resume(parent_id)
        state, logits = family.to(kept.state, device), kept.logits.to(device)  # one row, (V,)
    else:
        with torch.no_grad():
            out = model(input_ids=torch.tensor([context], device=device), use_cache=True, logits_to_keep=1)
        state, logits = out.state, out.logits[0, -1].float()  # one row, (V,)
    B = len(members)
    state = family.stack([state] * B) if B > 1 else state  # B rows
    logits = logits[None].repeat(B, 1)  # (B, V)
    events = model.stream_generate(torch.tensor([context], device=device), state=state, start_logits=logits,
                                   sampling=[rows[i].settings for i in members], tokenizer=tree.tokenizer,
                                   top_alternatives=tree.top_alternatives, stopping_criteria=criteria)
    try:
        for event in events:
            yield dataclasses.replace(event, row=members[event.row])
    finally:
        events.close()


def interleave(streams: list[Iterator]) -> Iterator:
    """Round-robin over the streams, one item at a time, until all are done."""
    live = list(streams)
    while live:
        for stream in list(live):
            item = next(stream, _END)
            if item is _END:
                live.remove(stream)
            else:
                yield item
