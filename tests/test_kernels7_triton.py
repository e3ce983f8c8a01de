"""RWKV-7 Triton kernels (kernels/rwkv7/wkv7_triton.py) against the float64 reference.

As in tests/test_kernels_triton.py (whose child process this reuses): the interpreter cases run in one child
process started with TRITON_INTERPRET=1, the same cases compiled on a GPU run here marked gpu, and without a GPU
the kernel is compiled ahead of time for sm_90 by Triton's own compiler.
"""
from __future__ import annotations

import importlib
from pathlib import Path

import pytest
import torch

from .test_kernels7_cpu import STATE_TOL7, TOL7, assert_close_rel, float64_reference7, make_inputs7, prefix_state7
from .test_kernels_triton import DTYPE_NAMES, call, run_interpreted, seed_of, to_device, unpack

LAYERS = 3  # decode-step states are layer 1 of a (B, LAYERS, H, N, N) buffer, as a model's stacked state is


def make_prefill(seq_len, batch, heads, size, dtype, with_state):
    inputs = make_inputs7(batch, seq_len, heads, size, dtype)
    state = prefix_state7(batch, heads, size) if with_state else None
    return "kernels.rwkv7.wkv7_triton:wkv7_triton", (*inputs, state)


def check_prefill(args, result) -> None:
    *inputs, state = args
    output, final = result
    expected_output, expected_final = float64_reference7(inputs, state)
    r = inputs[0]
    assert output.dtype == r.dtype and output.shape == r.shape
    assert final.dtype == torch.float32 and final.shape == (r.shape[0], r.shape[2], r.shape[3], r.shape[3])
    assert_close_rel(output, expected_output, TOL7[r.dtype], "output")
    assert_close_rel(final, expected_final, STATE_TOL7, "state")


def make_step(batch, heads, size, dtype, in_place):
    inputs = tuple(x[:, 0] for x in make_inputs7(batch, 1, heads, size, dtype))  # (B, H, N) each
    buffer = torch.full((batch, LAYERS, heads, size, size), float("nan"))  # (B, L, H, N, N)
    buffer[:, 1] = prefix_state7(batch, heads, size)
    state_out = buffer[:, 1] if in_place else torch.full_like(buffer, float("nan"))[:, 1]
    return "kernels.rwkv7.wkv7_triton:wkv7_step_triton", (*inputs, buffer[:, 1], state_out)


def layers_of(view: torch.Tensor) -> torch.Tensor:
    """The (B, LAYERS, H, N, N) buffer behind a layer-1 view (also after a torch.save round trip)."""
    batch, heads, size, _ = view.shape
    block = heads * size * size  # one layer of one row
    return view.as_strided((batch, LAYERS, heads, size, size), (view.stride(0), block, size * size, size, 1),
                           view.storage_offset() - block)


def check_step(args, result, state_before) -> None:
    *inputs, state_in, state_out = args
    output, returned = result
    expected_output, expected_final = float64_reference7(tuple(x[:, None] for x in inputs), state_before)
    r = inputs[0]
    assert output.dtype == r.dtype and output.shape == r.shape
    assert_close_rel(output, expected_output[:, 0], TOL7[r.dtype], "output")
    assert_close_rel(returned, expected_final, STATE_TOL7, "returned state")
    assert_close_rel(state_out, expected_final, STATE_TOL7, "state_out")
    assert layers_of(state_out)[:, [0, 2]].isnan().all(), "only layer 1 of the buffer is written"


def cases(dtypes, prefill_shapes, step_shapes):
    out = []
    for dtype in dtypes:
        out += [("prefill", (t, b, h, n, dtype, s)) for t, b, h, n in prefill_shapes for s in (False, True)]
        out += [("step", (b, h, n, dtype, p)) for b, h, n in step_shapes for p in (False, True)]
    return out


# N = 40 is one masked key block and three value blocks, the last masked; N = 16 one block each way.
DEFAULT_CASES = cases((torch.float32, torch.float16),
                      [(1, 1, 1, 64), (11, 3, 2, 16), (11, 2, 1, 40), (63, 1, 2, 16)], [(1, 2, 64), (3, 1, 40)])
SLOW_CASES = cases((torch.float32, torch.bfloat16), [(130, 2, 3, 64), (63, 3, 2, 64)], [(4, 12, 64)])
GPU_CASES = cases((torch.float32, torch.float16, torch.bfloat16),
                  [(1, 1, 1, 64), (11, 3, 2, 16), (11, 2, 1, 40), (63, 1, 2, 16), (130, 2, 3, 64), (1000, 2, 12, 64)],
                  [(1, 2, 64), (3, 1, 40), (8, 12, 64)])


def case_id(kind, shape) -> str:
    return "-".join([kind] + [DTYPE_NAMES.get(x, str(x)) for x in shape])


def build(kind, shape):
    torch.manual_seed(seed_of(case_id(kind, shape)))
    return (make_prefill if kind == "prefill" else make_step)(*shape)


def check(kind, args_before, args_after, result) -> None:
    if kind == "prefill":
        check_prefill(args_after, result)
    else:
        check_step(args_after, result, state_before=args_before[-2].clone())


def params(case_list):
    return [pytest.param(kind, shape, id=case_id(kind, shape)) for kind, shape in case_list]


def interpreted_results(case_list, directory: Path) -> dict:
    calls = {case_id(kind, shape): build(kind, shape) for kind, shape in case_list}
    before = {name: tuple(x.clone() if isinstance(x, torch.Tensor) else x for x in args)
              for name, (_, args) in calls.items()}
    return {name: (before[name], outcome) for name, outcome in run_interpreted(calls, directory).items()}


@pytest.fixture(scope="module")
def interpreted(tmp_path_factory):
    return interpreted_results(DEFAULT_CASES, tmp_path_factory.mktemp("interpreter7"))


@pytest.fixture(scope="module")
def interpreted_slow(tmp_path_factory):
    return interpreted_results(SLOW_CASES, tmp_path_factory.mktemp("interpreter7_slow"))


@pytest.mark.parametrize("kind, shape", params(DEFAULT_CASES))
def test_interpreted_wkv7_matches_reference(kind, shape, interpreted):
    before, outcome = interpreted[case_id(kind, shape)]
    result, args_after = unpack(outcome)
    check(kind, before, args_after, result)


@pytest.mark.slow
@pytest.mark.parametrize("kind, shape", params(SLOW_CASES))
def test_interpreted_wkv7_matches_reference_large(kind, shape, interpreted_slow):
    before, outcome = interpreted_slow[case_id(kind, shape)]
    result, args_after = unpack(outcome)
    check(kind, before, args_after, result)


def views_to(args, device):
    """Like to_device, but views of one (B, L, H, N, N) buffer stay views of that buffer moved whole."""
    moved = {}

    def move(x):
        if isinstance(x, torch.Tensor) and x._base is not None:
            base = moved.setdefault(id(x._base), x._base.to(device))
            return base.as_strided(x.shape, x.stride(), x.storage_offset())
        return to_device(x, device)
    return tuple(move(a) for a in args)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("kind, shape", params(GPU_CASES))
def test_compiled_wkv7_matches_reference(kind, shape):
    pytest.importorskip("triton")
    target, args = build(kind, shape)
    before = tuple(x.clone() if isinstance(x, torch.Tensor) else x for x in args)
    result, args_after = call(target, views_to(args, "cuda"))
    check(kind, before, views_to(args_after, "cpu"), to_device(result, "cpu"))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_wkv7_auto_picks_triton_on_cuda():
    pytest.importorskip("triton")
    from kernels.rwkv7 import wkv7, wkv7_cpu

    inputs = tuple(x.cuda() for x in make_inputs7(2, 50, 2, 64))
    got, expected = wkv7(*inputs), wkv7_cpu(*inputs)
    assert_close_rel(got[0], expected[0], TOL7[torch.float32], "output")
    assert_close_rel(got[1], expected[1], STATE_TOL7, "state")


@pytest.mark.parametrize("dt", ["fp32", "fp16", "bf16"])
def test_wkv7_kernel_compiles_for_a_gpu_ahead_of_time(dt, tmp_path, monkeypatch):
    """Triton's own compiler, down to a cubin for sm_90 with the bundled ptxas, on this CPU."""
    triton = pytest.importorskip("triton")
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    from kernels.wkv_triton import interpreted

    if interpreted():
        pytest.skip("this process defined the kernels under TRITON_INTERPRET=1")
    module = importlib.import_module("kernels.rwkv7.wkv7_triton")
    monkeypatch.setenv("TRITON_CACHE_DIR", str(tmp_path))  # compile for real, not from a cache
    io, f32 = f"*{dt}", "*fp32"
    signature = {**dict.fromkeys(("r_ptr", "log_w_ptr", "k_ptr", "v_ptr", "a_ptr", "b_ptr", "out_ptr"), io),
                 "state_in_ptr": f32, "in_stride_b": "i32", "in_stride_h": "i32",
                 "state_out_ptr": f32, "out_stride_b": "i32", "out_stride_h": "i32",
                 "seq_len": "i32", "heads": "i32", "size": "i32"}
    for has_state in (False, True):
        constexprs = dict(HAS_STATE=has_state, BLOCK_V=module.BLOCK_V, BLOCK_K=64)
        source = ASTSource(module._wkv7_kernel, {**signature, **dict.fromkeys(constexprs, "constexpr")},
                           constexprs=constexprs)
        kernel = triton.compile(source, target=GPUTarget("cuda", 90, 32), options={"num_warps": module.NUM_WARPS})
        assert kernel.asm["cubin"], f"_wkv7_kernel {constexprs}: no cubin"
