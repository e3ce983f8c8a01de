"""The implementations the report times side by side, all holding the same random 169M-shaped weights.

Each contender is a name plus two callables: `prefill(ids)` (a (1, T) prompt -> state and last logits) and
`steps(ids, n)` (that prompt, then n greedy one-token forwards). "ours" is this project's model,
"transformers" Hugging Face's RwkvForCausalLM, "rwkv" the `rwkv` pip package (ChatRWKV's), fed the same
weights as a BlinkDL .pth; a library that is not installed is left out, never an error.
"""
from __future__ import annotations

import copy
import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from rwkv_app.models.rwkv4.blinkdl import convert_hf_to_blinkdl
from rwkv_app.weights.pretrained import FLOAT32_PARAMS

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}
RWKV_STRATEGY = {"float32": "cpu fp32", "bfloat16": "cpu bf16"}
PTH_NAME = "rwkv-169m-random.pth"  # the BlinkDL file written beside our checkpoint


@dataclass
class Contender:
    name: str
    prefill: Callable[[torch.Tensor], object]
    steps: Callable[[torch.Tensor, int], object]


def hf_style(model, name: str) -> Contender:
    """Our model and transformers' share a call signature: forward(input_ids, state=..., logits_to_keep=...)."""
    def prefill(ids: torch.Tensor):
        return model(ids, logits_to_keep=1)

    def steps(ids: torch.Tensor, n: int) -> None:
        out = model(ids, logits_to_keep=1)
        state, token = out.state, out.logits[:, -1].argmax(-1, keepdim=True)  # (1, 1)
        for _ in range(n):
            out = model(token, state=state)
            state, token = out.state, out.logits[:, -1].argmax(-1, keepdim=True)  # (1, 1)
    return Contender(name, prefill, steps)


def rwkv_pip_style(model) -> Contender:
    """The rwkv package: forward(list of ids, state) -> (logits (V,), state), one sequence at a time."""
    def prefill(ids: torch.Tensor):
        return model.forward(ids[0].tolist(), None)

    def steps(ids: torch.Tensor, n: int) -> None:
        logits, state = model.forward(ids[0].tolist(), None)
        for _ in range(n):
            logits, state = model.forward([int(logits.argmax())], state)
    return Contender("rwkv", prefill, steps)


def cast(model, dtype: torch.dtype):
    """A copy of our model in `dtype`, time_decay/time_first kept in float32 as from_pretrained does."""
    copied = copy.deepcopy(model).to(dtype)
    for name, param in copied.named_parameters():
        if name.endswith(FLOAT32_PARAMS):
            param.data = param.data.float()
    return copied.eval()


def rwkv_pip_available() -> bool:
    return importlib.util.find_spec("rwkv") is not None


def write_blinkdl(model, directory: Path) -> Path:
    """Our weights as a BlinkDL .pth (what the rwkv package loads)."""
    path = directory / PTH_NAME
    torch.save(convert_hf_to_blinkdl({k: v.float() for k, v in model.state_dict().items()}), path)
    return path


def load_rwkv_pip(pth: Path, dtype: str):
    """The rwkv package's model on CPU; its options are environment variables read at its import."""
    os.environ.setdefault("RWKV_JIT_ON", "1")
    os.environ.setdefault("RWKV_CUDA_ON", "0")
    from rwkv.model import RWKV

    return RWKV(str(pth)[:-len(".pth")], RWKV_STRATEGY[dtype], verbose=False)


def build_contenders(ours, hf, pth: Path | None, dtype: str) -> list[Contender]:
    """The contenders in `dtype`: ours (and transformers') cast from the float32 models, rwkv loaded from `pth`."""
    torch_dtype = DTYPES[dtype]
    mine = ours if torch_dtype == torch.float32 else cast(ours, torch_dtype)
    found = [hf_style(mine, "ours")]
    if hf is not None:
        theirs = hf if torch_dtype == torch.float32 else copy.deepcopy(hf).to(torch_dtype)
        found.append(hf_style(theirs, "transformers"))
    if pth is not None:
        found.append(rwkv_pip_style(load_rwkv_pip(pth, dtype)))
    return found
