"""The real huggingface_hub download path, without the internet: a fake Hub on 127.0.0.1 (tests/fake_hub.py).

What is fetched (one weight format, nothing unrelated), the cache huggingface_hub writes and its reuse offline,
revisions, download progress, and failures mid-download. huggingface_hub reads HF_ENDPOINT and HF_HUB_OFFLINE
once, at import, so the code under test runs in a subprocess (`Interpreter`, batches of steps); models it loads come
back as saved state dicts, compared exactly with the weights served. Three interpreters in all, to stay fast.
"""
from __future__ import annotations

import json
import select
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import torch
from huggingface_hub import constants

from rwkv_app.weights.checkpoints import load_checkpoint
from rwkv_app.models.rwkv4.config import RwkvConfig
from rwkv_app.weights.progress import progress_tqdm_class

from .fake_hub import FakeHub, etag
from .hub_fixtures import hf_model_files, hub_env, random_state_dict

CONFIG = RwkvConfig(vocab_size=50, hidden_size=8, num_hidden_layers=2)
# model.safetensors of about 24 MiB: huggingface_hub reads downloads in 10 MiB chunks, so progress moves 3 times.
BIG_CONFIG = RwkvConfig(vocab_size=24000, hidden_size=128, num_hidden_layers=1)
BOTH, BIN_ONLY, PINNED, BIG = "tiny-org/both", "tiny-org/bin-only", "tiny-org/pinned", "tiny-org/big"
MODEL_FILES = ["config.json", "model.safetensors", "tokenizer.json"]
FAULTS = {"tiny-org/fail-500": "500", "tiny-org/fail-reset": "reset", "tiny-org/fail-truncate": "truncate"}

RUNNER = """
import json, sys
import torch
from rwkv_app import RwkvForCausalLM
from rwkv_app.errors import RwkvError
from rwkv_app.weights.hub import resolve_model_dir
from rwkv_app.services.manager import ModelManager

def run(step):
    if "resolve" in step:
        return {"path": str(resolve_model_dir(**step["resolve"]))}
    if "load" in step:
        model = RwkvForCausalLM.from_pretrained(**step["load"])
        torch.save(model.state_dict(), step["save_to"])
        return {"saved": step["save_to"]}
    events = []
    manager = ModelManager(cache_dir=step["cache_dir"], presets={})
    loaded = manager.acquire(**step["acquire"], progress=lambda *event: events.append(event))
    torch.save(loaded.model.state_dict(), step["save_to"])
    return {"saved": step["save_to"], "events": events}

def run_or_error(step):
    try:
        return run(step)
    except RwkvError as err:
        return {"error": type(err).__name__, "message": str(err)}

for line in sys.stdin:  # one batch of steps a line, one line of results back
    print(json.dumps([run_or_error(step) for step in json.loads(line)]), flush=True)
"""


class Interpreter:
    """A new Python with `env` (huggingface_hub reads it at import) that runs batches of named steps:

        {"resolve": kwargs}                      resolve_model_dir(**kwargs)          -> {"path": ...}
        {"load": kwargs, "save_to": path}        RwkvForCausalLM.from_pretrained      -> {"saved": path}
        {"acquire": kwargs, "cache_dir": ..., "save_to": path}   ModelManager.acquire -> {"saved", "events"}

    or {"error", "message"} for an RwkvError. Between batches the test can look at the cache or change the Hub.
    """

    def __init__(self, env: dict[str, str]):
        Path(env["HF_HOME"]).mkdir(parents=True, exist_ok=True)
        self.stderr = tempfile.TemporaryFile(mode="w+")
        self.process = subprocess.Popen([sys.executable, "-c", RUNNER], env=env, cwd=env["HF_HOME"], text=True,
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.stderr)

    def run(self, steps: dict[str, dict], timeout: float = 120) -> dict[str, dict]:
        self.process.stdin.write(json.dumps(list(steps.values())) + "\n")
        self.process.stdin.flush()
        ready, _, _ = select.select([self.process.stdout], [], [], timeout)
        line = self.process.stdout.readline() if ready else ""
        if not line:
            self.close()
            self.stderr.seek(0)
            raise AssertionError(f"the subprocess gave no results (exit code {self.process.returncode}):\n"
                                 f"{self.stderr.read()}")
        return dict(zip(steps, json.loads(line)))

    def close(self) -> None:
        self.process.stdin.close()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.stderr.close()

    def __enter__(self) -> "Interpreter":
        return self

    def __exit__(self, *exc_info) -> None:
        if self.process.returncode is None:
            self.close()


def run_steps(env: dict[str, str], steps: dict[str, dict]) -> dict[str, dict]:
    """One batch of steps in a new interpreter."""
    with Interpreter(env) as interpreter:
        return interpreter.run(steps)


# ---- served repos ---------------------------------------------------------------------------------
def model_files(config: RwkvConfig, weights: dict, tmp_dir: Path, formats=("safetensors",)) -> dict[str, bytes]:
    """config.json plus the weights as model.safetensors and/or pytorch_model.bin, as bytes to serve."""
    files = {name: path.read_bytes() for name, path in hf_model_files(config, weights, tmp_dir).items()}
    if "bin" in formats:
        torch.save(weights, tmp_dir / "pytorch_model.bin")
        files["pytorch_model.bin"] = (tmp_dir / "pytorch_model.bin").read_bytes()
    if "safetensors" not in formats:
        del files["model.safetensors"]
    return files


def storage(cache: Path, repo_id: str) -> Path:
    return cache / ("models--" + repo_id.replace("/", "--"))


def snapshot(cache: Path, repo_id: str, commit: str) -> Path:
    return storage(cache, repo_id) / "snapshots" / commit


def files_under(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if not p.is_dir())


def saved_weights(result: dict) -> dict[str, torch.Tensor]:
    """The state dict of the model a subprocess step loaded."""
    assert "saved" in result, result
    return torch.load(result["saved"], weights_only=True)


def weights_in(folder: str) -> dict[str, torch.Tensor]:
    return load_checkpoint(folder)[1]


def assert_same_weights(got: dict[str, torch.Tensor], expected: dict[str, torch.Tensor]) -> None:
    assert sorted(got) == sorted(expected)
    assert all(torch.equal(got[key], expected[key]) for key in expected)


def served_repos(root: Path) -> tuple[dict, dict]:
    """The repos the fake Hub serves, and the weights in each (by repo, or "v2" for the pinned repo's branch)."""
    names = [BOTH, BIN_ONLY, PINNED, "v2"]
    weights = {name: random_state_dict(CONFIG, seed) for seed, name in enumerate(names)}
    weights[BIG] = random_state_dict(BIG_CONFIG, seed=len(names))
    both = model_files(CONFIG, weights[BOTH], root / "both", formats=("safetensors", "bin"))
    both.update({"README.md": b"# tiny\n", "tokenizer.json": b'{"model": {"type": "BPE"}}',
                 "training_log.bin": bytes(4 * 2**20), "onnx/model.onnx": b"onnx"})
    repos = {BOTH: {"main": both},
             BIN_ONLY: {"main": {**model_files(CONFIG, weights[BIN_ONLY], root / "bin", formats=("bin",)),
                                 "README.md": b"# bin\n"}},
             PINNED: {"main": model_files(CONFIG, weights[PINNED], root / "main"),
                      "v2": model_files(CONFIG, weights["v2"], root / "v2")},
             BIG: {"main": model_files(BIG_CONFIG, weights[BIG], root / "big")}}
    return repos, weights


def online_steps(saved: Path, cache: Path, main_commit: str) -> dict[str, dict]:
    load = {"both_model": {"repo_id_or_path": BOTH}, "bin_only_model": {"repo_id_or_path": BIN_ONLY},
            "v2_model": {"repo_id_or_path": PINNED, "revision": "v2"},
            "pinned_model": {"repo_id_or_path": PINNED, "revision": main_commit}}
    return {"both": {"resolve": {"repo_id_or_path": BOTH}},
            "both_again": {"resolve": {"repo_id_or_path": BOTH}},
            "bin_only": {"resolve": {"repo_id_or_path": BIN_ONLY}},
            "v2": {"resolve": {"repo_id_or_path": PINNED, "revision": "v2"}},
            "pinned": {"resolve": {"repo_id_or_path": PINNED, "revision": main_commit}},
            **{name: {"load": kwargs, "save_to": str(saved / f"{name}.pt")} for name, kwargs in load.items()},
            "big": {"acquire": {"source": BIG}, "cache_dir": str(cache), "save_to": str(saved / "big.pt")}}


@pytest.fixture(scope="module")
def online(tmp_path_factory) -> dict:
    """Every online scenario in one subprocess against one fake Hub, into a fresh cache; the Hub is then stopped.

    The first GET of the big model's weights drops the connection halfway, so huggingface_hub resumes it.
    """
    root = tmp_path_factory.mktemp("hub-download")
    repos, weights = served_repos(root)
    (root / "saved").mkdir()
    with FakeHub(repos) as hub:
        hub.fail(BIG, "model.safetensors", "drop")
        env = hub_env(root / "cache", root / "home", offline=False, endpoint=hub.url)
        results = run_steps(env, online_steps(root / "saved", root / "cache", hub.commit(PINNED)))
    return dict(results=results, hub=hub, env=env, cache=root / "cache", repos=repos, weights=weights)


# ---- what is fetched ------------------------------------------------------------------------------
def test_only_the_model_files_in_one_weight_format_are_downloaded(online):
    """A repo with safetensors and .bin weights, a README, an unrelated 4 MiB file and a subfolder: only
    config.json, tokenizer.json and model.safetensors are fetched, each once, and from_pretrained loads them."""
    hub, cache, results = online["hub"], online["cache"], online["results"]
    commit = hub.commit(BOTH)
    assert results["both"] == results["both_again"] == {"path": str(snapshot(cache, BOTH, commit))}
    resolves = [f"/{BOTH}/resolve/{commit}/{name}" for name in MODEL_FILES]
    assert sorted(hub.requested(BOTH, "HEAD")) == resolves  # each once: later calls found them in the cache
    assert sorted(path for path in hub.requested(BOTH) if "/resolve/" in path) == resolves
    assert files_under(snapshot(cache, BOTH, commit)) == MODEL_FILES
    served = online["repos"][BOTH]["main"]
    assert files_under(storage(cache, BOTH) / "blobs") == sorted(etag(name, served[name]) for name in MODEL_FILES)
    tree = json.loads((storage(cache, BOTH) / "trees" / f"{commit}.json").read_text())
    assert sorted(tree["files"]) == sorted(served)  # the repo's whole listing, for offline runs
    assert_same_weights(saved_weights(results["both_model"]), online["weights"][BOTH])


def test_a_repo_with_only_pytorch_model_bin(online):
    """No safetensors: the .bin is fetched (not the README) and loaded through torch.load(weights_only=True)."""
    assert online["hub"].downloads(BIN_ONLY) == ["config.json", "pytorch_model.bin"]
    assert_same_weights(saved_weights(online["results"]["bin_only_model"]), online["weights"][BIN_ONLY])


def test_a_branch_and_a_commit_sha_each_give_their_own_weights(online):
    """revision="v2" and revision=<sha of main> resolve online to their own snapshots and weights."""
    hub, cache, results = online["hub"], online["cache"], online["results"]
    main_commit, v2_commit = hub.commit(PINNED), hub.commit(PINNED, "v2")
    assert results["v2"] == {"path": str(snapshot(cache, PINNED, v2_commit))}
    assert results["pinned"] == {"path": str(snapshot(cache, PINNED, main_commit))}
    assert (storage(cache, PINNED) / "refs" / "v2").read_text() == v2_commit
    assert f"/api/models/{PINNED}/revision/{main_commit}" in hub.requested(PINNED)
    resolves = sorted(f"/{PINNED}/resolve/{commit}/{name}" for commit in (main_commit, v2_commit)
                      for name in ("config.json", "model.safetensors"))
    assert sorted(hub.requested(PINNED, "HEAD")) == resolves  # always by commit sha, never by branch name
    # Both commits have the same config.json: its blob is downloaded once and linked into both snapshots.
    assert len([path for path in hub.requested(PINNED) if path.endswith("/config.json")]) == 1
    assert len([path for path in hub.requested(PINNED) if path.endswith("/model.safetensors")]) == 2
    assert_same_weights(saved_weights(results["v2_model"]), online["weights"]["v2"])
    assert_same_weights(saved_weights(results["pinned_model"]), online["weights"][PINNED])


# ---- offline reuse --------------------------------------------------------------------------------
def test_the_cache_huggingface_hub_wrote_works_offline(online):
    """HF_HUB_OFFLINE=1 with the Hub stopped: the same calls resolve to the same snapshots, weights and all."""
    main_commit = online["hub"].commit(PINNED)
    steps = {"both": {"resolve": {"repo_id_or_path": BOTH}},
             "bin_only": {"resolve": {"repo_id_or_path": BIN_ONLY}},
             "v2": {"resolve": {"repo_id_or_path": PINNED, "revision": "v2"}},
             "pinned": {"resolve": {"repo_id_or_path": PINNED, "revision": main_commit}},
             "big": {"resolve": {"repo_id_or_path": BIG}}}
    offline = run_steps(dict(online["env"], HF_HUB_OFFLINE="1"), steps)
    for name in ("both", "bin_only", "v2", "pinned"):
        assert offline[name] == online["results"][name]
    assert offline["big"] == {"path": str(snapshot(online["cache"], BIG, online["hub"].commit(BIG)))}
    for name, served in {"both": BOTH, "bin_only": BIN_ONLY, "v2": "v2", "pinned": PINNED, "big": BIG}.items():
        assert_same_weights(weights_in(offline[name]["path"]), online["weights"][served])


# ---- progress -------------------------------------------------------------------------------------
def test_download_progress_is_monotonic_through_a_resumed_download(online):
    """ModelManager.acquire reports byte progress that never goes back, even though the connection dropped
    mid-file and huggingface_hub resumed with a Range request; then "load" (the weights, and on a CPU the C++
    kernels: manager.prepare_cpu_kernels), then "ready"."""
    hub, result = online["hub"], online["results"]["big"]
    resumed = f"/{BIG}/resolve/{hub.commit(BIG)}/model.safetensors"
    assert hub.ranges == [(resumed, f"bytes={constants.DOWNLOAD_CHUNK_SIZE}-")]
    assert_same_weights(saved_weights(result), online["weights"][BIG])
    stages = [stage for stage, _, _ in result["events"]]
    loads = stages.count("load")
    assert stages == ["download"] * stages.count("download") + ["load"] * loads + ["ready"] and loads >= 1
    load_fractions = [fraction for stage, fraction, _ in result["events"] if stage == "load"]
    assert load_fractions == sorted(load_fractions)
    fractions = [fraction for stage, fraction, _ in result["events"] if stage == "download"]
    assert None not in fractions and fractions == sorted(fractions) and fractions[-1] == 1.0
    assert len({fraction for fraction in fractions if 0 < fraction < 1}) >= 2  # it moved during the download
    total_mib = sum(len(data) for data in online["repos"][BIG]["main"].values()) / 2**20
    last_download = [detail for stage, _, detail in result["events"] if stage == "download"][-1]
    assert last_download.startswith(f"{total_mib:.1f} of {total_mib:.1f} MiB")


def test_progress_holds_when_a_small_file_is_done_before_a_large_one_starts():
    """The order that sent the fraction from 1.0 back to 0.0, driven as snapshot_download drives its bars: the
    written-bytes bar learns each file's size only when that file starts."""
    events = []
    bar_class = progress_tqdm_class(lambda *event: events.append(event))
    files = bar_class(desc="Fetching 2 files", total=2)
    written = bar_class(desc="Reconstructing (incomplete total...)", total=0, initial=0, unit="B", unit_scale=True)
    bar_class(desc="Downloading bytes", total=0, initial=0, unit="B", unit_scale=True).update(10)  # not reported
    written.total += 100  # config.json starts, and is done before the weights start
    written.update(100)
    files.update(1)
    written.total += 1000  # model.safetensors starts
    written.update(500)
    written.update(500)
    files.update(1)
    assert [(stage, round(fraction, 3)) for stage, fraction, _ in events] == [
        ("download", 0.0), ("download", 0.545), ("download", 0.545), ("download", 1.0)]
    assert events[-1][2] == "0.0 of 0.0 MiB, 2 of 2 files"


# ---- failures -------------------------------------------------------------------------------------
def test_a_failed_download_is_a_clear_error_and_leaves_no_partial_file(tmp_path):
    """A 500, a reset connection or a short body on the weights: a HubError naming the repo; the cache keeps
    only whole files, refuses the snapshot as incomplete, and a later run completes it."""
    weights = random_state_dict(CONFIG, seed=6)
    files = model_files(CONFIG, weights, tmp_path / "model")
    cache = tmp_path / "cache"
    with FakeHub({repo: {"main": files} for repo in FAULTS}) as hub:
        for repo, fault in FAULTS.items():
            hub.fail(repo, "model.safetensors", fault)
        env = hub_env(cache, tmp_path / "home", offline=False, endpoint=hub.url)
        with Interpreter(env) as interpreter:
            failed = interpreter.run({repo: {"resolve": {"repo_id_or_path": repo}} for repo in FAULTS})
            assert_failure_messages(failed, cache)
            for repo in FAULTS:
                assert files_under(snapshot(cache, repo, hub.commit(repo))) == ["config.json"]
                assert files_under(storage(cache, repo) / "blobs") == [etag("config.json", files["config.json"])]
            assert not [path for path in cache.rglob("*") if "incomplete" in path.name]
            retried = interpreter.run(retry_steps())  # the faults are spent: the Hub now serves every file
    for repo in FAULTS:
        message = retried[f"{repo} offline"]["message"]
        assert f"the cached snapshot of {repo}@main" in message and "is incomplete" in message
        assert retried[repo] == {"path": str(snapshot(cache, repo, hub.commit(repo)))}
        assert [path.rsplit("/", 1)[1] for path in hub.requested(repo) if "/resolve/" in path].count(
            "model.safetensors") == 2  # the failed GET, then the one that completed the snapshot
        assert_same_weights(weights_in(retried[repo]["path"]), weights)


def assert_failure_messages(failed: dict, cache: Path) -> None:
    assert {result.get("error") for result in failed.values()} == {"HubError"}
    assert failed["tiny-org/fail-500"]["message"].startswith(
        "the Hugging Face Hub failed with HTTP 500 while serving tiny-org/fail-500@main; try again later")
    assert failed["tiny-org/fail-reset"]["message"].startswith(
        "the connection to the Hugging Face Hub failed while downloading tiny-org/fail-reset@main")
    assert failed["tiny-org/fail-truncate"]["message"].startswith(
        f"downloading tiny-org/fail-truncate@main into the cache at {cache} failed (OSError: Consistency check")


def retry_steps() -> dict[str, dict]:
    steps = {}
    for repo in FAULTS:
        steps[f"{repo} offline"] = {"resolve": {"repo_id_or_path": repo, "local_files_only": True}}
        steps[repo] = {"resolve": {"repo_id_or_path": repo}}
    return steps
