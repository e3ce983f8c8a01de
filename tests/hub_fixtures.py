"""Test helpers: a hand-built Hugging Face cache, tiny random RWKV weights, and `resolve_model_dir` in a subprocess.

`populate_hub_cache` writes the layout huggingface_hub 2.4 reads offline:

    <cache>/models--<org>--<name>/blobs/<sha256 for LFS files | git blob sha1 otherwise>
    <cache>/models--<org>--<name>/snapshots/<commit>/<file>   (relative symlink to the blob)
    <cache>/models--<org>--<name>/refs/<revision>             (the commit hash, no trailing newline)
    <cache>/models--<org>--<name>/trees/<commit>.json         (the repo's file list, written by 2.4 downloads)

Offline, `snapshot_download` reads `refs/<revision>` (unless the revision is already a commit hash), returns
`snapshots/<commit>` if it exists, and first checks it against `trees/<commit>.json` when that file exists.
"""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
LFS_SUFFIXES = (".safetensors", ".bin", ".pth", ".pt")
COMMIT_HASH_LENGTH = 40


def populate_hub_cache(cache_dir: str | Path, repo_id: str, files: dict[str, bytes | Path], revision: str = "main",
                       *, uncached_files: dict[str, int] | None = None, write_tree: bool = True) -> str:
    """Put `files` in the cache as repo `repo_id` at `revision`; return the commit hash.

    `uncached_files` ({name: size}) are listed in the tree file but not downloaded, as when a download
    fetched only some of a repo's files. A 40-hex `revision` is used as the commit itself (no ref written).
    """
    storage = Path(cache_dir) / ("models--" + repo_id.replace("/", "--"))
    contents = {name: data.read_bytes() if isinstance(data, Path) else bytes(data) for name, data in files.items()}
    commit = revision if _is_commit_hash(revision) else _fake_commit_hash(repo_id, revision, contents)
    tree = {}
    for name, data in contents.items():
        blob_name = _write_blob(storage, name, data)
        _link_snapshot_file(storage, commit, name, blob_name)
        tree[name] = _tree_entry(name, data)
    if revision != commit:
        ref = storage / "refs" / revision
        ref.parent.mkdir(parents=True, exist_ok=True)
        ref.write_text(commit)  # huggingface_hub reads the ref with f.read(): no newline allowed
    if write_tree:
        for name, size in (uncached_files or {}).items():
            tree[name] = {"size": size, "blob_id": hashlib.sha1(name.encode()).hexdigest()}
        _write_tree(storage, commit, tree)
    return commit


def _is_commit_hash(revision: str) -> bool:
    return len(revision) == COMMIT_HASH_LENGTH and all(c in "0123456789abcdef" for c in revision)


def _fake_commit_hash(repo_id: str, revision: str, contents: dict[str, bytes]) -> str:
    digest = hashlib.sha1(f"{repo_id}@{revision}".encode())
    for name in sorted(contents):
        digest.update(name.encode() + hashlib.sha256(contents[name]).digest())
    return digest.hexdigest()


def _git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def _blob_name(name: str, data: bytes) -> str:
    """The etag huggingface_hub names the blob after: sha256 for LFS files, the git blob sha1 otherwise."""
    return hashlib.sha256(data).hexdigest() if name.endswith(LFS_SUFFIXES) else _git_blob_sha1(data)


def _write_blob(storage: Path, name: str, data: bytes) -> str:
    blob_name = _blob_name(name, data)
    blob = storage / "blobs" / blob_name
    blob.parent.mkdir(parents=True, exist_ok=True)
    if not blob.exists():
        blob.write_bytes(data)
    return blob_name


def _link_snapshot_file(storage: Path, commit: str, name: str, blob_name: str) -> None:
    pointer = storage / "snapshots" / commit / name
    pointer.parent.mkdir(parents=True, exist_ok=True)
    if pointer.is_symlink() or pointer.exists():
        pointer.unlink()
    pointer.symlink_to(os.path.relpath(storage / "blobs" / blob_name, pointer.parent))


def _tree_entry(name: str, data: bytes) -> dict:
    entry = {"size": len(data), "blob_id": _git_blob_sha1(data)}
    if name.endswith(LFS_SUFFIXES):
        entry.update(lfs_sha256=hashlib.sha256(data).hexdigest(), lfs_size=len(data))
    return entry


def _write_tree(storage: Path, commit: str, tree: dict[str, dict]) -> None:
    path = storage / "trees" / f"{commit}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    existing = json.loads(path.read_text())["files"] if path.exists() else {}
    existing.update(tree)
    path.write_text(json.dumps({"format_version": 1, "files": dict(sorted(existing.items()))}, indent=1))


# ---- tiny weights ---------------------------------------------------------------------------------
def random_state_dict(config, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random float32 tensors with exactly the names and shapes `expected_shapes(config)` lists."""
    from rwkv_app.weights.checkpoints import expected_shapes

    generator = torch.Generator().manual_seed(seed)
    return {name: torch.randn(shape, generator=generator) for name, shape in expected_shapes(config).items()}


def hf_model_files(config, state_dict: dict[str, torch.Tensor], tmp_dir: Path) -> dict[str, Path]:
    """config.json and model.safetensors written by this package, ready for `populate_hub_cache`."""
    from rwkv_app.weights.checkpoints import save_state_dict

    tmp_dir.mkdir(parents=True, exist_ok=True)
    save_state_dict(state_dict, tmp_dir)
    config.save_pretrained(tmp_dir)
    return {"config.json": tmp_dir / "config.json", "model.safetensors": tmp_dir / "model.safetensors"}


# ---- resolve_model_dir in a fresh interpreter --------------------------------------------------------
RESOLVE_SCRIPT = """
import json, sys
from rwkv_app.errors import HubError
from rwkv_app.weights.hub import resolve_model_dir
results = []
for kwargs in json.loads(sys.argv[1]):
    try:
        results.append({"path": str(resolve_model_dir(**kwargs))})
    except HubError as err:
        results.append({"error": type(err).__name__, "message": str(err)})
print(json.dumps(results))
"""
PROXY_VARS = ("http_proxy", "https_proxy", "all_proxy")


def hub_env(cache_dir: Path, home: Path, offline: bool = True, endpoint: str | None = None) -> dict[str, str]:
    """This environment without HF_* settings, tokens or proxies, pointed at a private cache (and Hub endpoint)."""
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("HF_", "HUGGING", "TRANSFORMERS_")) and key.lower() not in PROXY_VARS}
    env.update(HF_HOME=str(home), HF_HUB_CACHE=str(cache_dir), HF_HUB_OFFLINE="1" if offline else "0",
               HF_HUB_DISABLE_TELEMETRY="1", HF_HUB_DISABLE_PROGRESS_BARS="1", PYTHONPATH=str(REPO_ROOT))
    if endpoint is not None:
        env["HF_ENDPOINT"] = endpoint
    return env


def resolve_in_subprocess(env: dict[str, str], calls: list[dict], timeout: float = 120) -> list[dict]:
    """Run `resolve_model_dir(**call)` for each call in one new interpreter with `env`.

    Each result is {"path": ...} or {"error": "HubError", "message": ...}. One interpreter for a batch keeps
    the tests fast (importing torch dominates); huggingface_hub reads HF_HUB_OFFLINE once, at import.
    """
    Path(env["HF_HOME"]).mkdir(parents=True, exist_ok=True)
    done = subprocess.run([sys.executable, "-c", RESOLVE_SCRIPT, json.dumps(calls)], env=env, cwd=env["HF_HOME"],
                          capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise AssertionError(f"subprocess failed ({done.returncode}):\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])
