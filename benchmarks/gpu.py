"""GPU check: every Triton path against the reference at real shapes, then timings, side by side.

Correctness: the WKV kernel against the float64 reference (C = 768, 2048, 4096; T = 1, 64, 1024;
float32/float16/bfloat16 inputs; an incoming state, carried across two chunks), and the model's
Triton paths (prefill through kernels.wkv, fused eager decode, CUDA-graph decode) against its per-op
path at the 169M and 1.5B shapes. Timings: WKV prefill (Triton vs the torch loop), decode tokens/s at
batch 1 and 8 (per-op, fused eager, CUDA graph), prefill tokens/s; each with the fraction of the
GPU's peak memory bandwidth that the bytes read imply. Random weights; needs neither gradio nor
transformers; about two minutes on an H200.
"""
from __future__ import annotations

import platform
import statistics
import time
from dataclasses import dataclass

import torch

from kernels import wkv_cpu, wkv_reference

from rwkv_app.models.rwkv4.config import RwkvConfig
from rwkv_app.models.rwkv4.modeling import RwkvForCausalLM
from .cpu import decode_bytes_per_token

NOT_MEASURED = "not measured yet (no GPU in this session)"
DEVICE = "cuda"
SHAPES = {"169M": (768, 12), "1.5B": (2048, 24)}  # hidden size, layers; vocab 50277 as released
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
MODES = {"ops": "per-op", "fused": "fused eager", "graph": "CUDA graph"}
WKV_TOL = {torch.float32: 1e-4, torch.float16: 2 * 2**-10, torch.bfloat16: 2 * 2**-7}  # |err| / (1 + |ref|)
LOGIT_TOL = {torch.float32: 1e-3, torch.float16: 3e-2, torch.bfloat16: 1e-1}  # max |err| / max |logit|


@dataclass
class GpuBenchSettings:
    channels: tuple[int, ...] = (768, 2048, 4096)
    seq_lens: tuple[int, ...] = (1, 64, 1024)
    check_batch: int = 2
    check_steps: int = 8
    wkv_len: int = 1024
    wkv_channels: int = 2048
    prefill_len: int = 1024
    decode_tokens: int = 64
    batches: tuple[int, ...] = (1, 8)
    repeats: int = 3
    dtype: str = "float16"  # the timings' dtype


@dataclass
class Row:
    key: tuple
    metric: str
    target: str = ""
    result: str = NOT_MEASURED
    bandwidth: str = ""
    verdict: str = ""


def row_specs(s: GpuBenchSettings) -> list[Row]:
    """Every row the table has, in order, measured or not: the placeholder and a real run look alike."""
    grid = f"C {'/'.join(map(str, s.channels))} x T {'/'.join(map(str, s.seq_lens))}, B={s.check_batch}"
    rows = [Row(("wkv", d), f"correct: WKV kernel {d}, {grid}, state carried across 2 chunks") for d in DTYPES]
    rows += [Row(("model", shape, d), f"correct: {shape} {d}, Triton prefill + fused and graph decode vs per-op")
             for shape in SHAPES for d in DTYPES]
    wkv = f"WKV prefill T={s.wkv_len} C={s.wkv_channels} B=1 {s.dtype}"
    rows += [Row(("wkv_time", impl), f"{wkv}, {label}") for impl, label in
             (("triton", "Triton"), ("loop", "torch loop (reference)"), ("chunked", "torch chunked (kernels.wkv_cpu)"))]
    rows.append(Row(("wkv_speedup",), f"{wkv}, Triton speedup over the torch loop", ">= 20x"))
    for shape in SHAPES:
        for batch in s.batches:
            for mode, label in MODES.items():
                rows.append(Row(("decode", shape, batch, mode), f"decode {shape} {s.dtype} batch {batch}, {label}",
                                decode_target(shape, batch, mode, s.dtype)))
    rows += [Row(("prefill", shape), f"prefill {shape} {s.dtype} T={s.prefill_len} batch 1") for shape in SHAPES]
    from .gpu7 import row_specs7  # the RWKV-7 section (imports this module)

    return rows + row_specs7(s)


def decode_target(shape: str, batch: int, mode: str, dtype: str) -> str:
    if (shape, batch, mode) == ("169M", 1, "graph"):
        return ">= 1000 tok/s"
    if (shape, batch, mode, dtype) == ("1.5B", 1, "graph", "float16"):
        return ">= 60% of peak bandwidth"
    return ""


# ---- measuring ---------------------------------------------------------------------------------

def cuda_seconds(run, repeats: int, warmup: int = 1) -> float:
    """Median wall seconds of run(), synchronised on both sides."""
    for _ in range(warmup):
        run()
    times = []
    for _ in range(repeats):
        torch.cuda.synchronize()
        start = time.perf_counter()
        run()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def peak_bandwidth() -> float | None:
    """Bytes/s from the memory clock (kHz, double data rate) and bus width (bits), where torch reports them."""
    props = torch.cuda.get_device_properties(0)
    clock, width = getattr(props, "memory_clock_rate", 0), getattr(props, "memory_bus_width", 0)
    return 2 * clock * 1e3 * width / 8 if clock and width else None


def measured_bandwidth() -> float:
    """Bytes/s of a sum over a 4 GiB buffer: what a read-bound kernel can reach."""
    buffer = torch.ones(2**31, dtype=torch.float16, device=DEVICE)
    seconds = min(cuda_seconds(buffer.sum, 1, warmup=0 if i else 1) for i in range(5))
    del buffer
    return 2**32 / seconds


def build_model(shape: str, dtype: torch.dtype) -> RwkvForCausalLM:
    """Random weights with the released model's shape, built on the GPU (same seed, same weights)."""
    hidden, layers = SHAPES[shape]
    torch.manual_seed(0)
    with torch.device(DEVICE):
        model = RwkvForCausalLM(RwkvConfig(vocab_size=50277, hidden_size=hidden, num_hidden_layers=layers))
    return model.to(dtype).eval()


def relative_error(got: torch.Tensor, expected: torch.Tensor) -> float:
    return float(((got.double() - expected.double()).abs() / (1 + expected.double().abs())).max())


def state_error(got, expected) -> float:
    """num and den compared once rescaled to the expected running max (as the kernel tests do)."""
    scale = torch.exp(got[2].double() - expected[2].double())  # (B, C)
    return max(relative_error(got[2], expected[2]), relative_error(got[0] * scale, expected[0]),
               relative_error(got[1] * scale, expected[1]))


def wkv_case_error(channels: int, seq_len: int, batch: int, dtype: torch.dtype) -> float:
    time_decay = torch.rand(channels, device=DEVICE) * 9 - 6  # (C,)
    time_first = torch.randn(channels, device=DEVICE) * 0.5  # (C,)
    key, value = (torch.randn(batch, seq_len, channels, device=DEVICE).to(dtype) for _ in range(2))  # (B, T, C)
    state = (torch.randn(batch, channels, device=DEVICE), torch.rand(batch, channels, device=DEVICE) + 1,
             torch.randn(batch, channels, device=DEVICE))  # an incoming (num, den, max)
    split = max(1, seq_len * 5 // 8)
    from kernels.wkv_triton import wkv_triton

    first, carried = wkv_triton(time_decay, time_first, key[:, :split], value[:, :split], state)
    outputs, final = [first], carried
    if split < seq_len:
        second, final = wkv_triton(time_decay, time_first, key[:, split:], value[:, split:], carried)
        outputs.append(second)
    expected, expected_final = wkv_reference(time_decay.double(), time_first.double(), key.double(), value.double(),
                                             tuple(x.double() for x in state))
    output = torch.cat(outputs, dim=1)  # (B, T, C)
    return max(relative_error(output, expected.to(dtype)), state_error(final, expected_final))


def check_wkv(s: GpuBenchSettings, dtype: torch.dtype) -> tuple[str, str]:
    torch.manual_seed(1)
    error = max(wkv_case_error(c, t, s.check_batch, dtype) for c in s.channels for t in s.seq_lens)
    return f"max err {error:.1e} (tol {WKV_TOL[dtype]:.0e})", "pass" if error <= WKV_TOL[dtype] else "FAIL"


def decode_logits(model, mode: str, tokens, state, steps: int):
    """The per-op reference ("ops") runs torch alone (the chunked WKV); fused and graph run Triton."""
    model.cuda_decode, model.wkv_impl = mode, "cpu" if mode == "ops" else "auto"
    logits = []
    for t in range(steps):
        out = model(tokens[:, t:t + 1], state=state)
        logits.append(out.logits)
        state = out.state
    return torch.cat(logits, dim=1), state  # (B, N, V)


def logit_error(got: torch.Tensor, expected: torch.Tensor) -> float:
    return float((got.float() - expected.float()).abs().max() / expected.float().abs().max())


def check_model(model, s: GpuBenchSettings) -> tuple[str, str]:
    tokens = torch.randint(0, model.config.vocab_size, (s.check_batch, 64 + s.check_steps), device=DEVICE)
    model.wkv_impl = "cpu"
    reference = model(tokens[:, :64])
    model.wkv_impl = "auto"
    prefill = model(tokens[:, :64])
    errors = {"prefill": logit_error(prefill.logits, reference.logits)}
    steps = tokens[:, 64:]
    expected, expected_state = decode_logits(model, "ops", steps, reference.state, s.check_steps)
    for mode in ("fused", "graph"):
        got, state = decode_logits(model, mode, steps, reference.state, s.check_steps)
        errors[mode] = max(logit_error(got, expected), state_error(state[2:], expected_state[2:]))
    model.wkv_impl = "auto"
    tol = LOGIT_TOL[model.dtype]
    text = ", ".join(f"{name} {err:.1e}" for name, err in errors.items()) + f" (tol {tol:.0e})"
    return text, "pass" if max(errors.values()) <= tol else "FAIL"


def time_wkv(s: GpuBenchSettings, peak: float) -> dict:
    dtype = DTYPES[s.dtype]
    time_decay, time_first = torch.rand(s.wkv_channels, device=DEVICE) * 9 - 6, torch.randn(s.wkv_channels, device=DEVICE)
    key, value = (torch.randn(1, s.wkv_len, s.wkv_channels, device=DEVICE).to(dtype) for _ in range(2))
    from kernels.wkv_triton import wkv_triton

    seconds = {impl: cuda_seconds(lambda fn=fn: fn(time_decay, time_first, key, value), s.repeats)
               for impl, fn in (("triton", wkv_triton), ("loop", wkv_reference), ("chunked", wkv_cpu))}
    moved = 3 * key.numel() * key.element_size()  # key and value read, output written
    out = {("wkv_time", impl): (f"{sec * 1e3:.2f} ms", f"{moved / sec / peak:.1%}", "") for impl, sec in seconds.items()}
    speedup = seconds["loop"] / seconds["triton"]
    out[("wkv_speedup",)] = (f"{speedup:.0f}x", "", "met" if speedup >= 20 else "missed")
    return out


def decode_steps_per_second(model, batch: int, mode: str, s: GpuBenchSettings) -> float:
    model.cuda_decode = mode
    prompt = torch.randint(0, model.config.vocab_size, (batch, 16), device=DEVICE)
    state = model(prompt, logits_to_keep=1).state

    def run():
        token, current = prompt[:, -1:], state
        for _ in range(s.decode_tokens):
            out = model(token, state=current)
            token, current = out.logits[:, -1].argmax(-1, keepdim=True), out.state
    return s.decode_tokens / cuda_seconds(run, s.repeats)


def time_model(shape: str, model, s: GpuBenchSettings, peak: float) -> dict:
    weights = decode_bytes_per_token(model)
    out = {}
    for batch in s.batches:
        for mode in MODES:
            steps = decode_steps_per_second(model, batch, mode, s)
            fraction = weights * steps / peak
            target = decode_target(shape, batch, mode, s.dtype)
            met = (steps * batch >= 1000) if "tok/s" in target else (fraction >= 0.6)
            out[("decode", shape, batch, mode)] = (f"{steps * batch:,.0f} tok/s", f"{fraction:.1%}",
                                                   ("met" if met else "missed") if target else "")
    prompt = torch.randint(0, model.config.vocab_size, (1, s.prefill_len), device=DEVICE)
    seconds = cuda_seconds(lambda: model(prompt, logits_to_keep=1), s.repeats)
    out[("prefill", shape)] = (f"{s.prefill_len / seconds:,.0f} tok/s", f"{weights / seconds / peak:.1%}", "")
    return out


@torch.inference_mode()
def run_gpu_bench(s: GpuBenchSettings, log=print) -> tuple[dict, dict]:
    """{row key: (result, bandwidth, verdict)} and the facts for the header."""
    peak, measured = peak_bandwidth(), measured_bandwidth()
    facts = {"device": torch.cuda.get_device_name(0), "peak": peak, "measured": measured}
    peak = peak or measured
    results = {}
    for name, dtype in DTYPES.items():
        log(f"checking the WKV kernel, {name}")
        text, verdict = check_wkv(s, dtype)
        results[("wkv", name)] = (text, "", verdict)
    for shape in SHAPES:
        for name, dtype in DTYPES.items():
            log(f"checking the {shape} model, {name}")
            model = build_model(shape, dtype)
            text, verdict = check_model(model, s)
            results[("model", shape, name)] = (text, "", verdict)
            if name == s.dtype:
                log(f"timing the {shape} model, {name}")
                results.update(time_model(shape, model, s, peak))
            del model
            torch.cuda.empty_cache()
    log("timing the WKV kernel")
    results.update(time_wkv(s, peak))
    from .gpu7 import run7

    results.update(run7(s, peak, log))
    return results, facts


# ---- the table ---------------------------------------------------------------------------------

def environment() -> str:
    import triton

    cuda = torch.version.cuda or "?"
    return f"torch {torch.__version__} (CUDA {cuda}), triton {triton.__version__}, Python {platform.python_version()}"


def header(facts: dict | None) -> str:
    if facts is None:
        return ("Not measured yet (no GPU in this session): run `python -m benchmarks gpu` on a machine with "
                "a CUDA GPU; it replaces this section.")
    peak, measured = facts["peak"], facts["measured"]
    basis = (f"peak memory bandwidth {peak / 1e12:.2f} TB/s (memory clock x bus width); a 4 GiB read reaches "
             f"{measured / 1e12:.2f} TB/s ({measured / peak:.0%})" if peak else
             f"measured read bandwidth {measured / 1e12:.2f} TB/s (torch does not report the peak here)")
    return f"{facts['device']}. {environment()}. Bandwidth fractions are of the {basis}."


def render_markdown(rows: list[Row], facts: dict | None, s: GpuBenchSettings) -> str:
    shapes = ", ".join(f"{name} = {layers} layers x {hidden}" for name, (hidden, layers) in SHAPES.items())
    lines = [header(facts), "", f"Random weights, vocab 50277; {shapes}. Timings in {s.dtype}.",
             "", "| check | result | of peak bandwidth | target | verdict |", "|---|---:|---:|---|---|"]
    lines += [f"| {r.metric} | {r.result} | {r.bandwidth} | {r.target} | {r.verdict} |" for r in rows]
    lines += ["", NOTES]
    return "\n".join(lines) + "\n"


def fill(rows: list[Row], results: dict) -> list[Row]:
    for row in rows:
        if row.key in results:
            row.result, row.bandwidth, row.verdict = results[row.key]
    return rows


NOTES = """Correctness errors: the WKV kernel's output and final state against the float64 reference loop,
|err| / (1 + |ref|); the model's logits (and decode state) against its per-op path, max |err| / max |logit|.
Decode: tokens/s through `model(token, state=state)` (input checks included), `model.cuda_decode` set
to "ops", "fused" or "graph"; bandwidth = weight bytes read per step x steps/s / peak. Prefill: one
forward over the prompt, `logits_to_keep=1`. Medians of repeats. RWKV-7: the WKV Triton prefill (two calls,
state carried) and fused decode step (in place on a stacked state) against the float64 loop, |err| / (1 + |ref|);
timings against the torch chunked path and loop on the GPU (benchmarks/gpu7.py)."""
