"""CPU benchmark: this project vs transformers on the same random weights, measured side by side.

Prefill: prompt -> state and next-token logits (both sides keep only the last position's logits).
Decode: tokens/s at batch 1, through each library's generate() (greedy) and through bare forward steps.
"""
from __future__ import annotations

import platform
from dataclasses import dataclass

import torch

from rwkv_app.models.rwkv4.config import RwkvConfig
from rwkv_app.models.rwkv4.modeling import RwkvForCausalLM
from .timing import interleaved, read_bandwidth_gbs

SHAPE_169M = dict(vocab_size=50277, hidden_size=768, num_hidden_layers=12, context_length=1024)


@dataclass
class CpuBenchSettings:
    prefill_len: int = 512
    prompt_len: int = 16
    decode_tokens: int = 32
    repeats: int = 3
    vocab_size: int = 50277
    hidden_size: int = 768
    num_hidden_layers: int = 12


@dataclass
class Row:
    metric: str
    ours: float
    hf: float | None
    unit: str = "tok/s"

    @property
    def ratio(self) -> float | None:
        return None if self.hf is None else self.ours / self.hf


def load_transformers():
    try:
        import transformers
    except ImportError:
        return None
    transformers.logging.set_verbosity_error()
    return transformers


def build_models(settings: CpuBenchSettings):
    """Our model with random weights, and transformers' model holding the very same tensors' values."""
    config = RwkvConfig(vocab_size=settings.vocab_size, hidden_size=settings.hidden_size,
                        num_hidden_layers=settings.num_hidden_layers, context_length=1024)
    torch.manual_seed(0)
    ours = RwkvForCausalLM(config).eval()
    transformers = load_transformers()
    if transformers is None:
        return ours, None
    hf_config = transformers.RwkvConfig(**{k: v for k, v in config.to_dict().items()
                                           if k not in ("architectures", "model_type")})
    hf = transformers.RwkvForCausalLM(hf_config)
    hf.load_state_dict(ours.state_dict(), strict=True)
    return ours, hf.eval()


def prefill_runs(ours, hf, prompt: torch.Tensor) -> dict:
    runs = {"ours": lambda: ours(prompt, logits_to_keep=1)}
    if hf is not None:
        runs["hf"] = lambda: hf(prompt, logits_to_keep=1)
    return runs


def generate_runs(ours, hf, prompt: torch.Tensor, new_tokens: int) -> dict:
    runs = {"ours": lambda: ours.generate(prompt, max_new_tokens=new_tokens, eos_token_id=None)}
    if hf is not None:
        runs["hf"] = lambda: hf.generate(prompt, max_new_tokens=new_tokens, min_new_tokens=new_tokens,
                                         do_sample=False, pad_token_id=0)
    return runs


def step_runs(ours, hf, prompt: torch.Tensor, steps: int) -> dict:
    def loop(model):
        state = model(prompt, logits_to_keep=1).state
        token = prompt[:, -1:]
        for _ in range(steps):
            out = model(token, state=state)
            state, token = out.state, out.logits[:, -1].argmax(-1, keepdim=True)
    runs = {"ours": lambda: loop(ours)}
    if hf is not None:
        runs["hf"] = lambda: loop(hf)
    return runs


def synthetic_tokenizer(vocab_size: int):
    """A word-level tokenizer as large as the model's vocabulary, so detokenizing costs what it costs."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    from rwkv_app.tokenizers.tokenizer import RwkvTokenizer

    backend = Tokenizer(models.WordLevel({f"w{i}": i for i in range(vocab_size)}, unk_token="w0"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return RwkvTokenizer(backend, source="synthetic word-level vocabulary")


def sampled_run(ours, prompt: torch.Tensor, steps: int, tokenizer):
    """stream_generate with the balanced preset (penalties, top-k/p, min-p) and streaming detokenization."""
    from rwkv_app.core.presets import load_sampling_preset

    settings = load_sampling_preset("balanced").replace(seed=0, max_new_tokens=steps + 1)

    def run():
        for _ in ours.stream_generate(prompt, sampling=settings, tokenizer=tokenizer, eos_token_id=None):
            pass
    return run


def per_token_rate(short: dict, long: dict, extra_tokens: int) -> dict:
    """Tokens/s of decode alone: the difference of a long and a short run cancels prefill and setup."""
    return {name: extra_tokens / max(long[name] - short[name], 1e-9) for name in long}


def decode_bytes_per_token(model: RwkvForCausalLM) -> int:
    """Weights read per decoded token: every parameter except the embedding table (one row of it is read)."""
    embedding = model.rwkv.embeddings.weight
    total = sum(p.numel() * p.element_size() for p in model.parameters())
    return total - embedding.numel() * embedding.element_size() + embedding.size(1) * embedding.element_size()


@torch.inference_mode()
def run_cpu_bench(settings: CpuBenchSettings) -> tuple[list[Row], dict]:
    ours, hf = build_models(settings)
    vocab, repeats = settings.vocab_size, settings.repeats
    prompt = torch.randint(0, vocab, (1, settings.prefill_len), generator=torch.Generator().manual_seed(1))
    prefill = interleaved(prefill_runs(ours, hf, prompt), repeats)
    short_prompt = prompt[:, :settings.prompt_len]
    n, extra = 4, settings.decode_tokens
    gen_short = interleaved(generate_runs(ours, hf, short_prompt, n), repeats)
    gen_long = interleaved(generate_runs(ours, hf, short_prompt, n + extra), repeats)
    tokenizer = synthetic_tokenizer(vocab)
    step_short = interleaved(dict(step_runs(ours, hf, short_prompt, n),
                                  sampled=sampled_run(ours, short_prompt, n, tokenizer)), repeats)
    step_long = interleaved(dict(step_runs(ours, hf, short_prompt, n + extra),
                                 sampled=sampled_run(ours, short_prompt, n + extra, tokenizer)), repeats)
    generate_rate = per_token_rate(gen_short, gen_long, extra)
    step_rate = per_token_rate(step_short, step_long, extra)
    bandwidth = read_bandwidth_gbs()
    floor = bandwidth * 1e9 / decode_bytes_per_token(ours)
    rows = [
        Row(f"prefill T={settings.prefill_len}", settings.prefill_len / prefill["ours"],
            settings.prefill_len / prefill["hf"] if hf is not None else None),
        Row("decode batch 1, generate()", generate_rate["ours"], generate_rate.get("hf")),
        Row("decode batch 1, forward step", step_rate["ours"], step_rate.get("hf")),
        Row("decode batch 1, stream_generate (balanced preset, detokenized)", step_rate["sampled"], None),
        Row("decode ceiling (weights bytes / read bandwidth)", floor, None),
    ]
    facts = {"read_bandwidth_gbs": bandwidth, "sampling_vs_step": step_rate["sampled"] / step_rate["ours"], "decode_bytes_per_token": decode_bytes_per_token(ours),
             "transformers": None if hf is None else load_transformers().__version__}
    return rows, facts


def environment() -> str:
    return (f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
            f"{platform.processor() or platform.machine()}, Python {platform.python_version()}")


def render_markdown(rows: list[Row], facts: dict, settings: CpuBenchSettings) -> str:
    shape = f"{settings.num_hidden_layers} layers x {settings.hidden_size} wide, vocab {settings.vocab_size}"
    lines = [
        f"Random weights, {shape}, float32, CPU. {environment()}; transformers {facts['transformers']}.",
        f"Measured read bandwidth {facts['read_bandwidth_gbs']:.1f} GB/s; "
        f"{facts['decode_bytes_per_token'] / 1e6:.0f} MB of weights read per decoded token.",
        f"Generation with sampling and streaming detokenization runs at {facts['sampling_vs_step']:.2f}x "
        "the bare forward step's speed.",
        "",
        "| metric | this project | transformers | ratio |",
        "|---|---:|---:|---:|",
    ]
    for row in rows:
        hf = "" if row.hf is None else f"{row.hf:.1f}"
        ratio = "" if row.ratio is None else f"{row.ratio:.2f}x"
        lines.append(f"| {row.metric} | {row.ours:.1f} {row.unit} | {hf} | {ratio} |")
    lines += ["", NOTES]
    return "\n".join(lines) + "\n"


NOTES = """Prefill: one forward over the prompt returning the state and the last position's logits
(`logits_to_keep=1` on both sides). Decode: tokens/s of greedy decoding at batch 1, from the
difference between a long and a short run (prefill and setup cancel), through each library's
`generate()` and through bare `forward(token, state)` steps. Medians of interleaved repeats.
Decode at batch 1 reads every weight once per token, so it is bound by memory bandwidth: the
ceiling row is the best any float32 implementation can do on this machine."""
