"""`python -m benchmarks cpu8`: past the float32 wall on CPU (issue 18), side by side in one run.

RWKV-4, 169M shape (random weights): decode batch 1 with int8 weights against transformers float32 and BlinkDL's
`cpu fp32i8`; prefill T=512 in the CPU default dtype (rwkv_app/models/cpu_dtype.py) against transformers float32;
the engine's throughput with 8 and 16 concurrent generations against one; quality (greedy tokens equal to
float32 on these weights, the demo model's bits per char). RWKV-7, 0.1B shape: the same against BlinkDL's x070
(which has no int8 mode: its best CPU mode, fp32), measured in a child process (its package switches RWKV-7 on at
import, for the whole process).
"""
from __future__ import annotations

import copy
import dataclasses
import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch

from rwkv_app.engine import Engine
from rwkv_app.models.cpu_dtype import cpu_default_dtype
from rwkv_app.models.quantize import quantize_model
from rwkv_app.core.presets import load_sampling_preset
from rwkv_app.core.sampling import SamplingSettings
from .contenders import cast, hf_style, rwkv_pip_available, rwkv_pip_style, write_blinkdl
from .cpu import CpuBenchSettings, build_models
from .engine_runs import throughput
from .timing import interleaved, interleaved_values

ROOT = Path(__file__).resolve().parents[1]
GREEDY_SEED = 7
TORCH_INT8 = "int8, torch kernels"  # quantize_model(kernel=False): the side-by-side for kernels/int8_cpu
PER_OP = "int8, per-op path"  # cpu_decode = "ops": the side-by-side for the C++ layer steps (models/cpu_decode.py)
CHUNKED_WKV = "default, chunked WKV"  # wkv_impl = "cpu": the side-by-side for the C++ WKV (kernels/cpp.py, rwkv7/cpp.py)
NOISE_CONTROLS = (1e-4, 1e-3)  # relative weight noise of the float32 controls (bfloat16 rounds at ~2e-3)


@dataclass(frozen=True)
class Cpu8Settings:
    prefill_len: int = 512
    decode_tokens: int = 16
    repeats: int = 3
    engine_prompt: int = 16
    engine_tokens: int = 48
    engine_clients: tuple[int, ...] = (1, 8, 16)
    greedy_tokens: int = 40
    greedy_prompts: int = 6  # fixed random 10-token prompts (seed GREEDY_SEED)
    rwkv7: bool = True


def log(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def decode_rates(contenders, prompt: torch.Tensor, tokens: int, repeats: int) -> dict[str, float]:
    """Tokens/s of greedy decode at batch 1: a long run minus a short one (prefill and setup cancel)."""
    runs = {}
    for c in contenders:
        runs[c.name + "/short"] = lambda c=c: c.steps(prompt, 1)
        runs[c.name + "/long"] = lambda c=c: c.steps(prompt, 1 + tokens)
    seconds = interleaved(runs, repeats)
    return {c.name: tokens / max(seconds[c.name + "/long"] - seconds[c.name + "/short"], 1e-9) for c in contenders}


def greedy_prompts(s: Cpu8Settings, vocab: int) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(GREEDY_SEED)
    return [torch.randint(0, vocab, (1, 10), generator=generator) for _ in range(s.greedy_prompts)]


def greedy_matches(reference, others: dict, prompts: list[torch.Tensor], tokens: int) -> dict[str, list[int]]:
    """{name: per prompt, how many greedy tokens that model produces before it first differs from `reference`}."""
    out = {name: [] for name in others}
    for prompt in prompts:
        expected = reference.generate(prompt, max_new_tokens=tokens, do_sample=False)[0, prompt.size(1):].tolist()
        for name, model in others.items():
            got = model.generate(prompt, max_new_tokens=tokens, do_sample=False)[0, prompt.size(1):].tolist()
            out[name].append(next((i for i, (x, y) in enumerate(zip(expected, got)) if x != y), tokens))
    return out


def perturbed(model, relative: float, seed: int = 5):
    """A copy of a float32 model with every projection's weights times (1 + relative * N(0, 1)): the control for
    the greedy-match figure (how far do near-flat random logits let ANY tiny weight change go?)."""
    noisy = copy.deepcopy(model)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in noisy.modules():
            if isinstance(module, torch.nn.Linear):
                module.weight.mul_(1 + relative * torch.randn(module.weight.shape, generator=generator))
    return noisy


def sampler_times(vocab: int, rows: int, repeats: int) -> dict[str, float]:
    """Seconds per step to choose `rows` tokens with the balanced preset: the engine's batched sampler against
    the per-row reference (Sampler.choose), on the same logits, interleaved."""
    from rwkv_app.core.batch_sampling import choose_rows
    from rwkv_app.core.sampling import Sampler

    balanced = load_sampling_preset("balanced")
    samplers = [Sampler(balanced.replace(seed=i), vocab, list(range(16))) for i in range(rows)]
    logits = torch.randn(rows, vocab, generator=torch.Generator().manual_seed(0)) * 3  # (B, V)
    runs = {"batched": lambda: choose_rows(samplers, logits),
            "row by row": lambda: [s.choose(logits[i]) for i, s in enumerate(samplers)]}
    return interleaved(runs, max(repeats, 5) * 4)


def engine_rates(model, s: Cpu8Settings, vocab: int, labels=("greedy", "balanced")) -> dict[str, float]:
    """{"greedy/N" | "balanced/N": total tokens/s of N concurrent generations submitted at once}."""
    presets = {"greedy": SamplingSettings(), "balanced": load_sampling_preset("balanced").replace(seed=0)}
    presets = {label: presets[label] for label in labels}
    rates = {}
    with Engine(model, max_batch=max(s.engine_clients)) as engine:
        for label, settings in presets.items():
            log(f"engine, {label}, {s.engine_clients} concurrent")
            runs = {f"{label}/{n}": throughput(engine, n, s.engine_prompt, s.engine_tokens, settings, vocab)
                    for n in s.engine_clients}
            rates.update(interleaved_values(runs, s.repeats))
    return rates


@torch.no_grad()
def measure_rwkv4(s: Cpu8Settings) -> dict:
    base = CpuBenchSettings()
    f32, hf = build_models(base)
    int8 = quantize_model(copy.deepcopy(f32))
    int8_torch = quantize_model(copy.deepcopy(f32), kernel=False)
    int8_ops = per_op(int8)
    bf16 = cast(f32, torch.bfloat16)
    default = cpu_default_dtype()["dtype"]
    fast = int8 if default == "int8" else f32
    prompt = torch.randint(0, base.vocab_size, (1, s.prefill_len), generator=torch.Generator().manual_seed(1))
    short = prompt[:, :16]
    out = {"default_dtype": default}
    with tempfile.TemporaryDirectory() as tmp:
        theirs = []
        if rwkv_pip_available():
            os.environ.setdefault("RWKV_JIT_ON", "1")
            os.environ.setdefault("RWKV_CUDA_ON", "0")
            from rwkv.model import RWKV

            pth = write_blinkdl(f32, Path(tmp))
            blink = rwkv_pip_style(RWKV(str(pth)[:-len(".pth")], "cpu fp32i8", verbose=False))
            theirs = [dataclasses.replace(blink, name="rwkv fp32i8")]
        log("RWKV-4 decode")
        contenders = [hf_style(int8, "int8"), hf_style(int8_ops, PER_OP), hf_style(int8_torch, TORCH_INT8),
                      hf_style(f32, "float32"), hf_style(bf16, "bfloat16")]
        contenders += [hf_style(hf, "transformers")] if hf is not None else []
        out["decode"] = decode_rates(contenders + theirs, short, s.decode_tokens, s.repeats)
    log("RWKV-4 prefill")
    runs = {"default": lambda: fast(prompt, logits_to_keep=1), "float32": lambda: f32(prompt, logits_to_keep=1),
            "bfloat16": lambda: bf16(prompt, logits_to_keep=1),
            CHUNKED_WKV: lambda: with_chunked_wkv(fast, prompt)}
    if hf is not None:
        runs["transformers"] = lambda: hf(prompt, logits_to_keep=1)
    out["prefill"] = {k: s.prefill_len / v for k, v in interleaved(runs, s.repeats).items()}
    log("RWKV-4 quality")
    controls = {f"float32 + {e:g} noise": perturbed(f32, e) for e in NOISE_CONTROLS}
    out["greedy_match"] = greedy_matches(f32, {"int8": int8, "bfloat16": bf16, **controls},
                                         greedy_prompts(s, base.vocab_size), s.greedy_tokens)
    out["sampler"] = {n: sampler_times(base.vocab_size, n, s.repeats) for n in (8, 16)}
    out["engine"] = engine_rates(fast, s, base.vocab_size)
    if fast is int8:
        out["engine_per_op"] = engine_rates(int8_ops, s, base.vocab_size, labels=("greedy",))
        out["engine_torch_int8"] = engine_rates(int8_torch, s, base.vocab_size, labels=("greedy",))
    out["demo_bpc"] = demo_bits_per_char()
    log(f"RWKV-4 results: {out}")
    return out


def with_chunked_wkv(model, prompt: torch.Tensor):
    """A prefill through the chunked torch WKV (kernels/cpu.py, kernels/rwkv7/cpu.py) instead of the C++ one."""
    model.wkv_impl = "cpu"
    try:
        return model(prompt, logits_to_keep=1)
    finally:
        model.wkv_impl = "auto"


def per_op(int8_model):
    """A copy of an int8 model that decodes through the per-op path (the C++ layer step's reference)."""
    copied = copy.deepcopy(int8_model)
    copied.cpu_decode = "ops"
    return copied


def demo_bits_per_char() -> dict[str, float]:
    from rwkv_app.models.rwkv4.modeling import RwkvForCausalLM
    from rwkv_app.tokenizers.tokenizer import RwkvTokenizer
    from rwkv_app.train.evaluate import evaluate

    demo = ROOT / "demo-model"
    tokenizer = RwkvTokenizer.from_pretrained(demo)
    ids = torch.tensor(tokenizer.encode((demo / "heldout-sample.txt").read_text(encoding="utf-8")))
    return {dtype: evaluate(RwkvForCausalLM.from_pretrained(demo, dtype=dtype), tokenizer, ids).bits_per_char
            for dtype in ("float32", "int8", "bfloat16")}
