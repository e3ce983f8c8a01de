"""kernels/cpp.py (RWKV-4's token loop in C++, kernels/wkv_loops/wkv4_sequence.cpp) against the reference, the RWKV
invariant, and when the dispatcher picks it. Inputs and tolerances are test_kernels_cpu's."""
from __future__ import annotations

import pytest
import torch

from kernels import cpp, wkv, wkv_cpp, wkv_cpu, wkv_loops, wkv_reference

from .test_kernels_cpu import (LOOSE_TOL, OUTPUT_TOL, STATE_TOL, assert_state_close, check_extreme_decays_and_keys,
                               float64_reference, make_inputs, prefix_state)

needs_extension = pytest.mark.skipif(wkv_loops.load() is None, reason="kernels/wkv_loops does not run here")


@needs_extension
@pytest.mark.parametrize("with_state", [False, True])
@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("channels", [1, 40, 96, 768])  # whole blocks of 16 and masked tails
@pytest.mark.parametrize("seq_len", [1, 2, 11, 63, 200])
def test_cpp_matches_reference_float32(seq_len, channels, batch, with_state):
    torch.manual_seed(seq_len * 1000 + channels * 10 + batch)
    time_decay, time_first, key, value = make_inputs(batch, seq_len, channels)
    state = prefix_state(time_decay, time_first, batch, channels) if with_state else None
    output, final = wkv_cpp(time_decay, time_first, key, value, state)
    expected_output, expected_final = float64_reference(time_decay, time_first, key, value, state)
    assert output.dtype == torch.float32 and output.shape == (batch, seq_len, channels)
    assert all(s.dtype == torch.float32 and s.shape == (batch, channels) for s in final)
    torch.testing.assert_close(output.double(), expected_output, **OUTPUT_TOL[torch.float32])
    # A float32 token loop, like the reference: its state drifts from float64's as the reference's does (~3e-5 over
    # 200 tokens), where the chunked form's fewer steps stay within STATE_TOL.
    assert_state_close(final, expected_final, **(STATE_TOL if seq_len < 100 else LOOSE_TOL))


@needs_extension
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_cpp_matches_reference_half(dtype):
    torch.manual_seed(5)
    time_decay, time_first, key, value = make_inputs(3, 65, 96, dtype)
    state = prefix_state(time_decay, time_first, 3, 96)
    output, final = wkv_cpp(time_decay, time_first, key, value, state)
    expected_output, expected_final = wkv_reference(time_decay, time_first, key, value, state)
    assert output.dtype == dtype and all(s.dtype == torch.float32 for s in final)
    torch.testing.assert_close(output.float(), expected_output.float(), **OUTPUT_TOL[dtype])
    assert_state_close(final, expected_final, **LOOSE_TOL)


@needs_extension
@pytest.mark.parametrize("key_scale", [1.0, 60.0])
@pytest.mark.parametrize("decay", [-20.0, 0.0, 20.0, 100.0])
def test_cpp_extreme_decays_and_keys(decay, key_scale):
    check_extreme_decays_and_keys(wkv_cpp, decay, key_scale)


@needs_extension
def test_cpp_whole_equals_pieces_equals_token_by_token_exactly():
    torch.manual_seed(0)
    time_decay, time_first, key, value = make_inputs(2, 90, 40)
    whole, final = wkv_cpp(time_decay, time_first, key, value)
    outputs, state = [], None
    for start, stop in ((0, 1), (1, 37), (37, 38), (38, 90)):
        out, state = wkv_cpp(time_decay, time_first, key[:, start:stop], value[:, start:stop], state)
        outputs.append(out)
    assert torch.equal(torch.cat(outputs, dim=1), whole) and all(map(torch.equal, state, final))


@needs_extension
def test_cpp_rows_are_the_same_alone_or_batched_and_the_state_is_left_alone():
    torch.manual_seed(1)
    time_decay, time_first, key, value = make_inputs(4, 30, 40)
    state = prefix_state(time_decay, time_first, 4, 40)
    saved = [s.clone() for s in state]
    batched, batched_final = wkv_cpp(time_decay, time_first, key, value, state)
    assert all(map(torch.equal, state, saved))
    for row in range(4):
        alone, alone_final = wkv_cpp(time_decay, time_first, key[row:row + 1], value[row:row + 1],
                                     tuple(s[row:row + 1] for s in state))
        assert torch.equal(alone, batched[row:row + 1])
        assert all(torch.equal(a, b[row:row + 1]) for a, b in zip(alone_final, batched_final))


# ---- the dispatcher -------------------------------------------------------------------------------

@needs_extension
def test_auto_picks_cpp_for_inference_and_the_chunked_form_for_gradients():
    torch.manual_seed(2)
    args = make_inputs(2, 20, 40)
    got, expected = wkv(*args), wkv_cpp(*args)
    torch.testing.assert_close(got, expected, rtol=0, atol=0)
    key = args[2].clone().requires_grad_()
    output, _ = wkv(args[0], args[1], key, args[3])
    assert output.grad_fn is not None
    torch.testing.assert_close(output, wkv_cpu(args[0], args[1], key, args[3])[0], rtol=0, atol=0)
    torch.testing.assert_close(wkv(*args, impl="cpp"), expected, rtol=0, atol=0)


def test_explicit_cpp_refuses_what_it_cannot_run(monkeypatch):
    args = make_inputs(1, 3, 8)
    with pytest.raises(RuntimeError, match="impl='cpp'.*no backward pass"):
        wkv(args[0].clone().requires_grad_(), *args[1:], impl="cpp")
    monkeypatch.setattr(wkv_loops, "load", lambda: None)
    monkeypatch.setenv(wkv_loops.OFF_SWITCH, "0")
    assert "RWKV_WKV_LOOPS=0" in cpp.refusal(*args, None)
    with pytest.raises(RuntimeError, match="C\\+\\+ extension does not run here"):
        wkv(*args, impl="cpp")
    torch.testing.assert_close(wkv(*args), wkv_cpu(*args), rtol=0, atol=0)  # auto: the chunked form
