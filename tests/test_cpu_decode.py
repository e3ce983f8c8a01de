"""The int8 CPU decode steps (rwkv_app/models/cpu_decode.py; kernels/int8_cpu/rwkv4_step.cpp, rwkv7_step.cpp)
against each family's per-op path."""
import copy
from types import SimpleNamespace

import pytest
import torch

from kernels import int8_cpu
from rwkv_app.errors import InputError
from rwkv_app.models.quantize import quantize_model, set_reference
from rwkv_app.models.rwkv4.modeling import RwkvForCausalLM
from rwkv_app.models.rwkv7 import cpu_decode as rwkv7_cpu_decode

from .conftest import randomize, tiny_config
from .rwkv7_helpers import tiny_model7

needs_kernel = pytest.mark.skipif(int8_cpu.load() is None, reason="kernels/int8_cpu does not run here")
# Relative to the largest value. The float32 elementwise work runs in another order (states differ in the last bits);
# such a difference can round a projection's input to the neighbouring bfloat16 value (2^-8 relative).
RTOL = 5e-3


# Per family: shapes with whole 16-lane vectors, and ones with masked tails (RWKV-4: hidden and attention sizes of
# 40 and 56, rescale_every halving every 2 blocks; RWKV-7: a low-rank width of 24 and heads of 32).
SHAPES = [("rwkv4", {}), ("rwkv4", {"hidden_size": 40, "attention_hidden_size": 56}),
          ("rwkv7", {}), ("rwkv7", {"a_low_rank_dim": 24, "head_dim": 32})]


def tiny(family: str, seed: int = 0, **overrides):
    if family == "rwkv4":
        torch.manual_seed(seed)
        return randomize(RwkvForCausalLM(tiny_config(**overrides)), seed).eval()
    return tiny_model7(seed, **overrides)


def pair(family: str, seed: int = 0, **overrides):
    """(the fused model, the same int8 weights on the per-op path)."""
    fused = quantize_model(tiny(family, seed, **overrides))
    ops = copy.deepcopy(fused)
    ops.cpu_decode = "ops"
    return fused, ops


def assert_close_relative(got: torch.Tensor, expected: torch.Tensor, rtol: float = RTOL) -> None:
    scale = expected.abs().max().item()
    torch.testing.assert_close(got, expected, rtol=0, atol=rtol * scale)


def prefill(model, ids: torch.Tensor):
    return model(input_ids=ids, use_cache=True).state


@needs_kernel
@torch.no_grad()
@pytest.mark.parametrize("batch", [1, 3, 17])  # one row, a few, more than the kernel's 16-row pass
@pytest.mark.parametrize("family, overrides", SHAPES)
def test_each_fused_step_matches_the_per_op_path(batch, family, overrides, monkeypatch):
    """Step by step from the same state (a random tiny model amplifies last-bit differences over many steps;
    the trajectory is the greedy test's)."""
    fused, ops = pair(family, batch, **overrides)
    calls = count_layer_steps(monkeypatch, family)
    vocab = fused.config.vocab_size
    state = prefill(ops, torch.randint(0, vocab, (batch, 5)))
    for _ in range(4):
        ids = torch.randint(0, vocab, (batch, 1))
        got, expected = fused(input_ids=ids, state=state), per_op_in_passes(ops, ids, state)
        assert got.logits.shape == expected.logits.shape == (batch, 1, vocab)
        assert_close_relative(got.logits, expected.logits)
        for mine, theirs in zip(got.state, expected.state):
            assert mine.shape == theirs.shape and mine.dtype == theirs.dtype
            assert_close_relative(mine, theirs)
        state = expected.state
    assert len(calls) == 4 * fused.config.num_hidden_layers  # the fused path ran, once per layer and step


def count_layer_steps(monkeypatch, family: str) -> list:
    """Record each call of the family's C++ layer step (and still make it)."""
    name = f"{family}_layer_step"
    calls, step = [], getattr(int8_cpu, name)
    monkeypatch.setattr(int8_cpu, name, lambda *args: calls.append(1) or step(*args))
    return calls


def per_op_in_passes(ops, ids: torch.Tensor, state):
    """The per-op path 16 rows at a time, where it runs the same int8 kernel (above 16 rows it takes oneDNN's
    GEMM, whose outputs are rounded to bfloat16)."""
    passes = [ops(input_ids=ids[i:i + 16], state=[t[i:i + 16] for t in state]) for i in range(0, len(ids), 16)]
    return SimpleNamespace(logits=torch.cat([p.logits for p in passes]),
                           state=[torch.cat(parts) for parts in zip(*(p.state for p in passes))])


@needs_kernel
@torch.no_grad()
@pytest.mark.parametrize("family", ["rwkv4", "rwkv7"])
def test_greedy_tokens_match_and_the_callers_state_is_untouched(family):
    fused, ops = pair(family, 4)
    start = prefill(ops, torch.randint(0, fused.config.vocab_size, (2, 4)))
    kept = [t.clone() for t in start]
    tokens = {}
    for name, model in (("fused", fused), ("ops", ops)):
        state, ids, out = start, torch.tensor([[1], [2]]), []
        for _ in range(12):
            step = model(input_ids=ids, state=state)
            ids, state = step.logits[:, -1].argmax(-1, keepdim=True), step.state  # (B, 1)
            out.append(ids)
        tokens[name] = torch.cat(out, 1)
    assert torch.equal(tokens["fused"], tokens["ops"])
    assert all(torch.equal(a, b) for a, b in zip(start, kept))


@needs_kernel
@torch.no_grad()
@pytest.mark.parametrize("family", ["rwkv4", "rwkv7"])
def test_each_row_is_independent_of_its_batch(family):
    fused, ops = pair(family, 5)
    vocab = fused.config.vocab_size
    state = prefill(ops, torch.randint(0, vocab, (4, 3)))
    ids = torch.randint(0, vocab, (4, 1))
    together = fused(input_ids=ids, state=state)
    for row in range(4):
        alone = fused(input_ids=ids[row:row + 1], state=[t[row:row + 1] for t in state])
        assert torch.equal(alone.logits, together.logits[row:row + 1])
        assert all(torch.equal(a, b[row:row + 1]) for a, b in zip(alone.state, together.state))


@needs_kernel
@torch.no_grad()
@pytest.mark.parametrize("family", ["rwkv4", "rwkv7"])
def test_no_state_starts_from_zeros_and_use_cache_false_returns_none(family):
    fused, ops = pair(family, 6)
    ids = torch.tensor([[7], [8]])
    got, expected = fused(input_ids=ids), ops(input_ids=ids)
    assert_close_relative(got.logits, expected.logits)
    assert [t.shape for t in got.state] == [t.shape for t in expected.state]
    assert fused(input_ids=ids, use_cache=False).state is None
    assert fused(input_ids=ids, use_cache=False, return_dict=False)[0].shape == (2, 1, fused.config.vocab_size)


@needs_kernel
def test_when_the_fused_step_applies():
    fused, _ = pair("rwkv7", 7)
    ids = torch.tensor([[1]])
    args = dict(inputs_embeds=None, state=None, labels=None, output_hidden_states=None, attention_mask=None, extra=[])
    applies = rwkv7_cpu_decode.applies
    with torch.no_grad():
        assert applies(fused, ids, **args)
        assert not applies(fused, torch.tensor([[1, 2]]), **args)  # a prompt: the per-op path
        assert not applies(fused, ids, **{**args, "output_hidden_states": True})
        assert not applies(fused, ids, **{**args, "extra": ["unexpected"]})
    assert not applies(fused, ids, **args)  # grad mode with parameters that need gradients
    with torch.no_grad():
        set_reference(fused, True)
        assert not applies(fused, ids, **args)
        set_reference(fused, False)
        assert not applies(tiny_model7(7), ids, **args)  # float32 weights
        assert not applies(quantize_model(tiny_model7(7), kernel=False), ids, **args)  # torch's int8 layout
        fused.cpu_decode = "ops"
        assert not applies(fused, ids, **args)
        fused.cpu_decode = "fast"
        with pytest.raises(InputError, match="cpu_decode must be one of"):
            fused(input_ids=ids)


@needs_kernel
@torch.no_grad()
@pytest.mark.parametrize("family", ["rwkv4", "rwkv7"])
def test_bad_input_gets_the_per_op_paths_errors(family):
    fused, _ = pair(family, 8)
    vocab = fused.config.vocab_size
    with pytest.raises(InputError, match=rf"\[0, {vocab}\)"):
        fused(input_ids=torch.tensor([[vocab]]))
    with pytest.raises(InputError, match="state"):
        fused(input_ids=torch.tensor([[1]]), state=[torch.zeros(1, 3, 128)] * 3)


@needs_kernel
@torch.no_grad()
def test_replaced_weights_are_seen():
    fused, ops = pair("rwkv7", 9)
    ids = torch.tensor([[3]])
    fused(input_ids=ids)
    replacement = quantize_model(tiny_model7(10))
    for model in (fused, ops):  # the first layer's projection and the head: what the plan's signature watches
        model.model.layers[0].attn.r_proj = copy.deepcopy(replacement.model.layers[0].attn.r_proj)
        model.lm_head = copy.deepcopy(replacement.lm_head)
    assert_close_relative(fused(input_ids=ids).logits, ops(input_ids=ids).logits)
    for model in (fused, ops):  # a middle layer's module: not watched, so the code that swaps it says so
        model.model.layers[1].attn.k_proj = copy.deepcopy(replacement.model.layers[1].attn.k_proj)
    rwkv7_cpu_decode.PLANS.forget(fused)
    assert_close_relative(fused(input_ids=ids).logits, ops(input_ids=ids).logits)
