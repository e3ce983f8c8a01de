"""kernels/rwkv7/cpp.py (the C++ token loop, kernels/wkv_loops/wkv7_sequence.cpp) against the reference, the RWKV
invariant, and when the dispatcher picks it. Inputs and tolerances are test_kernels7_cpu's."""
from __future__ import annotations

import pytest
import torch

from kernels import wkv_loops
from kernels.rwkv7 import cpp as cpp7
from kernels.rwkv7 import wkv7, wkv7_cpp, wkv7_cpu, wkv7_reference

from .test_kernels7_cpu import STATE_TOL7, TOL7, assert_close_rel, check_against_float64, make_inputs7, prefix_state7

needs_extension = pytest.mark.skipif(wkv_loops.load() is None, reason="kernels/wkv_loops does not run here")


@needs_extension
@pytest.mark.parametrize("with_state", [False, True])
@pytest.mark.parametrize("batch, heads, size", [(1, 1, 64), (3, 2, 64), (1, 3, 16), (2, 2, 32), (1, 1, 128)])
@pytest.mark.parametrize("seq_len", [1, 2, 11, 63, 130])
def test_cpp7_matches_reference_float32(seq_len, batch, heads, size, with_state):
    torch.manual_seed(seq_len * 100 + size + batch)
    inputs = make_inputs7(batch, seq_len, heads, size)
    state = prefix_state7(batch, heads, size) if with_state else None
    check_against_float64(inputs, state, *wkv7_cpp(*inputs, state))


@needs_extension
@pytest.mark.parametrize("decay", ["slow", "strongest"])
def test_cpp7_extreme_decays(decay):
    torch.manual_seed(1)
    inputs = make_inputs7(2, 200, 2, 64, decay=decay)
    state = prefix_state7(2, 2, 64)
    check_against_float64(inputs, state, *wkv7_cpp(*inputs, state))


@needs_extension
def test_cpp7_decay_of_zero_and_beyond_the_chunked_forms_range():
    """log_w = -inf (w = 0) and -200 (w = e^-200 = 0 in float32) need no clamping in a token loop."""
    torch.manual_seed(2)
    r, log_w, k, v, a, b = make_inputs7(1, 30, 2, 16)
    log_w[:, 5] = -float("inf")
    log_w[:, 17] = -200.0
    inputs = (r, log_w, k, v, a, b)
    output, final = wkv7_cpp(*inputs)
    expected_output, expected_final = wkv7_reference(*inputs)
    assert torch.isfinite(output).all() and torch.isfinite(final).all()
    assert_close_rel(output, expected_output, TOL7[torch.float32], "output")
    assert_close_rel(final, expected_final, STATE_TOL7, "state")


@needs_extension
def test_cpp7_whole_equals_pieces_with_state_carried_exactly():
    """The same arithmetic per token whatever the split: bit-identical outputs and state."""
    torch.manual_seed(3)
    inputs = make_inputs7(2, 100, 3, 64)
    whole, whole_state = wkv7_cpp(*inputs)
    outputs, state = [], None
    for start, stop in ((0, 1), (1, 37), (37, 38), (38, 100)):
        out, state = wkv7_cpp(*(x[:, start:stop] for x in inputs), state)
        outputs.append(out)
    assert torch.equal(torch.cat(outputs, dim=1), whole) and torch.equal(state, whole_state)


@needs_extension
def test_cpp7_rows_are_the_same_alone_or_batched():
    torch.manual_seed(4)
    inputs = make_inputs7(5, 20, 2, 64)
    state = prefix_state7(5, 2, 64)
    batched, batched_state = wkv7_cpp(*inputs, state)
    for row in range(5):
        alone, alone_state = wkv7_cpp(*(x[row:row + 1] for x in inputs), state[row:row + 1])
        assert torch.equal(alone, batched[row:row + 1]) and torch.equal(alone_state, batched_state[row:row + 1])


@needs_extension
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("float32_log_decay", [False, True])
def test_cpp7_half_inputs(dtype, float32_log_decay):
    torch.manual_seed(5)
    r, log_w, k, v, a, b = make_inputs7(2, 40, 2, 32, dtype)
    inputs = (r, log_w.float() if float32_log_decay else log_w, k, v, a, b)
    state = prefix_state7(2, 2, 32)
    output, final = wkv7_cpp(*inputs, state)
    expected_output, expected_final = wkv7_reference(*inputs, state)
    assert output.dtype == dtype and final.dtype == torch.float32
    assert_close_rel(output, expected_output, TOL7[dtype], "output")
    assert_close_rel(final, expected_final, STATE_TOL7, "state")


@needs_extension
def test_cpp7_reads_the_state_and_writes_out_state():
    torch.manual_seed(6)
    inputs = make_inputs7(2, 9, 2, 16)
    state = prefix_state7(2, 2, 16)
    before = state.clone()
    out_state = torch.full_like(state, float("nan"))
    output, final = wkv7(*inputs, state, impl="cpp", out_state=out_state)
    assert torch.equal(state, before) and final is out_state
    check_against_float64(inputs, state, output, final)


# ---- the dispatcher -------------------------------------------------------------------------------

@needs_extension
def test_auto_picks_cpp_for_inference_and_the_chunked_form_for_gradients():
    torch.manual_seed(7)
    inputs = make_inputs7(2, 11, 2, 16)
    state = prefix_state7(2, 2, 16)
    got = wkv7(*inputs, state)
    expected = wkv7_cpp(*inputs, state)
    assert torch.equal(got[0], expected[0]) and torch.equal(got[1], expected[1])
    grad_inputs = tuple(x.clone().requires_grad_() for x in inputs)
    output, _ = wkv7(*grad_inputs, state)
    assert output.grad_fn is not None  # the chunked form: autograd records it
    chunked = wkv7_cpu(*grad_inputs, state)[0]
    assert torch.equal(output, chunked)
    with torch.no_grad():
        assert torch.equal(wkv7(*grad_inputs, state)[0], expected[0])  # no gradient wanted: cpp again


def test_auto_falls_back_to_the_chunked_form_where_cpp_cannot_run():
    torch.manual_seed(8)
    inputs = make_inputs7(1, 11, 2, 24)  # a head size the kernel has no template for
    assert "head sizes" in cpp7.refusal(inputs, None)
    got = wkv7(*inputs)
    expected = wkv7_cpu(*inputs)
    assert torch.equal(got[0], expected[0]) and torch.equal(got[1], expected[1])


@pytest.mark.parametrize("what, build, message", [
    ("head size", lambda: make_inputs7(1, 3, 1, 24), "head sizes"),
    ("float64", lambda: make_inputs7(1, 3, 1, 16, torch.float64), "float32, float16 or bfloat16"),
    ("gradient", lambda: tuple(x.requires_grad_() for x in make_inputs7(1, 3, 1, 16)), "no backward pass"),
])
def test_explicit_cpp_refuses_what_it_cannot_run(what, build, message):
    with pytest.raises(RuntimeError, match=f"impl='cpp'.*{message}"):
        wkv7(*build(), impl="cpp")


def test_explicit_cpp_says_why_the_extension_is_missing(monkeypatch):
    monkeypatch.setattr(wkv_loops, "load", lambda: None)
    monkeypatch.setenv(wkv_loops.OFF_SWITCH, "0")
    with pytest.raises(RuntimeError, match="C\\+\\+ extension does not run here.*RWKV_WKV_LOOPS=0"):
        wkv7(*make_inputs7(1, 3, 1, 16), impl="cpp")
    got = wkv7(*make_inputs7(1, 3, 1, 16))  # auto: the chunked form
    assert got[0].shape == (1, 3, 1, 16)
