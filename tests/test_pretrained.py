"""from_pretrained / save_pretrained end to end: local dirs, BlinkDL .pth, transformers' files, the Hub cache."""
import dataclasses
import json
import subprocess
import sys

import pytest
import torch

from rwkv_app import CheckpointError, HubError, InputError, RwkvForCausalLM, RwkvModel
from rwkv_app.models.rwkv4.blinkdl import convert_hf_to_blinkdl

from .hub_fixtures import hub_env, populate_hub_cache

TOKENS = [[3, 14, 15, 92, 65, 35, 89, 79]]


@pytest.fixture
def saved(tiny_lm, tmp_path):
    model = tiny_lm(seed=4)
    model.save_pretrained(tmp_path / "model")
    return model, tmp_path / "model"


def logits_of(model, tokens=TOKENS) -> torch.Tensor:
    with torch.no_grad():
        return model(torch.tensor(tokens)).logits.float()


def test_local_directory_round_trip(saved):
    model, directory = saved
    assert sorted(p.name for p in directory.iterdir()) == ["config.json", "model.safetensors"]
    loaded = RwkvForCausalLM.from_pretrained(directory)
    assert not loaded.training
    assert torch.equal(logits_of(loaded), logits_of(model))


@pytest.mark.parametrize("dtype", ["bfloat16", torch.float16, "float32"])
def test_dtype_is_chosen_at_load_and_time_parameters_stay_float32(saved, dtype):
    model, directory = saved
    loaded = RwkvForCausalLM.from_pretrained(directory, dtype=dtype, device="cpu")
    attention = loaded.rwkv.blocks[0].attention
    assert attention.time_decay.dtype == attention.time_first.dtype == torch.float32
    assert loaded.head.weight.dtype == loaded.dtype
    reference = logits_of(model)
    assert (logits_of(loaded) - reference).norm() <= 0.05 * reference.norm()


def test_blinkdl_pth_from_the_same_weights_gives_the_same_logits(tiny_lm, tmp_path):
    model = tiny_lm(seed=5, rescale_every=6)  # BlinkDL files carry no config: rescale_every is inferred as 6
    path = tmp_path / "RWKV-4-Tiny.pth"
    torch.save(convert_hf_to_blinkdl(model.state_dict()), path)
    loaded = RwkvForCausalLM.from_pretrained(path)
    assert loaded.config == dataclasses.replace(model.config, context_length=1024)
    assert torch.equal(logits_of(loaded), logits_of(model))


def test_base_model_loads_the_causal_lm_checkpoint(saved):
    model, directory = saved
    base = RwkvModel.from_pretrained(directory)
    with torch.no_grad():
        want = model.rwkv(torch.tensor(TOKENS)).last_hidden_state
        assert torch.equal(base(torch.tensor(TOKENS)).last_hidden_state, want)


def test_transformers_files_load_both_ways(saved, tmp_path):
    transformers = pytest.importorskip("transformers")
    model, directory = saved
    hf = transformers.RwkvForCausalLM.from_pretrained(directory).eval()  # our files -> transformers
    torch.testing.assert_close(logits_of(hf), logits_of(model), atol=1e-4, rtol=0)
    # transformers rescales its weights in place on an eval forward (and would save them so): save a fresh copy.
    transformers.RwkvForCausalLM.from_pretrained(directory).save_pretrained(tmp_path / "hf")  # theirs -> ours
    torch.testing.assert_close(logits_of(RwkvForCausalLM.from_pretrained(tmp_path / "hf")), logits_of(model),
                               atol=1e-4, rtol=0)


def test_cuda_without_a_gpu_is_a_clear_error(saved):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(InputError, match="CUDA is not available"):
        RwkvForCausalLM.from_pretrained(saved[1], device="cuda")


@pytest.mark.parametrize("dtype", ["int4", "float64", torch.int32])  # "int8" loads: tests/test_quantize.py
def test_unsupported_dtype_is_named(saved, dtype):
    with pytest.raises(InputError, match="dtype"):
        RwkvForCausalLM.from_pretrained(saved[1], dtype=dtype)


def test_truncated_weights_name_the_file(saved):
    weights = saved[1] / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="model.safetensors"):
        RwkvForCausalLM.from_pretrained(saved[1])


def test_config_that_does_not_fit_the_weights_names_the_key(saved):
    config_path = saved[1] / "config.json"
    config = json.loads(config_path.read_text())
    config["intermediate_size"] = 40
    config_path.write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match=r"feed_forward\.key\.weight.*expected \(40, 32\)"):
        RwkvForCausalLM.from_pretrained(saved[1])


def test_missing_local_path_is_not_sent_to_the_hub(tmp_path):
    with pytest.raises(HubError, match="no such local"):
        RwkvForCausalLM.from_pretrained(str(tmp_path / "nothing-here"))


LOAD_SCRIPT = """
import json, sys, torch
from rwkv_app import RwkvForCausalLM, RwkvError
args = json.loads(sys.argv[1])
try:
    model = RwkvForCausalLM.from_pretrained(args["repo"], revision=args.get("revision"))
except RwkvError as err:
    print(json.dumps({"error": type(err).__name__, "message": str(err)}))
else:
    with torch.no_grad():
        print(json.dumps({"logits": model(torch.tensor(args["tokens"])).logits.tolist()}))
"""


def load_in_offline_subprocess(cache, home, **args) -> dict:
    env = hub_env(cache, home, offline=True)
    home.mkdir(parents=True, exist_ok=True)
    done = subprocess.run([sys.executable, "-c", LOAD_SCRIPT, json.dumps(dict(args, tokens=TOKENS))],
                          env=env, cwd=home, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_hub_repo_loads_offline_through_huggingface_hub(saved, tmp_path):
    """HF_HUB_OFFLINE=1 and a pre-populated cache: the real snapshot_download path, no network."""
    model, directory = saved
    cache = tmp_path / "cache"
    files = {name: directory / name for name in ("config.json", "model.safetensors")}
    commit = populate_hub_cache(cache, "tiny-org/rwkv-4-tiny", files)
    for revision in (None, commit):
        result = load_in_offline_subprocess(cache, tmp_path / "home", repo="tiny-org/rwkv-4-tiny", revision=revision)
        assert torch.equal(torch.tensor(result["logits"]), logits_of(model))
    missing = load_in_offline_subprocess(cache, tmp_path / "home", repo="tiny-org/not-cached")
    assert missing["error"] == "NotCachedError" and "offline" in missing["message"]  # a HubError subclass
