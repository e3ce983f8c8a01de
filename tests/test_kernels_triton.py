"""Triton kernels (kernels/wkv_triton.py, kernels/triton_decode.py) against the float32 reference.

Under the interpreter: triton decides between interpreting and compiling when a @triton.jit function
is defined, i.e. when the kernel modules are first imported, from TRITON_INTERPRET. Another test in
this process may already have imported them compiled (or this process may own a GPU), so the
interpreter cases run in one child process started with TRITON_INTERPRET=1: the parent builds every
case's inputs, the child (`child_main`) calls the kernels and sends back what they returned and the
arguments they wrote into, and each test here checks one case. The same cases compiled on a GPU
(bfloat16 too) run in this process, marked gpu. Without a GPU, every kernel is still compiled ahead
of time for sm_90 by Triton's own compiler, which catches what the interpreter does not check.
"""
from __future__ import annotations

import importlib
import os
import subprocess
import sys
import traceback
import zlib
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from kernels.reference import initial_state

from .test_kernels_cpu import (LOOSE_TOL, OUTPUT_TOL, STATE_TOL, assert_state_close, float64_reference, make_inputs,
                               prefix_state)

ROOT = Path(__file__).resolve().parents[1]
LAYERS = 3  # state slices are taken from (B, C, LAYERS) tensors at layer 1, as the model's decode does
DTYPE_NAMES = {torch.float32: "float32", torch.float16: "float16", torch.bfloat16: "bfloat16"}


# ---- the child process ------------------------------------------------------------------------

def call(target: str, args: tuple):
    """Call "module:function" with args; returns (result, args) so that out-arguments come back too."""
    module, name = target.split(":")
    return getattr(importlib.import_module(module), name)(*args), args


def child_main(path_in: str, path_out: str) -> None:
    """In the child: run every call under the interpreter; a failing call sends back its traceback."""
    from kernels.wkv_triton import interpreted

    assert interpreted(), "the child must define the kernels under TRITON_INTERPRET=1"
    results = {}
    for name, (target, args) in torch.load(path_in, weights_only=False).items():
        try:
            results[name] = call(target, args)
        except Exception:
            results[name] = traceback.format_exc()
    torch.save(results, path_out)


def run_interpreted(calls: dict, directory: Path) -> dict:
    """{name: (target, args)} -> {name: (result, args) or a traceback string}, run in one child process."""
    pytest.importorskip("triton")
    path_in, path_out = directory / "calls.pt", directory / "results.pt"
    torch.save(calls, path_in)
    code = "import sys; from tests.test_kernels_triton import child_main; child_main(sys.argv[1], sys.argv[2])"
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    done = subprocess.run([sys.executable, "-c", code, str(path_in), str(path_out)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"interpreter child failed:\n{done.stdout}\n{done.stderr}"
    return torch.load(path_out, weights_only=False)


def unpack(outcome):
    if isinstance(outcome, str):
        pytest.fail(f"the kernel raised under the interpreter:\n{outcome}")
    return outcome


# ---- cases: (kind, shape...) -> (target, args), and the check of what came back -----------------

def seed_of(name: str) -> int:
    return zlib.crc32(name.encode())  # stable across processes, unlike hash()


def state_slices(batch: int, channels: int, state=None, fill: float = float("nan")):
    """Three (B, C, LAYERS) float32 tensors; layer 1 holds `state` (or the empty state), the rest `fill`."""
    full = [torch.full((batch, channels, LAYERS), fill) for _ in range(3)]
    for tensor, s in zip(full, state if state is not None else initial_state(batch, channels, torch.device("cpu"))):
        tensor[:, :, 1] = s
    return full


def make_prefill(seq_len, channels, batch, dtype, with_state):
    time_decay, time_first, key, value = make_inputs(batch, seq_len, channels, dtype)
    state = prefix_state(time_decay, time_first, batch, channels) if with_state else None
    return "kernels.wkv_triton:wkv_triton", (time_decay, time_first, key, value, state)


def check_prefill(args, result) -> None:
    time_decay, time_first, key, value, state = args
    output, final = result
    expected_output, expected_final = float64_reference(time_decay, time_first, key, value, state)
    assert output.dtype == key.dtype and output.shape == key.shape
    assert all(s.dtype == torch.float32 and s.shape == (key.shape[0], key.shape[2]) for s in final)
    torch.testing.assert_close(output.double(), expected_output.to(key.dtype).double(), **OUTPUT_TOL[key.dtype])
    # The kernel is the float32 loop itself, which drifts by ~3e-5 over a couple of hundred tokens.
    assert_state_close(final, expected_final, **(STATE_TOL if key.shape[1] <= 64 else LOOSE_TOL))


def make_wkv_step(channels, batch, dtype, with_state):
    time_decay, time_first, key, value = make_inputs(batch, 1, channels, dtype)
    receptance = torch.randn(batch, channels).to(dtype)  # (B, C)
    state = prefix_state(time_decay, time_first, batch, channels) if with_state else None
    state_in = state_slices(batch, channels, state)  # 3 x (B, C, L)
    state_out = [torch.full_like(s, float("nan")) for s in state_in]
    views = (tuple(s[:, :, 1] for s in state_in), tuple(s[:, :, 1] for s in state_out))
    return "kernels.triton_decode:wkv_step", (time_decay, time_first, key[:, 0], value[:, 0], receptance, *views, 0.5)


def layers_of(view: torch.Tensor) -> torch.Tensor:
    """The whole (B, C, LAYERS) buffer behind a layer-1 slice (also after a torch.save round trip)."""
    batch, channels = view.shape
    return view.as_strided((batch, channels, LAYERS), (channels * LAYERS, LAYERS, 1), view.storage_offset() - 1)


def check_wkv_step(args, result) -> None:
    time_decay, time_first, key, value, receptance, state_in, state_out, scale = args
    expected_wkv, expected_state = float64_reference(time_decay, time_first, key[:, None], value[:, None], state_in)
    expected = (receptance.double().sigmoid() * expected_wkv[:, 0] * scale).to(key.dtype)  # (B, C)
    assert result.dtype == key.dtype and result.shape == key.shape
    torch.testing.assert_close(result.double(), expected.double(), **OUTPUT_TOL[key.dtype])
    assert_state_close(state_out, expected_state, **STATE_TOL)
    for s in state_out:  # only layer 1 of the (B, C, L) buffers is written
        assert layers_of(s)[:, :, [0, 2]].isnan().all()


def make_ln_mix(hidden, batch, dtype, with_add):
    x, add = (torch.randn(batch, hidden).to(dtype) for _ in range(2))  # (B, H)
    weight, bias = (1 + 0.2 * torch.randn(hidden)).to(dtype), (0.2 * torch.randn(hidden)).to(dtype)  # (H,)
    mixes = tuple(torch.rand(hidden).to(dtype) for _ in range(2 if with_add else 3))  # FFN: 2, attention: 3
    shift_in = torch.randn(batch, hidden, LAYERS).to(dtype)  # (B, H, L)
    shift_out = torch.full_like(shift_in, float("nan"))
    return "kernels.triton_decode:ln_mix", (x, weight, bias, 1e-5, mixes, shift_in[:, :, 1], shift_out[:, :, 1],
                                            add if with_add else None)


def check_ln_mix(args, result) -> None:
    x, weight, bias, eps, mixes, shift_in, shift_out, add = args
    total = x if add is None else (x.double() + add.double()).to(x.dtype)  # (B, H), rounded as the model does
    normed = F.layer_norm(total.double(), total.shape[-1:], weight.double(), bias.double(), eps).to(x.dtype)  # (B, H)
    tol = OUTPUT_TOL[x.dtype]
    assert len(result) == 1 + len(mixes) and all(r.dtype == x.dtype and r.shape == x.shape for r in result)
    torch.testing.assert_close(result[0], total, rtol=0, atol=0)
    torch.testing.assert_close(shift_out.double(), normed.double(), **tol)
    assert layers_of(shift_out)[:, :, [0, 2]].isnan().all()
    for mix, mixed in zip(mixes, result[1:]):
        expected = shift_in.double() + mix.double() * (normed.double() - shift_in.double())  # lerp
        torch.testing.assert_close(mixed.double(), expected.to(x.dtype).double(), **tol)


def make_elementwise(kind, batch, width, dtype):
    tensors = tuple(torch.randn(batch, width).to(dtype) for _ in range(1 if kind == "relu_square" else 3))
    return f"kernels.triton_decode:{kind}", (*tensors, 0.25 if kind == "relu_square" else 0.5)


def check_elementwise(args, result) -> None:
    *tensors, scale = (a.double() if isinstance(a, torch.Tensor) else a for a in args)
    if len(tensors) == 1:
        expected = tensors[0].relu().square() * scale
    else:
        hidden, receptance, value = tensors
        expected = (hidden + receptance.sigmoid() * value) * scale
    dtype = args[0].dtype
    assert result.dtype == dtype and result.shape == args[0].shape
    torch.testing.assert_close(result.double(), expected.to(dtype).double(), **OUTPUT_TOL[dtype])


def cases(dtypes, seq_lens=(1, 11, 63), channels=(40, 96), batches=(1, 3)):
    """(kind, shape tuple) for every kernel; C = 40 is one masked block, C = 96 two (the second masked)."""
    out = []
    for dtype in dtypes:
        for c in channels:
            for b in batches:
                out += [("prefill", (t, c, b, dtype, s)) for t in seq_lens for s in (False, True)]
                out += [("wkv_step", (c, b, dtype, s)) for s in (False, True)]
                out += [("ln_mix", (c, b, dtype, a)) for a in (False, True)]
            out += [(kind, (3, 10 * c + 1, dtype)) for kind in ("relu_square", "gate_residual")]  # > 1024: 2 blocks
    return out


MAKERS = {"prefill": make_prefill, "wkv_step": make_wkv_step, "ln_mix": make_ln_mix,
          "relu_square": lambda *c: make_elementwise("relu_square", *c),
          "gate_residual": lambda *c: make_elementwise("gate_residual", *c)}
CHECKS = {"prefill": check_prefill, "wkv_step": check_wkv_step, "ln_mix": check_ln_mix,
          "relu_square": check_elementwise, "gate_residual": check_elementwise}


def case_id(kind, shape) -> str:
    return "-".join([kind] + [DTYPE_NAMES.get(x, str(x)) for x in shape])


def build(kind, shape):
    torch.manual_seed(seed_of(case_id(kind, shape)))
    return MAKERS[kind](*shape)


def params(case_list):
    return [pytest.param(kind, shape, id=case_id(kind, shape)) for kind, shape in case_list]


DEFAULT_CASES = cases((torch.float32, torch.float16))
SLOW_CASES = cases((torch.float32, torch.float16), seq_lens=(150,), channels=(300, 768), batches=(2,))
GPU_CASES = cases((torch.float32, torch.float16, torch.bfloat16)) + SLOW_CASES


def interpreted_results(case_list, directory: Path) -> dict:
    calls = {case_id(kind, shape): build(kind, shape) for kind, shape in case_list}
    return {name: (calls[name][1], outcome) for name, outcome in run_interpreted(calls, directory).items()}


@pytest.fixture(scope="module")
def interpreted(tmp_path_factory):
    return interpreted_results(DEFAULT_CASES, tmp_path_factory.mktemp("interpreter"))


@pytest.fixture(scope="module")
def interpreted_slow(tmp_path_factory):
    return interpreted_results(SLOW_CASES, tmp_path_factory.mktemp("interpreter_slow"))


# ---- the tests ----------------------------------------------------------------------------------

@pytest.mark.parametrize("kind, shape", params(DEFAULT_CASES))
def test_interpreted_kernel_matches_reference(kind, shape, interpreted):
    args, outcome = interpreted[case_id(kind, shape)]
    result, args_after = unpack(outcome)
    CHECKS[kind](args_after, result)


@pytest.mark.slow
@pytest.mark.parametrize("kind, shape", params(SLOW_CASES))
def test_interpreted_kernel_matches_reference_large(kind, shape, interpreted_slow):
    args, outcome = interpreted_slow[case_id(kind, shape)]
    result, args_after = unpack(outcome)
    CHECKS[kind](args_after, result)


def to_device(x, device):
    if isinstance(x, torch.Tensor):
        return x.to(device)
    if isinstance(x, (tuple, list)):
        return type(x)(to_device(y, device) for y in x)
    return x


def views_to(args, device):
    """Like to_device, but (B, C) views of (B, C, L) buffers stay views of buffers moved whole."""
    moved = {}

    def move(x):
        if isinstance(x, torch.Tensor) and x._base is not None:
            base = moved.setdefault(id(x._base), x._base.to(device))
            return base.as_strided(x.shape, x.stride(), x.storage_offset())
        if isinstance(x, (tuple, list)):
            return type(x)(move(y) for y in x)
        return to_device(x, device)
    return tuple(move(a) for a in args)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("kind, shape", params(GPU_CASES))
def test_compiled_kernel_matches_reference(kind, shape):
    pytest.importorskip("triton")
    target, args = build(kind, shape)
    result, args_after = call(target, views_to(args, "cuda"))
    CHECKS[kind](views_to(args_after, "cpu"), to_device(result, "cpu"))



# ---- compiled ahead of time for a GPU (Hopper, sm_90), which needs no GPU -------------------------

STATE_PTRS = ("num_in_ptr", "den_in_ptr", "max_in_ptr", "num_out_ptr", "den_out_ptr", "max_out_ptr")


def compile_cases(dt: str):
    """(kernel name, signature, constexprs, num_warps) as the launchers call them, tensors in dtype dt."""
    io, f32 = f"*{dt}", "*fp32"
    prefill = {"time_decay_ptr": f32, "time_first_ptr": f32, "key_ptr": io, "value_ptr": io, "out_ptr": io,
               **dict.fromkeys(STATE_PTRS, f32), "seq_len": "i32", "channels": "i32"}
    ln_mix = {**dict.fromkeys(("x_ptr", "add_ptr", "sum_ptr", "weight_ptr", "bias_ptr", "shift_in_ptr",
                               "shift_out_ptr"), io), "shift_stride_b": "i32", "shift_stride_c": "i32",
              **dict.fromkeys(("mix0_ptr", "mix1_ptr", "mix2_ptr", "out0_ptr", "out1_ptr", "out2_ptr"), io),
              "hidden": "i32", "eps": "fp32"}
    step = {"time_decay_ptr": f32, "time_first_ptr": f32, **dict.fromkeys(("key_ptr", "value_ptr", "receptance_ptr",
            "out_ptr"), io), **dict.fromkeys(STATE_PTRS, f32), "channels": "i32", "state_stride_b": "i32",
            "state_stride_c": "i32", "out_scale": "fp32"}
    return [
        ("kernels.wkv_triton:_wkv_forward_kernel", prefill, dict(HAS_STATE=False, BLOCK=64), 2),
        ("kernels.wkv_triton:_wkv_forward_kernel", prefill, dict(HAS_STATE=True, BLOCK=64), 2),
        ("kernels.triton_decode:_ln_mix_kernel", ln_mix, dict(HAS_ADD=False, N_MIX=3, BLOCK=4096), 16),
        ("kernels.triton_decode:_ln_mix_kernel", ln_mix, dict(HAS_ADD=True, N_MIX=2, BLOCK=1024), 4),
        ("kernels.triton_decode:_wkv_step_kernel", step, dict(BLOCK=256), 4),
        ("kernels.triton_decode:_relu_square_kernel", {"x_ptr": io, "out_ptr": io, "numel": "i32", "scale": "fp32"},
         dict(BLOCK=1024), 4),
        ("kernels.triton_decode:_gate_residual_kernel", {**dict.fromkeys(("hidden_ptr", "receptance_ptr", "value_ptr",
         "out_ptr"), io), "numel": "i32", "scale": "fp32"}, dict(BLOCK=1024), 4),
    ]


@pytest.mark.parametrize("dt", ["fp32", "fp16", "bf16"])
def test_kernels_compile_for_a_gpu_ahead_of_time(dt, tmp_path, monkeypatch):
    """What the interpreter cannot see (types across loop iterations and branches, constexpr use, pointer
    types) fails here: Triton's own compiler, down to a cubin with the bundled ptxas, on this CPU."""
    triton = pytest.importorskip("triton")
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    from kernels.wkv_triton import interpreted

    if interpreted():
        pytest.skip("this process defined the kernels under TRITON_INTERPRET=1")
    monkeypatch.setenv("TRITON_CACHE_DIR", str(tmp_path))  # compile for real, not from a cache
    for target, signature, constexprs, num_warps in compile_cases(dt):
        module, name = target.split(":")
        source = ASTSource(getattr(importlib.import_module(module), name),
                           {**signature, **dict.fromkeys(constexprs, "constexpr")}, constexprs=constexprs)
        kernel = triton.compile(source, target=GPUTarget("cuda", 90, 32), options={"num_warps": num_warps})
        assert kernel.asm["cubin"], f"{name} {constexprs}: no cubin"
