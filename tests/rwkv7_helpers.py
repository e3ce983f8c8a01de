"""Tiny random RWKV-7 checkpoints, and BlinkDL's reference (the `rwkv` pip package, RWKV_x070) run in a child process.

The `rwkv` package reads RWKV_V7_ON / RWKV_JIT_ON when rwkv.model is imported and then TorchScript-compiles
the x070 functions, so it runs in its own interpreter with the variables set first; results come back in a file.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import torch

from rwkv_app.models.rwkv7 import Rwkv7Config, Rwkv7ForCausalLM
from rwkv_app.models.rwkv7.blinkdl import fla_to_blinkdl

REPO_ROOT = Path(__file__).resolve().parents[1]
TINY7 = dict(vocab_size=300, hidden_size=128, num_hidden_layers=3, head_dim=64, intermediate_size=448,
             decay_low_rank_dim=32, a_low_rank_dim=32, v_low_rank_dim=16, gate_low_rank_dim=48)

REFERENCE_SCRIPT = r"""
import json, os, sys
os.environ["RWKV_V7_ON"] = "1"
os.environ["RWKV_JIT_ON"] = "1"
os.environ["RWKV_CUDA_ON"] = "0"
import torch
from rwkv.model import RWKV

job = json.loads(sys.argv[1])
model = RWKV(job["model"], strategy="cpu fp32")
results = {}
for i, prompt in enumerate(job["prompts"]):
    logits, _ = model.forward(list(prompt), None, full_output=True)
    results[f"whole{i}"] = logits.float().reshape(len(prompt), -1)
    state, steps = None, []
    for token in prompt:
        step, state = model.forward([token], state)
        steps.append(step.float())
    results[f"steps{i}"] = torch.stack(steps)
    layers = len(state) // 3  # per layer: att token shift (C), WKV (H, N, N), ffn token shift (C)
    results[f"att_shift{i}"] = torch.stack([state[3 * l] for l in range(layers)])
    results[f"wkv{i}"] = torch.stack([state[3 * l + 1] for l in range(layers)])
    results[f"ffn_shift{i}"] = torch.stack([state[3 * l + 2] for l in range(layers)])
torch.save(results, job["out"])
"""


def tiny_config7(**overrides) -> Rwkv7Config:
    return Rwkv7Config(**{**TINY7, **overrides})


@torch.no_grad()
def randomize7(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Random weights at realistic scales: mixes in (0, 1), norms near identity, decays from fast to slow."""
    generator = torch.Generator().manual_seed(seed)
    for name, param in model.named_parameters():
        noise = torch.randn(param.shape, generator=generator)
        leaf = name.split(".")[-1]
        if leaf.startswith("x_"):
            param.copy_(torch.rand(param.shape, generator=generator))
        elif "norm" in name:
            param.copy_(1.0 + 0.2 * noise if leaf == "weight" else 0.2 * noise)
        elif name.endswith("w_lora.lora.2.bias"):
            param.copy_(2.0 * noise)  # sigmoid over its whole range: decays from ~0.55 to ~1
        elif leaf in ("k_k", "k_a", "r_k") or leaf == "bias":
            param.copy_(0.5 * noise + (1.0 if leaf in ("k_k", "k_a") else 0.0))
        elif name.endswith("embeddings.weight"):
            param.copy_(noise)
        else:
            param.copy_(noise / param.shape[-1] ** 0.5)
    return model


def tiny_model7(seed: int = 0, **overrides) -> Rwkv7ForCausalLM:
    torch.manual_seed(seed)
    return randomize7(Rwkv7ForCausalLM(tiny_config7(**overrides)), seed).eval()


def save_pth(model: Rwkv7ForCausalLM, path: Path) -> Path:
    """Write the model as a BlinkDL x070 .pth (BlinkDL's names and shapes)."""
    state_dict = {key: value.detach().clone() for key, value in model.state_dict().items()}
    torch.save(fla_to_blinkdl(state_dict), path)
    return path


def blinkdl_reference(pth: Path, prompts: list[list[int]], out: Path) -> dict[str, torch.Tensor]:
    """BlinkDL's logits (whole prompt; token by token) and final state for each prompt, 'cpu fp32', JIT on."""
    job = json.dumps({"model": str(pth.with_suffix("")), "prompts": prompts, "out": str(out)})
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    done = subprocess.run([sys.executable, "-c", REFERENCE_SCRIPT, job], env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return torch.load(out, weights_only=True)
