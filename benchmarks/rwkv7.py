"""`python -m benchmarks rwkv7`: RWKV-7 on CPU, float32, 0.1B shape with random weights, against BlinkDL's
reference (the `rwkv` pip package, RWKV_x070, strategy 'cpu fp32', TorchScript on).

Prefill: one forward over a T-token prompt returning the state and the last logits. Decode: tokens/s of
`forward(token, state)` steps at batch 1. Both sides get the same weights (ours written as a BlinkDL .pth).
"""
from __future__ import annotations

import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch

from rwkv_app.models.rwkv7 import Rwkv7Config, Rwkv7ForCausalLM
from rwkv_app.models.rwkv7.blinkdl import fla_to_blinkdl
from .cpu import environment
from .timing import interleaved

GOALS = {"prefill": 3.0, "decode": 1.2}  # issue 16's targets: ours / BlinkDL's


@dataclass(frozen=True)
class Rwkv7BenchSettings:
    prefill_len: int = 512
    decode_tokens: int = 32
    repeats: int = 3
    hidden_size: int = 768
    num_hidden_layers: int = 12
    vocab_size: int = 65536


def load_blinkdl(pth: Path):
    """BlinkDL's x070 model; its switches are environment variables read when rwkv.model is first imported."""
    if "rwkv.model" in sys.modules and os.environ.get("RWKV_V7_ON") != "1":
        raise RuntimeError("rwkv.model was imported without RWKV_V7_ON=1; run this suite in its own process")
    os.environ.update(RWKV_V7_ON="1", RWKV_JIT_ON="1", RWKV_CUDA_ON="0")
    from rwkv.model import RWKV

    return RWKV(str(pth.with_suffix("")), "cpu fp32")


def build(settings: Rwkv7BenchSettings, directory: Path):
    config = Rwkv7Config(vocab_size=settings.vocab_size, hidden_size=settings.hidden_size,
                         num_hidden_layers=settings.num_hidden_layers, head_dim=64)
    torch.manual_seed(0)
    ours = Rwkv7ForCausalLM(config).eval()
    pth = directory / "rwkv7-random.pth"
    torch.save(fla_to_blinkdl({k: v.detach().clone() for k, v in ours.state_dict().items()}), pth)
    return ours, load_blinkdl(pth)


@torch.no_grad()
def measure(settings: Rwkv7BenchSettings) -> dict[str, dict[str, float]]:
    """{"prefill": {"ours": tokens/s, "rwkv": tokens/s}, "decode": {...}}."""
    with tempfile.TemporaryDirectory() as tmp:
        ours, theirs = build(settings, Path(tmp))
        prompt = torch.randint(0, settings.vocab_size, (1, settings.prefill_len), generator=torch.Generator().manual_seed(0))
        tokens = prompt[0].tolist()
        prefill = interleaved({"ours": lambda: ours(prompt, logits_to_keep=1),
                               "rwkv": lambda: theirs.forward(tokens, None)}, settings.repeats)
        start_ours = ours(prompt[:, :16]).state
        start_theirs = theirs.forward(tokens[:16], None)[1]
        decode = interleaved({"ours": lambda: decode_ours(ours, start_ours, tokens, settings.decode_tokens),
                              "rwkv": lambda: decode_theirs(theirs, start_theirs, tokens, settings.decode_tokens)},
                             settings.repeats)
    return {"prefill": {k: settings.prefill_len / s for k, s in prefill.items()},
            "decode": {k: settings.decode_tokens / s for k, s in decode.items()}}


def decode_ours(model, state, tokens: list[int], steps: int) -> None:
    for token in tokens[:steps]:
        state = model(torch.tensor([[token]]), state=state).state


def decode_theirs(model, state, tokens: list[int], steps: int) -> None:
    state = [s.clone() for s in state]  # the rwkv package writes into the list it is given
    for token in tokens[:steps]:
        _, state = model.forward([token], state)


def render(results: dict[str, dict[str, float]], settings: Rwkv7BenchSettings) -> str:
    shape = (f"{settings.num_hidden_layers} layers x {settings.hidden_size} wide, heads of 64, "
             f"vocab {settings.vocab_size}")
    lines = [f"Random weights, {shape} (the 0.1B shape), float32, CPU. {environment()}.", "",
             "| metric | this project | rwkv pip (cpu fp32, JIT) | ratio | goal |", "|---|---:|---:|---:|---:|"]
    names = {"prefill": f"prefill T={settings.prefill_len} (tokens/s)", "decode": "decode batch 1 (tokens/s)"}
    for key, label in names.items():
        ours, theirs = results[key]["ours"], results[key]["rwkv"]
        lines.append(f"| {label} | {ours:.1f} | {theirs:.1f} | {ours / theirs:.2f}x | {GOALS[key]:.1f}x |")
    lines += ["", "Medians of interleaved repeats. The WKV recurrence runs through `kernels.rwkv7.wkv7` with "
              "impl='auto' (whichever CPU path it dispatches to at the time of the run)."]
    return "\n".join(lines) + "\n"
