"""rwkv_app/models/rwkv7/cpu_decode.py: the C++ layer step for int8 RWKV-7 decode against the per-op path."""
import copy
from types import SimpleNamespace

import pytest
import torch

from kernels import int8_cpu
from rwkv_app.errors import InputError
from rwkv_app.models.quantize import quantize_model, set_reference
from rwkv_app.models.rwkv7 import cpu_decode

from .rwkv7_helpers import tiny_model7

needs_kernel = pytest.mark.skipif(int8_cpu.load() is None, reason="kernels/int8_cpu does not run here")
# Relative to the largest value. The float32 elementwise work runs in another order (states differ in the last bits);
# such a difference can round a projection's input to the neighbouring bfloat16 value (2^-8 relative).
RTOL = 5e-3


def pair(seed: int = 0, **overrides):
    """(the fused model, the same int8 weights on the per-op path)."""
    fused = quantize_model(tiny_model7(seed, **overrides))
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
@pytest.mark.parametrize("overrides", [{}, {"a_low_rank_dim": 24, "head_dim": 32}])  # a masked tail, 4 heads
def test_each_fused_step_matches_the_per_op_path(batch, overrides):
    """Step by step from the same state (a random tiny model amplifies last-bit differences over many steps;
    the trajectory is the greedy test's)."""
    fused, ops = pair(batch, **overrides)
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


def per_op_in_passes(ops, ids: torch.Tensor, state):
    """The per-op path 16 rows at a time, where it runs the same int8 kernel (above 16 rows it takes oneDNN's
    GEMM, whose outputs are rounded to bfloat16)."""
    passes = [ops(input_ids=ids[i:i + 16], state=[t[i:i + 16] for t in state]) for i in range(0, len(ids), 16)]
    return SimpleNamespace(logits=torch.cat([p.logits for p in passes]),
                           state=[torch.cat(parts) for parts in zip(*(p.state for p in passes))])


@needs_kernel
@torch.no_grad()
def test_greedy_tokens_match_and_the_callers_state_is_untouched():
    fused, ops = pair(4)
    start = prefill(ops, torch.randint(0, 300, (2, 4)))
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
def test_each_row_is_independent_of_its_batch():
    fused, ops = pair(5)
    state = prefill(ops, torch.randint(0, 300, (4, 3)))
    ids = torch.randint(0, 300, (4, 1))
    together = fused(input_ids=ids, state=state)
    for row in range(4):
        alone = fused(input_ids=ids[row:row + 1], state=[t[row:row + 1] for t in state])
        assert torch.equal(alone.logits, together.logits[row:row + 1])
        assert all(torch.equal(a, b[row:row + 1]) for a, b in zip(alone.state, together.state))


@needs_kernel
@torch.no_grad()
def test_no_state_starts_from_zeros_and_use_cache_false_returns_none():
    fused, ops = pair(6)
    ids = torch.tensor([[7], [8]])
    got, expected = fused(input_ids=ids), ops(input_ids=ids)
    assert_close_relative(got.logits, expected.logits)
    assert len(got.state) == 3
    assert fused(input_ids=ids, use_cache=False).state is None
    assert fused(input_ids=ids, use_cache=False, return_dict=False)[0].shape == (2, 1, 300)


@needs_kernel
def test_when_the_fused_step_applies():
    fused, _ = pair(7)
    ids = torch.tensor([[1]])
    args = dict(inputs_embeds=None, state=None, labels=None, output_hidden_states=None, attention_mask=None, extra=[])
    with torch.no_grad():
        assert cpu_decode.applies(fused, ids, **args)
        assert not cpu_decode.applies(fused, torch.tensor([[1, 2]]), **args)  # a prompt: the per-op path
        assert not cpu_decode.applies(fused, ids, **{**args, "output_hidden_states": True})
        assert not cpu_decode.applies(fused, ids, **{**args, "extra": ["unexpected"]})
    assert not cpu_decode.applies(fused, ids, **args)  # grad mode with parameters that need gradients
    with torch.no_grad():
        set_reference(fused, True)
        assert not cpu_decode.applies(fused, ids, **args)
        set_reference(fused, False)
        assert not cpu_decode.applies(tiny_model7(7), ids, **args)  # float32 weights
        fused.cpu_decode = "ops"
        assert not cpu_decode.applies(fused, ids, **args)
        fused.cpu_decode = "fast"
        with pytest.raises(InputError, match="cpu_decode must be one of"):
            fused(input_ids=ids)


@needs_kernel
@torch.no_grad()
def test_bad_input_gets_the_per_op_paths_errors():
    fused, _ = pair(8)
    with pytest.raises(InputError, match=r"\[0, 300\)"):
        fused(input_ids=torch.tensor([[300]]))
    with pytest.raises(InputError, match="state"):
        fused(input_ids=torch.tensor([[1]]), state=[torch.zeros(1, 3, 128)] * 3)


@needs_kernel
@torch.no_grad()
def test_replaced_weights_are_seen():
    fused, ops = pair(9)
    ids = torch.tensor([[3]])
    fused(input_ids=ids)
    replacement = quantize_model(tiny_model7(10))
    for model in (fused, ops):  # the first layer's projection and the head: what the plan's signature watches
        model.model.layers[0].attn.r_proj = copy.deepcopy(replacement.model.layers[0].attn.r_proj)
        model.lm_head = copy.deepcopy(replacement.lm_head)
    assert_close_relative(fused(input_ids=ids).logits, ops(input_ids=ids).logits)
