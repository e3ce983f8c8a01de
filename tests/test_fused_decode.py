"""Fused single-token decode (rwkv_app/models/rwkv4/fused_decode.py and cuda_graph.py) against the per-op path.

On CPU the fused step runs under the Triton interpreter, in a child process (see test_kernels_triton.py
for why): a tiny model's token-by-token logits and states must equal the per-op path's within the
dtype's tolerance, with rescale_every in play and the caller's state untouched. On a GPU (marked gpu)
the same through model.forward: per-op vs fused eager vs CUDA graph.
"""
from __future__ import annotations

import subprocess
import sys
import warnings

import pytest
import torch

import kernels
from rwkv_app import InputError, RwkvConfig, RwkvForCausalLM
from rwkv_app.models.rwkv4 import cuda_graph, fused_decode
from rwkv_app.models.rwkv4.state import clone_state

from .conftest import randomize, tiny_config
from .test_kernels_cpu import assert_state_close
from .test_kernels_triton import ROOT, run_interpreted, unpack

# Rounding differs between the paths (the kernels round once per kernel, torch after every op).
TOL = {torch.float32: dict(rtol=1e-4, atol=1e-4), torch.float16: dict(rtol=1e-2, atol=1e-2),
       torch.bfloat16: dict(rtol=5e-2, atol=5e-2)}
# Awkward on purpose: hidden 40 (masked layer norm), attention 48 != hidden, 3 layers with rescale_every=2
# (scales 1, 1, 0.5: both out_scale values and both residual scales), batch 3.
CONFIG = dict(hidden_size=40, attention_hidden_size=48, intermediate_size=96, num_hidden_layers=3, rescale_every=2)
BATCH, PROMPT, STEPS = 3, 3, 3
INTERPRETED_DTYPES = [torch.float32, torch.float16]


def tiny_model(dtype: torch.dtype) -> RwkvForCausalLM:
    torch.manual_seed(0)
    return randomize(RwkvForCausalLM(tiny_config(**CONFIG)), seed=0).eval().to(dtype)


def per_op_steps(model, tokens, state):
    """The plain path, one token at a time: (logits per step, final state)."""
    logits = []
    for t in range(tokens.size(1)):
        out = model(tokens[:, t:t + 1], state=state)
        logits.append(out.logits)
        state = out.state
    return logits, state


def fused_steps(state_dict, config: dict, dtype, tokens, state):
    """Runs in the interpreter child: the eager fused step, token by token, from `state`."""
    model = RwkvForCausalLM(RwkvConfig(**config))
    model.load_state_dict(state_dict)
    model = model.eval().to(dtype)
    plan = fused_decode.build_plan(model)
    logits = []
    with torch.no_grad():
        for t in range(tokens.size(1)):
            step_logits, state = fused_decode.eager_step(plan, tokens[:, t:t + 1], state)
            logits.append(step_logits)
    weights_after = {k: v.to(torch.float32) for k, v in model.state_dict().items()}
    return logits, state, weights_after


def prompt_and_steps(model):
    tokens = torch.randint(0, model.config.vocab_size, (BATCH, PROMPT + STEPS), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        state = model(tokens[:, :PROMPT]).state  # (B, C, L) x 5
    return state, tokens[:, PROMPT:]


@pytest.fixture(scope="module")
def interpreted(tmp_path_factory):
    """Both dtypes' fused runs in one interpreter child: {dtype name: ((logits, state, weights), args)}."""
    calls = {}
    for dtype in INTERPRETED_DTYPES:
        model = tiny_model(dtype)
        state, steps = prompt_and_steps(model)
        state_dict = {k: v.float() for k, v in model.state_dict().items()}
        config = {k: v for k, v in model.config.to_dict().items() if k in RwkvConfig.__dataclass_fields__}
        calls[str(dtype)] = ("tests.test_fused_decode:fused_steps", (state_dict, config, dtype, steps, state))
    return run_interpreted(calls, tmp_path_factory.mktemp("fused"))


@pytest.mark.parametrize("dtype", INTERPRETED_DTYPES)
def test_interpreted_fused_decode_matches_per_op_path(dtype, interpreted):
    model = tiny_model(dtype)
    state, steps = prompt_and_steps(model)
    with torch.no_grad():
        expected_logits, expected_state = per_op_steps(model, steps, state)
    (logits, final_state, weights_after), args_after = unpack(interpreted[str(dtype)])
    for got, expected in zip(logits, expected_logits, strict=True):
        assert got.dtype == dtype and got.shape == (BATCH, 1, model.config.vocab_size)
        torch.testing.assert_close(got.float(), expected.float(), **TOL[dtype])
    assert [s.dtype for s in final_state] == [s.dtype for s in expected_state]
    for got, expected in zip(final_state[:2], expected_state[:2]):  # token shifts, model dtype
        torch.testing.assert_close(got.float(), expected.float(), **TOL[dtype])
    assert_state_close(final_state[2:], expected_state[2:], **TOL[dtype])
    assert all(torch.equal(a, b) for a, b in zip(args_after[4], state))  # the caller's state was only read
    weights = {k: v.float() for k, v in model.state_dict().items()}
    assert all(torch.equal(weights_after[k], v) for k, v in weights.items())  # rescaling never touches weights


def test_cpu_forward_never_takes_the_fused_path(tiny_lm, monkeypatch):
    model = tiny_lm()

    def fail(*args):
        raise AssertionError("the fused path ran on CPU")
    monkeypatch.setattr(cuda_graph, "causal_lm_step", fail)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("error")
        state = model(torch.tensor([[1, 2]])).state
        out = model(torch.tensor([[3]]), state=state)
    assert out.logits.shape == (1, 1, 97)
    assert not fused_decode.applies(model, torch.tensor([[3]]), None, state, None, None, None)


def test_fused_path_checks_token_ids_like_the_per_op_path(tiny_lm):
    model = tiny_lm()
    assert torch.equal(fused_decode.checked_ids(model, torch.tensor([[3], [96]])), torch.tensor([[3], [96]]))
    for bad in (torch.tensor([[97]]), torch.tensor([[-1]]), torch.tensor([[1.0]]), torch.zeros(0, 1, dtype=torch.long)):
        with pytest.raises(InputError) as fused_error:
            fused_decode.checked_ids(model, bad)
        with pytest.raises(InputError) as per_op_error:
            model.rwkv._check_ids(bad)
        assert str(fused_error.value) == str(per_op_error.value)


def test_missing_triton_means_the_cpu_path_quietly(monkeypatch):
    monkeypatch.setitem(sys.modules, "triton", None)  # what `import triton` sees where it is not installed
    kernels._triton_impl.cache_clear()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            assert not kernels.triton_available()
            key = torch.randn(2, 5, 8)  # (B, T, C)
            output, _ = kernels.wkv(torch.zeros(8), torch.zeros(8), key, key)
        assert output.shape == (2, 5, 8)
    finally:
        kernels._triton_impl.cache_clear()


def test_imports_have_no_side_effects():
    """The kernels and the model layer import neither triton nor gradio (nor, for kernels/, yaml), and a
    CPU decode step does not import triton either."""
    code = (
        "import sys, torch, kernels\n"
        "assert 'yaml' not in sys.modules\n"
        "from rwkv_app import RwkvForCausalLM\nfrom rwkv_app.models.rwkv4 import fused_decode, cuda_graph\n"
        "from tests.conftest import tiny_config\n"
        "model = RwkvForCausalLM(tiny_config()).eval()\n"
        "with torch.no_grad():\n"
        "    model(torch.tensor([[1]]), state=model(torch.tensor([[2, 3]])).state)\n"
        "print(sorted(m for m in ('triton', 'gradio') if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-W", "error", "-c", code], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


# ---- on a GPU: through model.forward, per-op vs fused vs CUDA graph ------------------------------

needs_gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def cuda_steps(model, mode: str, tokens, state):
    model.cuda_decode = mode
    saved = clone_state(state)
    logits, final = per_op_steps(model, tokens, state)
    assert all(torch.equal(a, b) for a, b in zip(saved, state))  # forward never writes the caller's state
    return logits, final


@pytest.mark.gpu
@needs_gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("mode", ["fused", "graph"])
def test_gpu_decode_matches_per_op_path(mode, batch, dtype):
    pytest.importorskip("triton")
    model = tiny_model(dtype).cuda()
    tokens = torch.randint(0, model.config.vocab_size, (batch, PROMPT + 2 * STEPS), device="cuda")
    with torch.inference_mode():
        state = model(tokens[:, :PROMPT]).state
        expected_logits, expected_state = cuda_steps(model, "ops", tokens[:, PROMPT:], state)
        logits, final_state = cuda_steps(model, mode, tokens[:, PROMPT:], state)
    for got, expected in zip(logits, expected_logits):
        torch.testing.assert_close(got.float(), expected.float(), **TOL[dtype])
    for got, expected in zip(final_state[:2], expected_state[:2]):
        torch.testing.assert_close(got.float(), expected.float(), **TOL[dtype])
    assert_state_close(final_state[2:], expected_state[2:], **TOL[dtype])
    if mode == "graph":
        assert fused_decode.plan_for(model).graphs[batch] is not None


@pytest.mark.gpu
@needs_gpu
def test_gpu_graph_outputs_are_fresh_and_capture_failure_falls_back(monkeypatch):
    pytest.importorskip("triton")


    model = tiny_model(torch.float32).cuda()
    tokens = torch.randint(0, 97, (2, 4), device="cuda")
    with torch.no_grad():
        state = model(tokens[:, :2]).state
        first = model(tokens[:, 2:3], state=state)
        kept = clone_state(first.state)
        second = model(tokens[:, 3:4], state=first.state)  # the graph's static buffers are not handed out
        assert all(torch.equal(a, b) for a, b in zip(first.state, kept))
        assert not any(a.data_ptr() == b.data_ptr() for a, b in zip(first.state, second.state))
        torch.testing.assert_close(model(tokens[:, 2:3], state=state).logits, first.logits, rtol=0, atol=0)

        def broken(self, plan, batch):
            raise RuntimeError("capture not supported here")
        monkeypatch.setattr(cuda_graph.GraphedStep, "__init__", broken)
        fused_decode.plan_for(model).graphs.clear()  # captured again, now failing
        with pytest.warns(RuntimeWarning, match="CUDA graph capture failed"):
            fallback = model(tokens[:, 2:3], state=state)
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # once per (model, batch): no warning spam
            model(tokens[:, 2:3], state=state)
    torch.testing.assert_close(fallback.logits, first.logits, rtol=1e-5, atol=1e-5)


@pytest.mark.gpu
@needs_gpu
def test_gpu_generate_matches_cpu_greedy():
    model = tiny_model(torch.float32)
    prompt = torch.randint(0, 97, (2, 5), generator=torch.Generator().manual_seed(3))
    cpu_tokens = model.generate(prompt, max_new_tokens=8, eos_token_id=None)
    gpu_tokens = model.cuda().generate(prompt.cuda(), max_new_tokens=8, eos_token_id=None)
    assert torch.equal(gpu_tokens.cpu(), cpu_tokens)


# ---- the GPU check command, where there is no GPU ---------------------------------------------

@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU: the command would run")
def test_gpu_bench_without_a_gpu_says_so_and_renders_the_placeholder(tmp_path, capsys):
    from benchmarks.__main__ import main
    from benchmarks.gpu import NOT_MEASURED, GpuBenchSettings, row_specs

    out = tmp_path / "BENCHMARKS.md"
    assert main(["gpu", "--out", str(out)]) == 2
    assert capsys.readouterr().err.strip().count("\n") == 0 and not out.exists()  # one line, nothing written
    assert main(["gpu", "--placeholder", "--out", str(out)]) == 0
    rows = [line for line in out.read_text().splitlines() if line.startswith("| ") and not line.startswith("| check")]
    assert len(rows) == len(row_specs(GpuBenchSettings())) and all(NOT_MEASURED in row for row in rows)
