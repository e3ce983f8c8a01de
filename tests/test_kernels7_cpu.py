"""kernels/rwkv7: the chunked CPU path and the decode step against the token-loop reference, gradients, and the
dispatcher's checks.

float32 results are compared with the reference loop run in float64 on the same inputs; half inputs with the
reference run on the same half inputs (both accumulate in float32).
"""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from kernels.rwkv7 import IMPLS7, wkv7, wkv7_cpu, wkv7_cpu_step, wkv7_reference
from kernels.rwkv7 import cpu as cpu7

STRONGEST_LOG_DECAY = -math.exp(-0.5)  # x070: w = exp(-exp(-0.5) * sigmoid(...)), so log_w >= -0.6065
# max |err| <= rtol * max |expected| (+ atol for all-zero outputs), per input dtype
TOL7 = {torch.float32: 1e-5, torch.float16: 2e-3, torch.bfloat16: 1.6e-2, torch.float64: 1e-12}
STATE_TOL7 = 1e-5  # the float32 state, whatever the input dtype
DECAYS = {  # log_w per token
    "mixed": lambda shape: STRONGEST_LOG_DECAY * torch.sigmoid(torch.randn(shape) * 3),
    "slow": lambda shape: -1e-4 * torch.rand(shape),  # w close to 1: the state remembers everything
    "strongest": lambda shape: STRONGEST_LOG_DECAY * (1 - 1e-3 * torch.rand(shape)),  # x070's fastest forgetting
}


def make_inputs7(batch, seq_len, heads, size, dtype=torch.float32, decay="mixed"):
    """(r, log_w, k, v, a, b), each (B, T, H, N), as x070 builds them: a = -kk, b = kk * iclr, |kk| = 1."""
    shape = (batch, seq_len, heads, size)
    r, k, v = (torch.randn(shape) for _ in range(3))  # (B, T, H, N)
    log_w = DECAYS[decay](shape)  # (B, T, H, N)
    kk = F.normalize(torch.randn(shape), dim=-1)  # (B, T, H, N)
    iclr = torch.rand(shape)  # (B, T, H, N)
    return tuple(x.to(dtype) for x in (r, log_w, k, v, -kk, kk * iclr))


def prefix_state7(batch, heads, size, seq_len=20):
    """A realistic incoming state: the reference run over a random prefix."""
    return wkv7_reference(*make_inputs7(batch, seq_len, heads, size))[1]  # (B, H, N, N)


def float64_reference7(inputs, state=None):
    return wkv7_reference(*(x.double() for x in inputs), None if state is None else state.double())


def assert_close_rel(actual, expected, rtol, what=""):
    """max |actual - expected| <= rtol * max(|expected|.max(), 1): relative to the tensor's scale."""
    scale = max(float(expected.double().abs().max()), 1.0)
    error = float((actual.double() - expected.double()).abs().max())
    assert error <= rtol * scale, f"{what}: max |err| {error:.3g} > {rtol:.1g} x {scale:.3g}"


def check_against_float64(inputs, state, output, final):
    expected_output, expected_final = float64_reference7(inputs, state)
    r = inputs[0]
    assert output.dtype == r.dtype and output.shape == r.shape
    batch, _, heads, size = r.shape
    assert final.dtype == torch.float32 and final.shape == (batch, heads, size, size)
    assert_close_rel(output, expected_output, TOL7[torch.float32], "output")
    assert_close_rel(final, expected_final, STATE_TOL7, "state")


@pytest.mark.parametrize("with_state", [False, True])
@pytest.mark.parametrize("batch, heads, size", [(1, 1, 64), (3, 2, 64), (1, 3, 16), (3, 1, 16)])
@pytest.mark.parametrize("seq_len", [1, 2, 11, 63, 130])
def test_cpu7_matches_reference_float32(seq_len, batch, heads, size, with_state):
    torch.manual_seed(seq_len * 1000 + batch * 100 + heads * 10 + size)
    inputs = make_inputs7(batch, seq_len, heads, size)
    state = prefix_state7(batch, heads, size) if with_state else None
    check_against_float64(inputs, state, *wkv7_cpu(*inputs, state))


@pytest.mark.parametrize("decay", ["slow", "strongest"])
@pytest.mark.parametrize("seq_len", [63, 130])
def test_cpu7_extreme_decays(seq_len, decay):
    torch.manual_seed(seq_len)
    inputs = make_inputs7(2, seq_len, 2, 64, decay=decay)
    state = prefix_state7(2, 2, 64)
    check_against_float64(inputs, state, *wkv7_cpu(*inputs, state))


@pytest.mark.parametrize("log_decay", [-5.0, -100.0, -float("inf")])
def test_cpu7_decays_beyond_x070_shorten_the_chunk(log_decay):
    """Stronger than x070 can produce: the chunk shrinks so the factored decays stay finite; w = 0 is exact."""
    torch.manual_seed(0)
    r, log_w, k, v, a, b = make_inputs7(1, 40, 2, 16)
    log_w = log_w.clone()
    log_w[:, ::3] = log_decay  # every third token forgets (almost) everything
    assert cpu7.chunk_size(log_w) < cpu7.CHUNK
    output, final = wkv7_cpu(r, log_w, k, v, a, b)
    assert torch.isfinite(output).all() and torch.isfinite(final).all()
    check_against_float64((r, log_w, k, v, a, b), None, output, final)


def test_cpu7_matches_float32_loop_at_the_01b_shape():
    """The 0.1B shape (12 heads of 64), T = 256, against the float32 loop itself."""
    torch.manual_seed(1)
    inputs = make_inputs7(1, 256, 12, 64)
    state = prefix_state7(1, 12, 64)
    output, final = wkv7_cpu(*inputs, state)
    expected_output, expected_final = wkv7_reference(*inputs, state)
    assert_close_rel(output, expected_output, TOL7[torch.float32], "output")
    assert_close_rel(final, expected_final, STATE_TOL7, "state")


@pytest.mark.parametrize("chunk", [1, 4, 16, 64])
def test_cpu7_any_chunk_size(chunk):
    torch.manual_seed(chunk)
    inputs = make_inputs7(2, 70, 2, 16)
    state = prefix_state7(2, 2, 16)
    check_against_float64(inputs, state, *wkv7_cpu(*inputs, state, chunk=chunk))


def test_cpu7_whole_equals_pieces_with_state_carried():
    torch.manual_seed(2)
    inputs = make_inputs7(2, 100, 3, 16)
    whole, whole_state = wkv7_cpu(*inputs)
    outputs, state = [], None
    for start, stop in ((0, 1), (1, 37), (37, 38), (38, 100)):
        out, state = wkv7_cpu(*(x[:, start:stop] for x in inputs), state)
        outputs.append(out)
    assert_close_rel(torch.cat(outputs, dim=1), whole, 1e-5, "output")
    assert_close_rel(state, whole_state, 1e-5, "state")


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("seq_len", [1, 40])
def test_cpu7_half_inputs(seq_len, dtype):
    """Half inputs accumulate in float32: the reference on the same half inputs, to one rounding of the output."""
    torch.manual_seed(seq_len)
    inputs = make_inputs7(2, seq_len, 2, 32, dtype)
    state = prefix_state7(2, 2, 32)
    output, final = wkv7_cpu(*inputs, state)
    expected_output, expected_final = wkv7_reference(*inputs, state)
    assert output.dtype == dtype and final.dtype == torch.float32
    assert_close_rel(output, expected_output, TOL7[dtype], "output")
    assert_close_rel(final, expected_final, STATE_TOL7, "state")


@pytest.mark.parametrize("seq_len", [1, 40])
def test_float32_log_decay_beside_half_inputs(seq_len):
    """A half-precision model keeps log_w in float32 (the decay compounds over tokens): the dispatcher accepts it,
    and every path gives the reference's result on the same inputs."""
    torch.manual_seed(seq_len)
    r, log_w, k, v, a, b = make_inputs7(2, seq_len, 2, 32, torch.bfloat16)
    inputs = (r, log_w.float(), k, v, a, b)
    expected_output, expected_final = wkv7_reference(*inputs)
    for impl in ("cpu", "auto"):
        output, final = wkv7(*inputs, impl=impl)
        assert output.dtype == torch.bfloat16
        assert_close_rel(output, expected_output, TOL7[torch.bfloat16], f"{impl} output")
        assert_close_rel(final, expected_final, STATE_TOL7, f"{impl} state")
    with pytest.raises(ValueError, match="k must match r"):
        wkv7(r, log_w, k.float(), v, a, b)


@pytest.mark.parametrize("with_state", [False, True])
def test_cpu7_step_matches_reference(with_state):
    torch.manual_seed(3)
    inputs = make_inputs7(3, 1, 2, 64)
    state = prefix_state7(3, 2, 64) if with_state else None
    output, final = wkv7_cpu_step(*(x[:, 0] for x in inputs), state)  # (B, H, N) inputs
    check_against_float64(inputs, state, output.unsqueeze(1), final)


def test_cpu7_leaves_the_state_alone():
    torch.manual_seed(4)
    inputs = make_inputs7(1, 20, 2, 16)
    state = prefix_state7(1, 2, 16)
    before = state.clone()
    for seq_len in (1, 20):
        wkv7_cpu(*(x[:, :seq_len] for x in inputs), state)
    assert torch.equal(state, before)


# ---- gradients (training runs through the chunked path) -----------------------------------------

def test_cpu7_gradcheck_float64(monkeypatch):
    """Three chunks of two tokens (the last padded), with an incoming state: every input's gradient."""
    monkeypatch.setattr(cpu7, "CHUNK", 2)
    torch.manual_seed(5)
    inputs = tuple(x.double().requires_grad_() for x in make_inputs7(1, 5, 2, 4))
    state = prefix_state7(1, 2, 4).double().requires_grad_()
    assert torch.autograd.gradcheck(lambda *xs: wkv7_cpu(*xs), (*inputs, state), fast_mode=True)


def test_cpu7_gradients_match_reference():
    torch.manual_seed(6)
    inputs = tuple(x.double().requires_grad_() for x in make_inputs7(2, 45, 2, 16))
    state = prefix_state7(2, 2, 16).double().requires_grad_()
    weights = torch.randn(2, 45, 2, 16, dtype=torch.float64), torch.randn(2, 2, 16, 16, dtype=torch.float64)
    grads = {}
    for name, fn in (("cpu", wkv7_cpu), ("reference", wkv7_reference)):
        output, final = fn(*inputs, state)
        loss = (output * weights[0]).sum() + (final * weights[1]).sum()
        grads[name] = torch.autograd.grad(loss, (*inputs, state))
    for name, got, expected in zip(("r", "log_w", "k", "v", "a", "b", "state"), grads["cpu"], grads["reference"]):
        assert_close_rel(got, expected, 1e-10, f"d loss / d {name}")


# ---- the dispatcher -------------------------------------------------------------------------------

@pytest.mark.parametrize("impl", ["auto", "cpu", "reference"])
def test_wkv7_dispatch_on_cpu(impl):
    torch.manual_seed(7)
    inputs = make_inputs7(2, 11, 2, 16)
    state = prefix_state7(2, 2, 16)
    expected = (wkv7_reference if impl == "reference" else wkv7_cpu)(*inputs, state)
    with torch.enable_grad():
        inputs = tuple(x.requires_grad_() for x in inputs)  # auto: the chunked form wherever a gradient is wanted
        got = wkv7(*inputs, state, impl=impl)
    assert torch.equal(got[0], expected[0]) and torch.equal(got[1], expected[1])
    assert set(IMPLS7) == {"auto", "reference", "cpu", "cpp", "triton"}


def test_wkv7_triton_refuses_cpu_tensors():
    inputs = make_inputs7(1, 3, 1, 16)
    with pytest.raises(RuntimeError, match="CUDA only"):
        wkv7(*inputs, impl="triton")


def bad_calls():
    """(description, inputs, state, impl, exception, message fragment)."""
    good = make_inputs7(2, 5, 2, 16)
    state = torch.zeros(2, 2, 16, 16)

    def replace(i, x):
        return tuple(x if j == i else y for j, y in enumerate(good))
    return [
        ("unknown impl", good, None, "cuda", ValueError, "impl must be one of"),
        ("not a tensor", replace(0, [1.0]), None, "cpu", TypeError, "r must be a torch.Tensor"),
        ("3-D input", replace(2, good[2][0]), None, "cpu", ValueError, "k must be 4-D"),
        ("int input", replace(3, good[3].long()), None, "cpu", ValueError, "v dtype must be"),
        ("shape mismatch", replace(4, good[4][:, :4]), None, "cpu", ValueError, "a must match r"),
        ("dtype mismatch", replace(5, good[5].half()), None, "cpu", ValueError, "b must match r"),
        ("no tokens", tuple(x[:, :0] for x in good), None, "cpu", ValueError, "at least one token"),
        ("state shape", good, state[:, :1], "cpu", ValueError, r"state must have shape \(B, H, N, N\)"),
        ("state dtype", good, state.half(), "cpu", ValueError, "state must be float32"),
        ("state type", good, [state], "cpu", TypeError, "state must be a torch.Tensor"),
        ("float64 on triton", tuple(x.double() for x in good), None, "triton", RuntimeError, "CUDA only"),
    ]


@pytest.mark.parametrize("what, inputs, state, impl, error, message", bad_calls(), ids=[c[0] for c in bad_calls()])
def test_wkv7_rejects_bad_arguments(what, inputs, state, impl, error, message):
    with pytest.raises(error, match=message):
        wkv7(*inputs, state, impl=impl)
