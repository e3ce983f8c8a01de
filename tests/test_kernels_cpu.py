"""kernels/: the fast CPU path against the token-by-token reference, the dispatcher's checks, and gradients.

float32 results are compared with the reference loop run in float64 on the same inputs (the float32 loop
itself drifts by ~3e-5 over 200 tokens); half inputs with the reference run on the same half inputs.
"""
from __future__ import annotations

import pytest
import torch

from kernels import IMPLS, wkv, wkv_cpu, wkv_cpu_step, wkv_reference

# Output tolerance per input dtype: float32 against the float64 oracle, halfs one rounding step of the dtype.
OUTPUT_TOL = {
    torch.float32: dict(rtol=1e-5, atol=1e-5),
    torch.float16: dict(rtol=torch.finfo(torch.float16).eps, atol=torch.finfo(torch.float16).eps),
    torch.bfloat16: dict(rtol=torch.finfo(torch.bfloat16).eps, atol=torch.finfo(torch.bfloat16).eps),
}
STATE_TOL = dict(rtol=1e-5, atol=1e-5)  # the float32 state, whatever the input dtype
LOOSE_TOL = dict(rtol=1e-4, atol=1e-4)  # float32 fast path against the float32 loop (both drift)


def make_inputs(batch, seq_len, channels, dtype=torch.float32, key_scale=1.0):
    """Random parameters in a trained model's range (w from -0.0025 to -20), keys and values."""
    time_decay = torch.rand(channels) * 9 - 6  # (C,)
    time_first = torch.randn(channels) * 0.5  # (C,)
    key = (torch.randn(batch, seq_len, channels) * key_scale).to(dtype)  # (B, T, C)
    value = torch.randn(batch, seq_len, channels).to(dtype)  # (B, T, C)
    return time_decay, time_first, key, value


def prefix_state(time_decay, time_first, batch, channels, seq_len=20):
    """A realistic incoming state: the reference run over a random prefix."""
    key = torch.randn(batch, seq_len, channels)  # (B, T, C)
    value = torch.randn(batch, seq_len, channels)  # (B, T, C)
    return wkv_reference(time_decay, time_first, key, value)[1]


def float64_reference(time_decay, time_first, key, value, state=None):
    """The reference loop on the same inputs, computed in float64."""
    state = None if state is None else tuple(s.double() for s in state)
    return wkv_reference(time_decay.double(), time_first.double(), key.double(), value.double(), state)


def assert_state_close(actual, expected, rtol, atol):
    """Same running max, and the same num, den once both are scaled to the expected max."""
    num, den, max_ = (x.double() for x in actual)
    num_e, den_e, max_e = (x.double() for x in expected)
    torch.testing.assert_close(max_, max_e, rtol=rtol, atol=atol)
    scale = torch.exp(max_ - max_e)  # (B, C)
    torch.testing.assert_close(num * scale, num_e, rtol=rtol, atol=atol)
    torch.testing.assert_close(den * scale, den_e, rtol=rtol, atol=atol)


@pytest.mark.parametrize("with_state", [False, True])
@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("channels", [1, 40, 96, 768])
@pytest.mark.parametrize("seq_len", [1, 2, 11, 63, 64, 65, 200])
def test_cpu_matches_reference_float32(seq_len, channels, batch, with_state):
    torch.manual_seed(seq_len * 1000 + channels * 10 + batch)
    time_decay, time_first, key, value = make_inputs(batch, seq_len, channels)
    state = prefix_state(time_decay, time_first, batch, channels) if with_state else None
    output, final = wkv_cpu(time_decay, time_first, key, value, state)
    expected_output, expected_final = float64_reference(time_decay, time_first, key, value, state)
    assert output.dtype == torch.float32 and output.shape == (batch, seq_len, channels)
    assert all(s.dtype == torch.float32 and s.shape == (batch, channels) for s in final)
    torch.testing.assert_close(output.double(), expected_output, **OUTPUT_TOL[torch.float32])
    assert_state_close(final, expected_final, **STATE_TOL)


@pytest.mark.parametrize("seq_len", [11, 200])
def test_cpu_matches_float32_loop(seq_len):
    """Parity with Hugging Face's float32 loop itself, at the tolerance both drift within."""
    torch.manual_seed(seq_len)
    time_decay, time_first, key, value = make_inputs(3, seq_len, 96)
    state = prefix_state(time_decay, time_first, 3, 96)
    output, final = wkv_cpu(time_decay, time_first, key, value, state)
    expected_output, expected_final = wkv_reference(time_decay, time_first, key, value, state)
    torch.testing.assert_close(output, expected_output, **LOOSE_TOL)
    assert_state_close(final, expected_final, **LOOSE_TOL)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("seq_len", [1, 11, 65])
def test_cpu_matches_reference_half(dtype, seq_len):
    torch.manual_seed(seq_len)
    time_decay, time_first, key, value = make_inputs(3, seq_len, 96, dtype)
    state = prefix_state(time_decay, time_first, 3, 96)
    output, final = wkv_cpu(time_decay, time_first, key, value, state)
    expected_output, expected_final = wkv_reference(time_decay, time_first, key, value, state)
    assert output.dtype == dtype and all(s.dtype == torch.float32 for s in final)
    torch.testing.assert_close(output.float(), expected_output.float(), **OUTPUT_TOL[dtype])
    assert_state_close(final, expected_final, **LOOSE_TOL)


@pytest.mark.parametrize("key_scale", [1.0, 30.0, 60.0])
@pytest.mark.parametrize("decay", [-20.0, -8.0, 0.0, 8.0, 20.0, 50.0, 100.0])
def test_cpu_extreme_decays_and_keys(decay, key_scale):
    check_extreme_decays_and_keys(wkv_cpu, decay, key_scale)


def check_extreme_decays_and_keys(fast_path, decay: float, key_scale: float) -> None:
    """time_decay 100 makes the reference's w = -inf in float32; keys up to +-60 (also tests/test_kernels_cpp.py)."""
    torch.manual_seed(int(decay) + int(key_scale))
    batch, seq_len, channels = 2, 70, 24
    time_decay = torch.full((channels,), decay)  # (C,)
    time_first = torch.randn(channels)  # (C,)
    key = (torch.rand(batch, seq_len, channels) * 2 - 1) * key_scale  # (B, T, C)
    value = torch.randn(batch, seq_len, channels)  # (B, T, C)
    for state in (None, prefix_state(time_decay, time_first, batch, channels)):
        output, final = fast_path(time_decay, time_first, key, value, state)
        expected_output, expected_final = wkv_reference(time_decay, time_first, key, value, state)
        assert torch.isfinite(output).all() and all(torch.isfinite(s).all() for s in final)
        torch.testing.assert_close(output, expected_output, **LOOSE_TOL)
        assert_state_close(final, expected_final, **LOOSE_TOL)


def test_whole_equals_chunked_equals_token_by_token():
    torch.manual_seed(0)
    time_decay, time_first, key, value = make_inputs(2, 90, 40)
    output, final = wkv_cpu(time_decay, time_first, key, value)
    first, state = wkv_cpu(time_decay, time_first, key[:, :37], value[:, :37])
    second, chunked_final = wkv_cpu(time_decay, time_first, key[:, 37:], value[:, 37:], state)
    torch.testing.assert_close(torch.cat([first, second], dim=1), output, **STATE_TOL)
    assert_state_close(chunked_final, final, **STATE_TOL)
    state, steps = None, []
    for t in range(key.shape[1]):
        out, state = wkv_cpu_step(time_decay, time_first, key[:, t], value[:, t], state)
        steps.append(out)
    torch.testing.assert_close(torch.stack(steps, dim=1), output, **STATE_TOL)
    assert_state_close(state, final, **STATE_TOL)


def test_step_matches_cpu_single_token():
    torch.manual_seed(1)
    time_decay, time_first, key, value = make_inputs(3, 1, 40)
    state = prefix_state(time_decay, time_first, 3, 40)
    output, final = wkv_cpu_step(time_decay, time_first, key[:, 0], value[:, 0], state)
    expected_output, expected_final = wkv_cpu(time_decay, time_first, key, value, state)
    assert output.shape == (3, 40)
    torch.testing.assert_close(output, expected_output[:, 0], rtol=0, atol=0)
    assert_state_close(final, expected_final, rtol=0, atol=0)


@pytest.mark.parametrize("impl", ["auto", "reference", "cpu"])
def test_state_inputs_not_mutated(impl):
    torch.manual_seed(2)
    time_decay, time_first, key, value = make_inputs(2, 33, 40)
    state = prefix_state(time_decay, time_first, 2, 40)
    saved = [x.clone() for x in (time_decay, time_first, key, value, *state)]
    wkv(time_decay, time_first, key, value, state, impl=impl)
    assert all(torch.equal(a, b) for a, b in zip(saved, (time_decay, time_first, key, value, *state)))


def test_dispatcher_routes():
    torch.manual_seed(3)
    args = make_inputs(2, 20, 40)
    assert IMPLS == ("auto", "reference", "cpu", "cpp", "triton")
    torch.testing.assert_close(wkv(*args, impl="reference"), wkv_reference(*args), rtol=0, atol=0)
    torch.testing.assert_close(wkv(*args, impl="cpu"), wkv_cpu(*args), rtol=0, atol=0)
    with torch.enable_grad():  # auto on CPU tensors wanting a gradient: the chunked form (tests/test_kernels_cpp.py)
        wanting = (args[0].clone().requires_grad_(), *args[1:])
        torch.testing.assert_close(wkv(*wanting), wkv_cpu(*wanting), rtol=0, atol=0)
    state = list(wkv(*args)[1])  # a list is accepted as well as a tuple
    assert wkv(*args, state)[0].shape == (2, 20, 40)
    with pytest.raises(RuntimeError, match="Triton kernels are not available"):
        wkv(*args, impl="triton")


def _bad_calls():
    """(name, arguments changed from a good call, text the error must contain)."""
    b, t, c = 2, 5, 8
    good = dict(time_decay=torch.zeros(c), time_first=torch.zeros(c), key=torch.zeros(b, t, c), value=torch.zeros(b, t, c))
    state = (torch.zeros(b, c), torch.zeros(b, c), torch.zeros(b, c))
    cases = [
        ("key 2-D", dict(key=torch.zeros(b, c)), "key must be 3-D"),
        ("key not tensor", dict(key=[[0.0]]), "key must be a torch.Tensor"),
        ("key float64", dict(key=torch.zeros(b, t, c, dtype=torch.float64)), "key dtype"),
        ("key int", dict(key=torch.zeros(b, t, c, dtype=torch.int64)), "key dtype"),
        ("value shape", dict(value=torch.zeros(b, t + 1, c)), "value must match key"),
        ("value dtype", dict(value=torch.zeros(b, t, c, dtype=torch.float16)), "value must match key"),
        ("empty T", dict(key=torch.zeros(b, 0, c), value=torch.zeros(b, 0, c)), "T >= 1"),
        ("time_decay shape", dict(time_decay=torch.zeros(c + 1)), "time_decay must have shape"),
        ("time_first 2-D", dict(time_first=torch.zeros(1, c)), "time_first must be 1-D"),
        ("time_first dtype", dict(time_first=torch.zeros(c, dtype=torch.int32)), "time_first dtype"),
        ("state not tuple", dict(state=torch.zeros(b, c)), "state must be a tuple"),
        ("state too short", dict(state=state[:2]), "state must be a tuple"),
        ("state dtype", dict(state=(state[0], state[1].half(), state[2])), r"state\[1\] \(den\) must be float32"),
        ("state shape", dict(state=(state[0], state[1], torch.zeros(b, c + 1))), r"state\[2\] \(max\) must have shape"),
        ("state batch", dict(state=(torch.zeros(b + 1, c), state[1], state[2])), r"state\[0\] \(num\) must have shape"),
        ("state entry", dict(state=(state[0], None, state[2])), r"state\[1\] \(den\) must be a torch.Tensor"),
        ("impl", dict(impl="cuda"), "impl must be one of"),
    ]
    return [pytest.param({**good, **change}, match, id=name) for name, change, match in cases]


@pytest.mark.parametrize("kwargs, match", _bad_calls())
def test_dispatcher_rejects_bad_arguments(kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        wkv(**kwargs)


@pytest.mark.parametrize("seq_len", [1, 37])
def test_gradients_match_reference(seq_len):
    """float64; the loss reads the output and the final N = num * e^max, D = den * e^max."""
    torch.manual_seed(4)
    batch, channels = 2, 6
    leaves = [
        torch.randn(channels, dtype=torch.float64) * 2,  # time_decay
        torch.randn(channels, dtype=torch.float64),  # time_first
        torch.randn(batch, seq_len, channels, dtype=torch.float64) * 3,  # key
        torch.randn(batch, seq_len, channels, dtype=torch.float64),  # value
        torch.randn(batch, channels, dtype=torch.float64),  # state num
        torch.rand(batch, channels, dtype=torch.float64) + 1,  # state den
    ]
    leaves = [x.requires_grad_() for x in leaves]
    max_ = torch.randn(batch, channels, dtype=torch.float64)  # (B, C)
    weights = [torch.randn(batch, seq_len, channels, dtype=torch.float64), torch.randn(2, batch, channels, dtype=torch.float64)]

    def grads(fn):
        output, (num, den, m) = fn(*leaves[:4], (leaves[4], leaves[5], max_))
        loss = (output * weights[0]).sum() + (torch.stack([num, den]) * m.exp() * weights[1]).sum()
        return torch.autograd.grad(loss, leaves)

    for got, expected in zip(grads(wkv_cpu), grads(wkv_reference)):
        torch.testing.assert_close(got, expected, rtol=1e-9, atol=1e-9)


def test_gradients_finite_for_huge_decay():
    """w = -exp(100) is -inf in float32; the fast path's gradients stay finite."""
    torch.manual_seed(5)
    time_decay, time_first, key, value = make_inputs(2, 40, 16)
    time_decay[:4] = 100.0
    leaves = [x.requires_grad_() for x in (time_decay, time_first, key, value)]
    output, (num, den, max_) = wkv_cpu(*leaves)
    grads = torch.autograd.grad(output.sum() + num.sum() + den.sum(), leaves)
    assert all(torch.isfinite(g).all() for g in grads)
