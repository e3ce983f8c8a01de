"""Resumable training checkpoints, with no pickle anywhere: safetensors for tensors, JSON for the rest.

    OUT/checkpoint/config.json, model.safetensors   the float32 weights (a loadable model folder)
    OUT/checkpoint/optimizer.safetensors            AdamW's moments and step counts, the RNG states
    OUT/checkpoint/trainer.json                     step, training settings, optimizer param groups, history

A checkpoint is written to a temporary folder and renamed into place, so a run killed mid-save keeps the last one.
"""
from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from ..errors import CheckpointError
from .families import MODEL_CLASSES

CHECKPOINT_DIR = "checkpoint"
OPTIMIZER_FILE = "optimizer.safetensors"
TRAINER_FILE = "trainer.json"


@dataclass
class ResumeState:
    """What a checkpoint holds besides the model weights."""

    step: int
    settings: dict  # the TrainConfig fields, as JSON
    optimizer: dict  # torch optimizer state_dict
    data_rng: torch.Tensor  # the batch sampler's generator state
    torch_rng: torch.Tensor  # torch's global CPU generator state
    history: list  # [{"step", "train_loss", "heldout_loss", ...}] evaluation records so far
    seconds: float  # wall time spent training up to this checkpoint, over all runs


def save_checkpoint(out: Path, model, resume: ResumeState) -> Path:
    final = out / CHECKPOINT_DIR
    staging, previous = out / (CHECKPOINT_DIR + ".tmp"), out / (CHECKPOINT_DIR + ".old")
    shutil.rmtree(staging, ignore_errors=True)
    model.save_pretrained(staging)
    tensors, groups = flatten_optimizer(resume.optimizer)
    tensors["rng.data"], tensors["rng.torch"] = resume.data_rng, resume.torch_rng
    save_file(tensors, str(staging / OPTIMIZER_FILE))
    trainer = {"step": resume.step, "seconds": resume.seconds, "settings": resume.settings, "param_groups": groups,
               "history": resume.history}
    (staging / TRAINER_FILE).write_text(json.dumps(trainer, indent=1) + "\n", encoding="utf-8")
    shutil.rmtree(previous, ignore_errors=True)
    if final.exists():
        final.rename(previous)
    staging.rename(final)
    shutil.rmtree(previous, ignore_errors=True)
    return final


def load_checkpoint(out: Path) -> tuple[object, ResumeState]:
    """The float32 model (in train mode) and the rest of the state saved under `out/checkpoint`."""
    folder = out / CHECKPOINT_DIR
    if not (folder / TRAINER_FILE).is_file():
        raise CheckpointError(f"no training checkpoint to resume in {folder} (expected {TRAINER_FILE})")
    trainer = json.loads((folder / TRAINER_FILE).read_text(encoding="utf-8"))
    tensors = load_file(str(folder / OPTIMIZER_FILE))
    family = trainer["settings"].get("family", "rwkv4")  # runs from before --family were RWKV-4
    model = MODEL_CLASSES[family].from_pretrained(folder, dtype="float32").train()
    optimizer = unflatten_optimizer(tensors, trainer["param_groups"])
    return model, ResumeState(step=trainer["step"], settings=trainer["settings"], optimizer=optimizer,
                              data_rng=tensors["rng.data"], torch_rng=tensors["rng.torch"],
                              history=trainer["history"], seconds=trainer["seconds"])


def flatten_optimizer(state_dict: dict) -> tuple[dict[str, torch.Tensor], list[dict]]:
    """An optimizer state_dict as {"state.<param index>.<name>": tensor} and JSON-ready param groups."""
    tensors = {}
    for index, entries in state_dict["state"].items():
        for name, value in entries.items():
            tensors[f"state.{index}.{name}"] = torch.as_tensor(value).detach().clone().contiguous()
    return tensors, [dict(group) for group in state_dict["param_groups"]]


def unflatten_optimizer(tensors: dict[str, torch.Tensor], groups: list[dict]) -> dict:
    state: dict[int, dict] = {}
    for key, value in tensors.items():
        if key.startswith("state."):
            _, index, name = key.split(".", 2)
            state.setdefault(int(index), {})[name] = value
    return {"state": state, "param_groups": groups}
