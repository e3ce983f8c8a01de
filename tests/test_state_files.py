"""State files: an RWKV-Runner-style RWKV-7 `time_state` file starts generation exactly as BlinkDL's code does
with it; export then import is bit for bit (both families); mixing; hostile files are refused with a named reason."""
import json
import os
import struct
import subprocess
import sys

import pytest
import torch
from safetensors.torch import save_file

from rwkv_app.errors import CheckpointError, InputError
from rwkv_app.models.state_files import load_state_file, mix_states, save_state_file

from .rwkv7_helpers import REPO_ROOT, save_pth, tiny_model7

PROMPT = [5, 17, 90, 42, 9, 3]  # inside both tiny vocabularies (97 and 300)


def assert_close_relative(actual: torch.Tensor, expected: torch.Tensor, rtol: float) -> None:
    scale = expected.abs().max().item()
    torch.testing.assert_close(actual, expected, rtol=rtol, atol=rtol * scale)

# RWKV-Runner / ChatRWKV's way of starting from a state file, on BlinkDL's RWKV_x070 (the rwkv pip package):
# state[i*3+1] = time_state.transpose(1, 2), token shifts zero; then the prompt's logits token by token.
RUNNER_SCRIPT = r"""
import json, os, sys
os.environ["RWKV_V7_ON"] = "1"; os.environ["RWKV_JIT_ON"] = "1"; os.environ["RWKV_CUDA_ON"] = "0"
import torch
from rwkv.model import RWKV

job = json.loads(sys.argv[1])
model = RWKV(job["model"], strategy="cpu fp32")
state_raw = torch.load(job["state"], weights_only=True)
state = model.generate_zero_state()
for i in range(model.n_layer):
    state[i*3+1] = state_raw[f'blocks.{i}.att.time_state'].transpose(1,2).to(dtype=torch.float).contiguous()
steps = []
for token in job["prompt"]:
    out, state = model.forward([token], state)
    steps.append(out.float())
torch.save({"steps": torch.stack(steps)}, job["out"])
"""


def runner_reference(pth, state_path, prompt, out):
    job = json.dumps({"model": str(pth.with_suffix("")), "state": str(state_path), "prompt": prompt, "out": str(out)})
    done = subprocess.run([sys.executable, "-c", RUNNER_SCRIPT, job], capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, PYTHONPATH=str(REPO_ROOT)))
    assert done.returncode == 0, done.stderr[-3000:]
    return torch.load(out, weights_only=True)["steps"]


def runner_state_file(config, path, seed=1):
    """A state-tuning file as RWKV-PEFT saves it: {blocks.{i}.att.time_state: (H, N, N)}, torch.save (bf16 there;
    float32 here), matrices deliberately not symmetric so the orientation shows."""
    generator = torch.Generator().manual_seed(seed)
    H, N = config.num_heads, config.head_dim
    tensors = {f"blocks.{i}.att.time_state": torch.randn(H, N, N, generator=generator) * 2.0
               for i in range(config.num_hidden_layers)}
    torch.save(tensors, path)
    return tensors


@torch.no_grad()
def logits_from(model, state, prompt):
    steps = []
    for token in prompt:
        out = model(torch.tensor([[token]]), state=state)
        state = out.state
        steps.append(out.logits[0, -1])
    return torch.stack(steps)


@torch.no_grad()
def test_runner_state_file_starts_generation_as_blinkdl_does(tmp_path):
    model = tiny_model7(seed=3)
    pth = save_pth(model, tmp_path / "tiny-x070.pth")
    tensors = runner_state_file(model.config, tmp_path / "persona.pth")
    reference = runner_reference(pth, tmp_path / "persona.pth", PROMPT, tmp_path / "ref.pt")
    state = load_state_file(tmp_path / "persona.pth", model)
    assert state[2].dtype == torch.float32 and not state[0].any() and not state[1].any()  # shifts zero
    assert torch.equal(state[2][0, 1, 0], tensors["blocks.1.att.time_state"][0].T)  # [value, key]
    ours = logits_from(model, state, PROMPT)
    assert_close_relative(ours, reference, 1e-4)
    plain = logits_from(model, None, PROMPT)
    assert (ours[0] - plain[0]).abs().max() > 0.1  # the state changes what the model says
    flipped = [s.clone() for s in state]
    flipped[2] = flipped[2].transpose(-1, -2)
    assert (logits_from(model, flipped, PROMPT)[0] - reference[0]).abs().max() > 1e-2  # orientation matters


@torch.no_grad()
@pytest.mark.parametrize("suffix", [".safetensors", ".state", ".pth"])
def test_rwkv7_export_then_import_is_bit_for_bit(tmp_path, suffix):
    model = tiny_model7(seed=2)
    state = model(torch.tensor([PROMPT])).state
    path = save_state_file(state, model, tmp_path / f"node{suffix}")
    again = load_state_file(path, model)
    assert all(torch.equal(a, b) and a.dtype == b.dtype for a, b in zip(state, again))
    assert torch.equal(logits_from(model, again, PROMPT[:2]), logits_from(model, state, PROMPT[:2]))


@torch.no_grad()
def test_rwkv7_runner_compatible_export_has_only_time_state(tmp_path):
    model = tiny_model7(seed=2)
    state = model(torch.tensor([PROMPT])).state
    path = save_state_file(state, model, tmp_path / "runner.pth", token_shifts=False)
    saved = torch.load(path, weights_only=True)
    assert sorted(saved) == [f"blocks.{i}.att.time_state" for i in range(model.config.num_hidden_layers)]
    assert torch.equal(saved["blocks.0.att.time_state"], state[2][0, 0].transpose(1, 2))
    again = load_state_file(path, model)
    assert torch.equal(again[2], state[2]) and not again[0].any() and not again[1].any()


@torch.no_grad()
@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_rwkv4_export_then_import_is_bit_for_bit(tmp_path, tiny_lm, suffix):
    model = tiny_lm(seed=1)
    state = model(torch.tensor([PROMPT])).state
    path = save_state_file(state, model, tmp_path / f"rwkv4{suffix}")
    again = load_state_file(path, model)
    assert all(torch.equal(a, b) and a.dtype == b.dtype for a, b in zip(state, again))
    names = set(torch.load(path, weights_only=True) if suffix == ".pth" else {})
    assert not names or {"blocks.3.att.wkv_max", "blocks.0.ffn.token_shift"} <= names
    fresh = load_state_file(save_state_file(model(torch.tensor([[1]])).state, model, tmp_path / "x.pth"), model)
    assert fresh[4].shape == state[4].shape


@torch.no_grad()
def test_mixing_rwkv7_states_is_a_weighted_sum(tmp_path):
    model = tiny_model7(seed=2)
    a, b = model(torch.tensor([PROMPT])).state, model(torch.tensor([[7, 8, 9]])).state
    mixed = mix_states([a, b], [0.25, 0.75], model)
    for x, y, m in zip(a, b, mixed):
        torch.testing.assert_close(m, 0.25 * x + 0.75 * y)
    assert all(torch.equal(m, x) for m, x in zip(mix_states([a, b], [1.0, 0.0], model), a))
    with pytest.raises(InputError, match="one weight per state"):
        mix_states([a, b], [1.0], model)
    with pytest.raises(InputError, match="finite, >= 0"):
        mix_states([a, b], [float("nan"), 1.0], model)


@torch.no_grad()
def test_mixing_rwkv4_states_adds_the_wkv_sums_in_the_real_domain(tiny_lm):
    model = tiny_lm(seed=1)
    a, b = model(torch.tensor([PROMPT])).state, model(torch.tensor([[7, 8, 9, 10]])).state
    mixed = mix_states([a, b], [0.5, 0.5], model)
    real = lambda s, k: s[k] * torch.exp(s[4])  # num or den as the plain weighted sum of exp(k) terms
    for k in (2, 3):
        torch.testing.assert_close(real(mixed, k), 0.5 * real(a, k) + 0.5 * real(b, k), rtol=1e-5, atol=0)
    torch.testing.assert_close(mix_states([a, a], [0.3, 0.7], model)[2], a[2])
    assert torch.isfinite(model(torch.tensor([[3]]), state=mixed).logits).all()


class Exploit:
    def __reduce__(self):
        return (os.system, ("touch /tmp/rwkv_state_file_pwned",))


def hostile_files(tmp_path, model):
    """(file, the phrase its refusal must contain) for an RWKV-7 model of 3 layers x 2 heads x 64."""
    good = {f"blocks.{i}.att.time_state": torch.zeros(2, 64, 64) for i in range(3)}
    cases = []

    def add(name, tensors, phrase, saver=torch.save):
        path = tmp_path / name
        saver(tensors, path) if saver is torch.save else saver(tensors, str(path))
        cases.append((path, phrase))

    add("pickle.pth", {"blocks.0.att.time_state": Exploit()}, "only tensors are loaded")
    add("note.pth", {**good, "note": "hello"}, "not a tensor")
    add("list.pth", [torch.zeros(2, 64, 64)], "not a dict of tensors")
    add("layers.pth", {k: v for k, v in good.items() if "2." not in k}, "2 layers")
    add("heads.pth", {k: torch.zeros(4, 64, 64) for k in good}, "4 heads but the model has 2")
    add("size.pth", {k: torch.zeros(4, 32, 32) for k in good},
        "4 heads but the model has 2 and head size 32 but the model's is 64")
    add("size2.pth", {k: torch.zeros(2, 32, 32) for k in good}, "head size 32 but the model's is 64 (shape")
    add("extra.safetensors", {**good, "blocks.0.att.other": torch.zeros(3)}, "unexpected keys ['blocks.0.att.other']",
        save_file)
    add("int.safetensors", {k: torch.zeros(2, 64, 64, dtype=torch.int32) for k in good}, "floating point", save_file)
    nan = dict(good, **{"blocks.1.att.time_state": torch.full((2, 64, 64), float("nan"))})
    add("nan.safetensors", nan, "NaN or infinite", save_file)
    add("shift.safetensors", {**good, "blocks.0.ffn.token_shift": torch.zeros(5)}, "expected (128,)", save_file)
    whole = tmp_path / "whole.safetensors"
    save_file(good, str(whole))
    (tmp_path / "cut.safetensors").write_bytes(whole.read_bytes()[:5000])
    cases.append((tmp_path / "cut.safetensors", "truncated"))
    (tmp_path / "cut.pth").write_bytes((tmp_path / "note.pth").read_bytes()[:3000])
    cases.append((tmp_path / "cut.pth", "cannot read state file"))
    (tmp_path / "header.state").write_bytes(struct.pack("<Q", 1 << 40) + b"{}")
    cases.append((tmp_path / "header.state", "not a valid safetensors file"))
    (tmp_path / "huge.pth").write_bytes(b"\0" * (8 << 20))
    cases.append((tmp_path / "huge.pth", "too large"))
    (tmp_path / "model.bin").write_bytes(b"x")
    cases.append((tmp_path / "model.bin", "unsupported state file"))
    return cases


def test_hostile_and_mismatched_files_are_refused_by_name(tmp_path):
    model = tiny_model7(seed=0, num_hidden_layers=3, hidden_size=128)
    marker = "/tmp/rwkv_state_file_pwned"
    if os.path.exists(marker):
        os.remove(marker)
    for path, phrase in hostile_files(tmp_path, model):
        with pytest.raises(CheckpointError) as caught:
            load_state_file(path, model)
        assert phrase in str(caught.value), (path.name, str(caught.value))
    assert not os.path.exists(marker)
    with pytest.raises(CheckpointError, match="not found"):
        load_state_file(tmp_path / "absent.pth", model)
    with pytest.raises(InputError, match="choose a name ending"):
        save_state_file(model(torch.tensor([[1]])).state, model, tmp_path / "x.txt")
    two = model(torch.tensor([[1], [2]])).state
    with pytest.raises(CheckpointError, match="batch of 2"):
        save_state_file(two, model, tmp_path / "two.pth")


@torch.no_grad()
def test_bfloat16_peft_file_and_ai00_state_file_load_as_float32(tmp_path):
    model = tiny_model7(seed=2)
    tensors = runner_state_file(model.config, tmp_path / "f32.pth")
    half = {key: value.to(torch.bfloat16) for key, value in tensors.items()}  # RWKV-PEFT trains in bf16
    torch.save(half, tmp_path / "peft.pth")
    save_file(half, str(tmp_path / "persona.state"))  # Ai00's .state: safetensors, same keys
    for name in ("peft.pth", "persona.state"):
        state = load_state_file(tmp_path / name, model)
        assert state[2].dtype == torch.float32
        assert torch.equal(state[2][0, 2, 1], half["blocks.2.att.time_state"][1].float().T)
