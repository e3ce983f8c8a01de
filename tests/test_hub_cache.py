"""resolve_model_dir against a hand-built Hugging Face cache, through huggingface_hub's real snapshot_download.

Offline tests run in a subprocess with HF_HUB_OFFLINE=1 (huggingface_hub reads it once, at import). Online
failures use a closed local port, or a local server answering with the Hub's error headers; nothing leaves
the machine.
"""
from __future__ import annotations

import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import torch
from huggingface_hub import snapshot_download
from huggingface_hub.errors import IncompleteSnapshotError

from rwkv_app.models.rwkv4.blinkdl import convert_hf_to_blinkdl
from rwkv_app.weights.checkpoints import load_checkpoint
from rwkv_app.models.rwkv4.config import RwkvConfig
from rwkv_app.errors import HubError
from rwkv_app.weights.hub import resolve_model_dir, weight_patterns

from .hub_fixtures import hf_model_files, hub_env, populate_hub_cache, random_state_dict, resolve_in_subprocess

REPO = "tiny-org/rwkv-tiny"
CONFIG = RwkvConfig(vocab_size=50, hidden_size=8, num_hidden_layers=2)


@pytest.fixture(scope="module")
def hub_cache(tmp_path_factory) -> dict:
    """A cache as huggingface_hub 2.4 leaves it after a few downloads, and what went into it."""
    root = tmp_path_factory.mktemp("hub")
    cache = root / "cache"
    main_weights, v2_weights = random_state_dict(CONFIG, seed=0), random_state_dict(CONFIG, seed=1)
    main_files = hf_model_files(CONFIG, main_weights, root / "main")
    # Online, only the safetensors were fetched, but the cached tree lists the repo's .bin too.
    main_commit = populate_hub_cache(cache, REPO, main_files, uncached_files={"pytorch_model.bin": 4096})
    v2_commit = populate_hub_cache(cache, REPO, hf_model_files(CONFIG, v2_weights, root / "v2"), revision="v2")
    populate_hub_cache(cache, "tiny-org/old-cache", main_files, write_tree=False)
    populate_hub_cache(cache, "tiny-org/incomplete", {"config.json": main_files["config.json"]},
                       uncached_files={"model.safetensors": 4096})
    torch.save(convert_hf_to_blinkdl(main_weights), root / "RWKV-4-Tiny.pth")
    populate_hub_cache(cache, "tiny-org/blinkdl", {"RWKV-4-Tiny.pth": root / "RWKV-4-Tiny.pth", "README.md": b"hi"})
    return dict(root=root, cache=cache, main_commit=main_commit, v2_commit=v2_commit,
                main_weights=main_weights, v2_weights=v2_weights)


OFFLINE_CALLS = {
    "main": {"repo_id_or_path": REPO},
    "v2": {"repo_id_or_path": REPO, "revision": "v2"},
    "unknown_revision": {"repo_id_or_path": REPO, "revision": "no-such-branch"},
    "not_cached": {"repo_id_or_path": "tiny-org/never-downloaded"},
    "old_cache": {"repo_id_or_path": "tiny-org/old-cache"},
    "incomplete": {"repo_id_or_path": "tiny-org/incomplete"},
    "blinkdl": {"repo_id_or_path": "tiny-org/blinkdl"},
}


@pytest.fixture(scope="module")
def offline(hub_cache) -> dict:
    """Every offline scenario, resolved in one subprocess with HF_HUB_OFFLINE=1 and HF_HUB_CACHE set."""
    calls = dict(OFFLINE_CALLS, pinned={"repo_id_or_path": REPO, "revision": hub_cache["main_commit"]})
    env = hub_env(hub_cache["cache"], hub_cache["root"] / "home", offline=True)
    return dict(zip(calls, resolve_in_subprocess(env, list(calls.values()))))


def snapshot_dir(hub_cache: dict, repo_id: str, commit: str) -> str:
    return str(hub_cache["cache"] / ("models--" + repo_id.replace("/", "--")) / "snapshots" / commit)


def assert_weights(path: str, want: dict) -> None:
    config, got = load_checkpoint(path)
    assert config.to_dict() == CONFIG.to_dict()
    assert sorted(got) == sorted(want)
    assert all(torch.equal(got[key], want[key]) for key in want)


# ---- offline (HF_HUB_OFFLINE=1) ------------------------------------------------------------------
def test_offline_resolves_the_cached_snapshot(hub_cache, offline):
    assert offline["main"] == {"path": snapshot_dir(hub_cache, REPO, hub_cache["main_commit"])}
    assert_weights(offline["main"]["path"], hub_cache["main_weights"])


def test_offline_resolves_a_pinned_commit_and_other_revisions(hub_cache, offline):
    assert offline["pinned"] == {"path": snapshot_dir(hub_cache, REPO, hub_cache["main_commit"])}
    assert offline["v2"] == {"path": snapshot_dir(hub_cache, REPO, hub_cache["v2_commit"])}
    assert_weights(offline["v2"]["path"], hub_cache["v2_weights"])


def test_offline_unknown_revision_is_named(offline):
    message = offline["unknown_revision"]["message"]
    assert "offline" in message and f"{REPO}@no-such-branch" in message
    assert "cached revisions: main, v2" in message


def test_offline_repo_not_in_cache(hub_cache, offline):
    message = offline["not_cached"]["message"]
    assert message.startswith("offline and tiny-org/never-downloaded@main is not in the cache at")
    assert str(hub_cache["cache"]) in message and "HF_HUB_OFFLINE=0" in message


def test_offline_cache_without_tree_listing(hub_cache, offline):
    assert offline["old_cache"]["path"].startswith(str(hub_cache["cache"] / "models--tiny-org--old-cache"))
    assert_weights(offline["old_cache"]["path"], hub_cache["main_weights"])


def test_offline_incomplete_snapshot_is_reported(offline):
    message = offline["incomplete"]["message"]
    assert "tiny-org/incomplete@main" in message and "incomplete" in message and "model.safetensors" in message


def test_offline_blinkdl_repo(hub_cache, offline):
    assert_weights(offline["blinkdl"]["path"], hub_cache["main_weights"])


def test_asking_for_both_formats_offline_would_fail(hub_cache):
    """Why resolve_model_dir reuses the cached file list: the .bin listed there was never downloaded."""
    with pytest.raises(IncompleteSnapshotError, match="pytorch_model.bin"):
        snapshot_download(REPO, cache_dir=hub_cache["cache"], local_files_only=True,
                          allow_patterns=["config.json", "*.safetensors", "pytorch_model.bin"])


# ---- local_files_only in this process -------------------------------------------------------------
def test_local_files_only_uses_the_given_cache_dir(hub_cache):
    path = resolve_model_dir(REPO, cache_dir=hub_cache["cache"], local_files_only=True)
    assert str(path) == snapshot_dir(hub_cache, REPO, hub_cache["main_commit"])
    with pytest.raises(HubError, match="offline and tiny-org/absent@main .*local_files_only=False"):
        resolve_model_dir("tiny-org/absent", cache_dir=hub_cache["cache"], local_files_only=True)


def test_existing_local_paths_are_returned_unchanged(tmp_path):
    assert resolve_model_dir(tmp_path) == tmp_path
    assert resolve_model_dir(str(tmp_path)) == tmp_path


@pytest.mark.parametrize("argument", ["./missing-dir", "/nowhere/model", "a/b/c", "weights.pth", Path("x/y")])
def test_missing_local_paths_are_not_sent_to_the_hub(argument):
    with pytest.raises(HubError, match="no such local directory"):
        resolve_model_dir(argument)


@pytest.mark.parametrize("argument", ["just-a-name", "org/bad--name", "org/", "org/name.git", "", " "])
def test_malformed_repo_ids_are_refused(argument):
    with pytest.raises(HubError, match="org/name"):
        resolve_model_dir(argument)


def test_one_weight_format_is_chosen():
    both = ["config.json", "model.safetensors", "pytorch_model.bin"]
    assert "pytorch_model.bin" not in weight_patterns(both, REPO)
    assert "*.safetensors" not in weight_patterns(["config.json", "pytorch_model.bin.index.json"], REPO)
    assert "RWKV-4-x.pth" in weight_patterns(["RWKV-4-x.pth", "README.md"], REPO)
    with pytest.raises(HubError, match="several .pth"):
        weight_patterns(["a.pth", "b.pth"], REPO)
    with pytest.raises(HubError, match="no RWKV weights"):
        weight_patterns(["README.md"], REPO)


# ---- online, without the internet -------------------------------------------------------------------
def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_unreachable_hub_falls_back_to_the_cache(hub_cache):
    env = hub_env(hub_cache["cache"], hub_cache["root"] / "home", offline=False,
                  endpoint=f"http://127.0.0.1:{closed_port()}")
    cached, absent = resolve_in_subprocess(env, [{"repo_id_or_path": REPO}, {"repo_id_or_path": "tiny-org/absent"}])
    assert cached == {"path": snapshot_dir(hub_cache, REPO, hub_cache["main_commit"])}
    assert absent["message"].startswith("could not reach the Hugging Face Hub")
    assert "tiny-org/absent@main is not in the cache" in absent["message"]


class FakeHubErrors(BaseHTTPRequestHandler):
    """Answers like the Hub does for a gated repo, an unknown revision, or an unknown repo."""

    def do_GET(self):
        if "/gated" in self.path:
            status, code = 403, "GatedRepo"
        elif "bad-rev" in self.path:
            status, code = 404, "RevisionNotFound"
        else:
            status, code = 404, "RepoNotFound"
        self.send_response(status)
        self.send_header("X-Error-Code", code)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_HEAD = do_GET

    def log_message(self, *args):
        pass


@pytest.fixture
def fake_hub():
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeHubErrors)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_hub_errors_name_the_repo_and_revision(hub_cache, fake_hub):
    env = hub_env(hub_cache["root"] / "empty-cache", hub_cache["root"] / "home", offline=False, endpoint=fake_hub)
    calls = [{"repo_id_or_path": "tiny-org/missing"}, {"repo_id_or_path": "tiny-org/gated"},
             {"repo_id_or_path": REPO, "revision": "bad-rev"}]
    missing, gated, bad_revision = (result["message"] for result in resolve_in_subprocess(env, calls))
    assert missing.startswith("unknown repo 'tiny-org/missing'") and "private/gated" in missing
    assert gated.startswith("tiny-org/gated is a gated repo")
    assert bad_revision == f"unknown revision 'bad-rev' of {REPO}: no such branch, tag or commit"
