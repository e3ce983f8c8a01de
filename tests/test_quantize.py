"""Weight-only int8 (dtype "int8"): the fast path against the float32 reference, both families, loading, quality."""
import copy
import math
import pickle

import pytest
import torch

from kernels import int8_cpu
from rwkv_app import InputError, RwkvForCausalLM
from rwkv_app.models import quantize
from rwkv_app.models.quantize import (KERNEL_MAX_ROWS, PACK_MAX_ROWS, Int8Linear, dequantize,
                                      int8_linear_reference, quantize_model, quantize_per_channel, set_reference)
from rwkv_app.weights.pretrained import load_dtype
from rwkv_app.tokenizers.tokenizer import RwkvTokenizer
from rwkv_app.train.evaluate import evaluate

from .rwkv7_helpers import tiny_model7

FAST_RTOL = 2e-2  # bfloat16 activations (8-bit mantissa) against the float32 reference, relative to the largest output
MODEL_RTOL = 5e-2  # whole tiny models, fast against reference, relative to the largest logit
DEMO = "demo-model"
DEMO_PROMPT = "It is a truth universally acknowledged, that"


def assert_close_relative(actual: torch.Tensor, expected: torch.Tensor, rtol: float) -> None:
    scale = expected.abs().max().item()
    torch.testing.assert_close(actual, expected, rtol=rtol, atol=rtol * scale)


def matching_prefix(a: list[int], b: list[int]) -> int:
    return next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))


def test_per_channel_rounding_error_is_at_most_half_a_step():
    weight = torch.randn(37, 50) * torch.logspace(-3, 1, 37)[:, None]  # (N, K) rows of very different scales
    quantized, scales = quantize_per_channel(weight)
    assert quantized.dtype == torch.int8 and scales.shape == (37,)
    error = (dequantize(quantized, scales) - weight).abs()  # (N, K)
    assert bool((error <= scales[:, None] / 2 + 1e-7).all())
    assert int(quantized.abs().amax(dim=1).min()) == 127  # each row uses its full range


ROUTES = ["kernel", "int8pack, oneDNN", "int8pack, plain"]  # kernels/int8_cpu; without it, both GEMM weights


def int8_module(quantized: torch.Tensor, scales: torch.Tensor, route: str, monkeypatch) -> Int8Linear:
    """An Int8Linear on the given route; skips where this machine cannot run it."""
    if route == "kernel" and int8_cpu.load() is None:
        pytest.skip("kernels/int8_cpu does not run here")
    if route == "int8pack, oneDNN" and not quantize.packed_bf16_supported():
        pytest.skip("oneDNN has no bfloat16 on this CPU")
    monkeypatch.setattr(quantize, "packed_bf16_supported", lambda: route != "int8pack, plain")
    if route != "kernel":
        monkeypatch.setattr(quantize, "kernel_runs", lambda quantized: False)
    module = Int8Linear(quantized, scales)
    assert module.packed == (route == "kernel")
    return module


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize("rows", [1, PACK_MAX_ROWS, PACK_MAX_ROWS + 1, KERNEL_MAX_ROWS, KERNEL_MAX_ROWS + 1, 100])
def test_fast_path_matches_the_float32_reference(rows, route, monkeypatch):
    torch.manual_seed(rows)
    quantized, scales = quantize_per_channel(torch.randn(99, 80))  # N not a multiple of the kernel's 16
    module = int8_module(quantized, scales, route, monkeypatch)
    torch.testing.assert_close(module.weight_int8, quantized)
    x = torch.randn(rows, 80)  # (M, K)
    for _ in range(2):  # building the many-rows weight, then reusing it
        fast = module(x)  # (M, N)
        assert fast.dtype == torch.float32 and fast.shape == (rows, 99)
        assert_close_relative(fast, int8_linear_reference(x, quantized, scales), FAST_RTOL)
    gemm_above = KERNEL_MAX_ROWS if route == "kernel" else PACK_MAX_ROWS
    assert (module.many_rows.built is not None) == (rows > gemm_above)
    if rows > gemm_above:
        assert module.many_rows.built[1] == (route != "int8pack, plain")


@torch.no_grad()
def test_a_used_int8_model_copies_and_pickles_without_its_many_rows_cache(tiny_lm):
    model = quantize_model(tiny_lm())
    ids = torch.randint(0, 97, (2, 9))  # 18 rows: the many-rows weight is built
    expected = model(ids).logits  # (B, T, V)
    for twin in (copy.deepcopy(model), pickle.loads(pickle.dumps(model))):
        assert all(m.many_rows.built is None for m in twin.modules() if isinstance(m, Int8Linear))
        torch.testing.assert_close(twin(ids).logits, expected)


def test_int8_linear_keeps_leading_dims_and_refuses_a_bias():
    linear = torch.nn.Linear(16, 8, bias=False)
    module = Int8Linear.from_linear(linear)
    x = torch.randn(2, 5, 16)  # (B, T, K)
    assert module(x).shape == (2, 5, 8)
    assert_close_relative(module(x), linear(x).detach(), 3e-2)
    torch.testing.assert_close(module.weight, dequantize(module.weight_int8, module.scales))
    with pytest.raises(InputError, match="bias-free"):
        Int8Linear.from_linear(torch.nn.Linear(16, 8))


@torch.no_grad()
def test_rwkv4_every_projection_and_the_head_are_int8(tiny_lm):
    model = tiny_lm()
    ids = torch.randint(0, 97, (2, 11))
    expected = model(ids).logits  # (B, T, V) float32
    quantized = quantize_model(copy.deepcopy(model))
    assert not any(isinstance(m, torch.nn.Linear) for m in quantized.modules())
    assert sum(isinstance(m, Int8Linear) for m in quantized.modules()) == 7 * 4 + 1  # 7 per block, the head
    fast = quantized(ids).logits
    set_reference(quantized, True)
    reference = quantized(ids).logits
    assert_close_relative(fast, reference, MODEL_RTOL)
    assert_close_relative(reference, expected, 0.1)  # int8 weights against float32 weights: close, not equal


@torch.no_grad()
def test_rwkv4_int8_decode_equals_its_prefill_and_batches(tiny_lm):
    model = quantize_model(tiny_lm())
    ids = torch.randint(0, 97, (2, 9))
    whole = model(ids).logits  # (B, T, V)
    state, steps = None, []
    for t in range(ids.size(1)):
        out = model(ids[:, t:t + 1], state=state)
        state, steps = out.state, steps + [out.logits[:, -1]]
    assert_close_relative(torch.stack(steps, 1), whole, MODEL_RTOL)  # int8 GEMV vs bf16 GEMM: same numbers within bf16
    alone = model(ids[:1]).logits
    assert_close_relative(whole[:1], alone, MODEL_RTOL)


@torch.no_grad()
def test_the_kernel_layout_keeps_the_numbers_and_the_weights_fingerprint(tiny_lm):
    """kernels/int8_cpu's packed weights give torch's int8 kernels' logits, and a session file's fingerprint."""
    from rwkv_app.state_tree.identity import weights_fingerprint

    if int8_cpu.load() is None:
        pytest.skip("kernels/int8_cpu does not run here")
    model = tiny_lm()
    packed, plain = quantize_model(copy.deepcopy(model)), quantize_model(copy.deepcopy(model), kernel=False)
    assert all(m.packed for m in packed.modules() if isinstance(m, Int8Linear))
    assert not any(m.packed for m in plain.modules() if isinstance(m, Int8Linear))
    ids = torch.randint(0, 97, (3, 1))  # decode rows: the kernel against int8pack
    assert_close_relative(packed(ids).logits, plain(ids).logits, FAST_RTOL)
    assert weights_fingerprint(packed) == weights_fingerprint(plain)


@torch.no_grad()
def test_rwkv7_projections_int8_lora_float32():
    model = tiny_model7(seed=1).eval()
    ids = torch.randint(0, model.config.vocab_size, (2, 7))
    expected = model(ids).logits
    quantized = quantize_model(copy.deepcopy(model))
    assert all(isinstance(m, torch.nn.Linear) for name, m in quantized.named_modules() if "lora" in name
               and isinstance(m, (torch.nn.Linear, Int8Linear)))
    assert isinstance(quantized.lm_head, Int8Linear) and isinstance(quantized.model.layers[0].attn.r_proj, Int8Linear)
    fast = quantized(ids).logits
    set_reference(quantized, True)
    assert_close_relative(fast, quantized(ids).logits, MODEL_RTOL)
    assert_close_relative(quantized(ids).logits, expected, 0.1)


def test_int8_is_for_float32_cpu_models_and_is_not_saved(tiny_lm, tmp_path):
    with pytest.raises(InputError, match="float32 models on the CPU"):
        quantize_model(tiny_lm().bfloat16())
    model = quantize_model(tiny_lm())
    assert quantize_model(model) is model  # idempotent
    with pytest.raises(InputError, match="int8 model is not saved"):
        model.save_pretrained(tmp_path)


def test_dtype_names():
    assert load_dtype("int8") == torch.float32 and load_dtype("INT8") == torch.float32
    with pytest.raises(InputError, match="int8"):
        load_dtype("int4")


@pytest.fixture(scope="module")
def demo_pair():
    return RwkvForCausalLM.from_pretrained(DEMO), RwkvForCausalLM.from_pretrained(DEMO, dtype="int8")


@torch.no_grad()
def test_demo_model_int8_greedy_matches_float32_for_32_tokens(demo_pair):
    full, int8 = demo_pair
    assert isinstance(int8.head, Int8Linear) and int8.weight_dtype == "int8"
    prompt = torch.tensor([RwkvTokenizer.from_pretrained(DEMO).encode(DEMO_PROMPT)])
    a = full.generate(prompt, max_new_tokens=32, do_sample=False)[0, prompt.size(1):].tolist()
    b = int8.generate(prompt, max_new_tokens=32, do_sample=False)[0, prompt.size(1):].tolist()
    assert matching_prefix(a, b) == 32


@torch.no_grad()
def test_demo_model_int8_bits_per_char_within_one_percent(demo_pair):
    full, int8 = demo_pair
    tokenizer = RwkvTokenizer.from_pretrained(DEMO)
    with open(f"{DEMO}/heldout-sample.txt", encoding="utf-8") as f:
        ids = torch.tensor(tokenizer.encode(f.read()[:3000]))
    bpc_full = evaluate(full, tokenizer, ids).bits_per_char
    bpc_int8 = evaluate(int8, tokenizer, ids).bits_per_char
    assert math.isfinite(bpc_int8) and abs(bpc_int8 - bpc_full) <= 0.01 * bpc_full


def test_the_manager_loads_int8_by_name():
    from rwkv_app.services.manager import ModelManager

    manager = ModelManager()
    with manager.use("demo-rwkv4", device="cpu", dtype="int8") as loaded:
        assert loaded.model.weight_dtype == "int8" and isinstance(loaded.model.head, Int8Linear)
    assert manager.loaded()[0]["dtype"] == "int8"
    with manager.use("demo-rwkv7", device="cpu", dtype="int8") as loaded:
        assert loaded.model.weight_dtype == "int8" and isinstance(loaded.model.lm_head, Int8Linear)


def test_the_memory_budget_counts_an_int8_models_many_rows_copies(tiny_lm):
    from rwkv_app.services.manager import model_bytes

    model = tiny_lm()
    float_bytes = model_bytes(model)
    quantized = quantize_model(copy.deepcopy(model))
    int8_weights = sum(m.weight_int8.numel() for m in quantized.modules() if isinstance(m, Int8Linear))
    assert quantize.many_rows_bytes(model) == 0 and quantize.many_rows_bytes(quantized) == 2 * int8_weights
    assert model_bytes(quantized) < float_bytes  # 1 + 2 bytes per weight against 4
    assert model_bytes(quantized) >= 3 * int8_weights
