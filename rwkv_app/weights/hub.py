"""Resolve `--model` arguments: an existing local path as is, otherwise a Hub repo id through huggingface_hub's cache.

Downloads go through `huggingface_hub.snapshot_download`, so its cache layout, offline mode (`HF_HUB_OFFLINE=1`,
read by huggingface_hub itself) and `local_files_only` behave as everywhere else. Only the files a model needs
are fetched, and only one weight format when a repo has both. Every failure becomes a HubError naming the repo
and revision.
"""
from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path

from huggingface_hub import HfApi, constants, get_cached_repo_tree, hf_hub_download, is_offline_mode, snapshot_download
from huggingface_hub.errors import (
    CachedRepoTreeNotFoundError,
    DisabledRepoError,
    EntryNotFoundError,
    GatedRepoError,
    HfHubHTTPError,
    HFValidationError,
    IncompleteSnapshotError,
    LocalEntryNotFoundError,
    OfflineModeIsEnabled,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)

from ..errors import HubError, NotCachedError

COMMON_FILES = ["config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                "rwkv_vocab_v20230424.txt",  # the World tokenizer of RWKV-7 checkpoints (fla-hub folders)
                "generation_config.json"]
SAFETENSORS_PATTERNS = ["*.safetensors", "model.safetensors.index.json"]
BIN_PATTERNS = ["pytorch_model.bin", "pytorch_model.bin.index.json", "pytorch_model-*.bin"]
PATH_SUFFIXES = (".pth", ".pt", ".bin", ".safetensors", ".json")
REPO_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*")
# Transport errors of the HTTP clients huggingface_hub has used (httpx2 in 2.x, httpx, requests before).
TRANSPORT_ERRORS = (("httpx2", "TransportError"), ("httpx", "TransportError"), ("requests", "ConnectionError"))


@dataclass(frozen=True)
class RepoRef:
    """A repo id at a revision, with the cache it is looked up in; builds the error messages."""

    repo_id: str
    revision: str | None
    cache_dir: str | Path | None
    local_files_only: bool | None = None

    @property
    def label(self) -> str:
        return f"{self.repo_id}@{self.revision or constants.DEFAULT_REVISION}"

    @property
    def cache_root(self) -> Path:
        return Path(self.cache_dir if self.cache_dir is not None else constants.HF_HUB_CACHE).expanduser()

    @property
    def storage_folder(self) -> Path:
        return self.cache_root / ("models--" + self.repo_id.replace("/", "--"))


def resolve_model_dir(repo_id_or_path: str | Path, revision: str | None = None, cache_dir: str | Path | None = None,
                      local_files_only: bool | None = None, tqdm_class=None) -> Path:
    """An existing local path unchanged; otherwise the snapshot folder of Hub repo `org/name` at `revision`.

    `local_files_only=None` follows huggingface_hub's own offline mode (`HF_HUB_OFFLINE`).
    `tqdm_class` is handed to snapshot_download, which drives it with the bytes downloaded.
    """
    if not str(repo_id_or_path).strip():
        raise HubError("no model given: pass a local directory or file, or a Hub repo id like 'org/name'")
    local = Path(os.path.expanduser(repo_id_or_path))  # unlike Path.expanduser, never raises
    if local.exists():
        return local
    repo = RepoRef(_validate_repo_id(repo_id_or_path), revision, cache_dir, local_files_only)
    offline = is_offline_mode() if local_files_only is None else bool(local_files_only)
    if offline:  # HF_HUB_OFFLINE alone: snapshot_download meets huggingface_hub's own offline mode
        return _download(repo, _cached_patterns(repo), local_only=bool(local_files_only), network_error=None,
                         tqdm_class=tqdm_class)
    patterns, network_error = _remote_patterns(repo)
    return _download(repo, patterns, local_only=network_error is not None, network_error=network_error,
                     tqdm_class=tqdm_class)


def resolve_model_file(repo_id: str, filename: str, revision: str | None = None,
                       cache_dir: str | Path | None = None, local_files_only: bool | None = None,
                       tqdm_class=None) -> Path:
    """One file of Hub repo `org/name` at `revision` (e.g. a BlinkDL `.pth` in a repo holding several), through
    huggingface_hub's hf_hub_download and its cache: only that file is fetched; offline, the cached copy."""
    repo = RepoRef(_validate_repo_id(repo_id), revision, cache_dir, local_files_only)
    if not filename or filename.startswith(("/", "\\")) or ".." in filename.split("/"):
        raise HubError(f"invalid file name {filename!r} in {repo.label}: a path inside the repo, like 'model.pth'")
    offline = is_offline_mode() if local_files_only is None else bool(local_files_only)
    network_error = None if offline else _model_info(repo)[1]  # one request: hf_hub_download retries ~25 s
    try:
        return Path(hf_hub_download(repo.repo_id, filename, revision=revision, cache_dir=cache_dir,
                                    local_files_only=offline or network_error is not None, tqdm_class=tqdm_class))
    except LocalEntryNotFoundError as err:  # offline (or the Hub unreachable) and not cached
        raise to_hub_error(err, repo, network_error) from err
    except EntryNotFoundError as err:  # the Hub has the repo and revision but not this file
        raise HubError(f"{repo.label} has no file {filename!r}") from err
    except (HfHubHTTPError, HFValidationError, OfflineModeIsEnabled) as err:
        raise to_hub_error(err, repo) from err
    except Exception as err:
        if not (_is_network_error(err) or isinstance(err, OSError)):
            raise
        raise to_hub_error(err, repo) from err


def resolve_config_path(repo_id_or_path: str | Path, revision: str | None = None,
                        cache_dir: str | Path | None = None, local_files_only: bool | None = None) -> Path:
    """An existing local path unchanged; otherwise the snapshot folder of a Hub repo with only its config.json."""
    if not str(repo_id_or_path).strip():
        raise HubError("no config given: pass a local directory or config.json, or a Hub repo id like 'org/name'")
    local = Path(os.path.expanduser(repo_id_or_path))
    if local.exists():
        return local
    repo = RepoRef(_validate_repo_id(repo_id_or_path), revision, cache_dir, local_files_only)
    offline = is_offline_mode() if local_files_only is None else bool(local_files_only)
    return _download(repo, ["config.json"], local_only=offline, network_error=None)


def _validate_repo_id(value: str | Path) -> str:
    text = str(value)
    if isinstance(value, Path) or _looks_like_path(text):
        raise HubError(f"no such local directory or file: {text}")
    if REPO_ID.fullmatch(text) is None or "--" in text or ".." in text or text.endswith(".git"):
        raise HubError(f"{text!r} is neither an existing local path nor a Hub repo id of the form 'org/name'")
    return text


def _looks_like_path(text: str) -> bool:
    return (text.startswith(("/", ".", "~")) or "\\" in text or text.count("/") > 1
            or text.endswith(PATH_SUFFIXES))


# ---- which files to fetch -------------------------------------------------------------------------
def _model_info(repo: RepoRef):
    """One request to the Hub for the repo: (its ModelInfo, None); (None, None) when the Hub answers with an HTTP
    error (private, gated, missing, or down: the download asks again and reports it, falling back to the cache as
    huggingface_hub does); (None, the error) when the Hub cannot be reached. A bad revision or id raises HubError.

    `model_info` makes one request, where `list_repo_files` and `hf_hub_download` go through `http_backoff`,
    which retries a refused connection five times (about 23 s) before giving up: asking first keeps an
    unreachable Hub a quick fall-back to the cache (measured: a preset's .pth offline, 25-30 s before).
    """
    try:
        return HfApi().model_info(repo.repo_id, revision=repo.revision), None
    except (RevisionNotFoundError, HFValidationError) as err:
        raise to_hub_error(err, repo) from err
    except HfHubHTTPError:
        return None, None
    except Exception as err:
        if not _is_network_error(err):
            raise
        return None, err


def _remote_patterns(repo: RepoRef) -> tuple[list[str], Exception | None]:
    """Patterns from the repo's file list on the Hub; on a network failure, from the cache (and the error)."""
    info, network_error = _model_info(repo)
    if info is None or info.siblings is None:
        return _cached_patterns(repo), network_error
    return weight_patterns([sibling.rfilename for sibling in info.siblings], repo.label), None


def _cached_patterns(repo: RepoRef) -> list[str]:
    """Use the file list huggingface_hub cached at download time, so offline asks for what was fetched online.

    snapshot_download refuses a cached snapshot (IncompleteSnapshotError) when the patterns match a file in
    that cached list which is not on disk, e.g. the .bin of a repo whose safetensors were downloaded.
    """
    try:
        files = [entry.path for entry in get_cached_repo_tree(
            repo.repo_id, revision=repo.revision, cache_dir=repo.cache_dir)]
    except (CachedRepoTreeNotFoundError, OSError, ValueError):
        return COMMON_FILES + SAFETENSORS_PATTERNS + BIN_PATTERNS
    return weight_patterns(files, repo.label)


def weight_patterns(files: list[str], label: str) -> list[str]:
    """allow_patterns for one weight format: safetensors, else .bin, else the repo's single BlinkDL .pth."""
    names = set(files)
    if names & {"model.safetensors", "model.safetensors.index.json"}:
        return COMMON_FILES + SAFETENSORS_PATTERNS
    if names & {"pytorch_model.bin", "pytorch_model.bin.index.json"}:
        return COMMON_FILES + BIN_PATTERNS
    pth_files = sorted(name for name in names if name.endswith(".pth"))
    if len(pth_files) == 1:
        return COMMON_FILES + pth_files
    if pth_files:
        raise HubError(f"{label} holds several .pth checkpoints ({', '.join(pth_files)}); download one with "
                       "huggingface_hub.hf_hub_download and pass its local path")
    raise HubError(f"{label} has no RWKV weights (model.safetensors, pytorch_model.bin or a .pth); "
                   f"it holds: {', '.join(sorted(names)) or 'no files'}")


# ---- download and errors --------------------------------------------------------------------------
def _download(repo: RepoRef, patterns: list[str], local_only: bool, network_error: Exception | None,
              tqdm_class=None) -> Path:
    try:
        folder = snapshot_download(repo.repo_id, revision=repo.revision, cache_dir=repo.cache_dir,
                                   local_files_only=local_only, allow_patterns=patterns, tqdm_class=tqdm_class)
    except (HfHubHTTPError, LocalEntryNotFoundError, HFValidationError, OfflineModeIsEnabled) as err:
        raise to_hub_error(err, repo, network_error) from err
    except Exception as err:
        # A connection that breaks mid-file (httpx2 transport errors), or a file that arrives short or cannot be
        # written (OSError, e.g. huggingface_hub's "Consistency check failed"); the partial file is deleted.
        if not (_is_network_error(err) or isinstance(err, OSError)):
            raise
        raise to_hub_error(err, repo, network_error) from err
    return Path(folder)


def to_hub_error(err: Exception, repo: RepoRef, network_error: Exception | None = None) -> HubError:
    """One clear HubError, naming the repo and revision, for an error huggingface_hub raised."""
    if isinstance(err, GatedRepoError):
        return HubError(f"{repo.repo_id} is a gated repo: accept its terms at https://huggingface.co/{repo.repo_id} "
                        "and log in (`hf auth login`) to download it")
    if isinstance(err, RepositoryNotFoundError):
        return HubError(f"unknown repo {repo.repo_id!r} on the Hugging Face Hub, or it is private/gated "
                        "and you are not logged in")
    if isinstance(err, RevisionNotFoundError):
        return HubError(f"unknown revision {repo.revision!r} of {repo.repo_id}: no such branch, tag or commit")
    if isinstance(err, DisabledRepoError):
        return HubError(f"{repo.repo_id} has been disabled by its author and cannot be downloaded")
    if isinstance(err, HFValidationError):
        return HubError(f"invalid repo id or revision {repo.label!r}: {err}")
    if isinstance(err, IncompleteSnapshotError):
        return HubError(f"the cached snapshot of {repo.label} at {err.snapshot_path} is incomplete; "
                        f"run once with network access to complete it ({err})")
    if isinstance(err, LocalEntryNotFoundError):
        return _not_cached_error(err, repo, network_error)
    if isinstance(err, HfHubHTTPError):
        return _http_error(err, repo)
    if isinstance(err, OfflineModeIsEnabled):
        return HubError(f"offline (HF_HUB_OFFLINE=1) and {repo.label} needs the Hugging Face Hub: {_first_line(err)}")
    if _is_network_error(err):  # snapshot_download handles a Hub it cannot reach: this broke mid-download
        return HubError(f"the connection to the Hugging Face Hub failed while downloading {repo.label} "
                        f"({type(err).__name__}: {_first_line(err)}); files already complete stay in the cache, "
                        "run again to fetch the rest")
    return HubError(f"downloading {repo.label} into the cache at {repo.cache_root} failed "
                    f"({type(err).__name__}: {_first_line(err)})")


def _http_error(err: HfHubHTTPError, repo: RepoRef) -> HubError:
    status = getattr(getattr(err, "response", None), "status_code", None)
    if isinstance(status, int) and status >= 500:
        return HubError(f"the Hugging Face Hub failed with HTTP {status} while serving {repo.label}; "
                        f"try again later ({_first_line(err)})")
    return HubError(f"the Hugging Face Hub refused {repo.label}: {_first_line(err)}")


def _not_cached_error(err: LocalEntryNotFoundError, repo: RepoRef, network_error: Exception | None) -> HubError:
    cause = network_error or err.__cause__
    where = f"{repo.label} is not in the cache at {repo.cache_root} ({_cache_contents(repo)})"
    if cause is not None and not isinstance(cause, OfflineModeIsEnabled):
        return NotCachedError(f"could not reach the Hugging Face Hub ({type(cause).__name__}: {_first_line(cause)}) "
                              f"and {where}", repo.label)
    switches = (["set HF_HUB_OFFLINE=0"] if is_offline_mode() else []) + (
        ["pass local_files_only=False"] if repo.local_files_only else [])
    return NotCachedError(f"offline and {where}; run once with network or "
                          f"{' and '.join(switches) or 'set HF_HUB_OFFLINE=0'}", repo.label)


def _cache_contents(repo: RepoRef) -> str:
    """What the cache holds for this repo: which revisions, or nothing."""
    if not repo.storage_folder.is_dir():
        return f"nothing of {repo.repo_id} is cached there"
    refs_dir = repo.storage_folder / "refs"
    refs = sorted(str(p.relative_to(refs_dir)) for p in refs_dir.rglob("*") if p.is_file()) if refs_dir.is_dir() else []
    snapshots_dir = repo.storage_folder / "snapshots"
    commits = sorted(p.name for p in snapshots_dir.iterdir()) if snapshots_dir.is_dir() else []
    return f"cached revisions: {', '.join(refs) or 'none'}; cached commits: {', '.join(commits) or 'none'}"


def _is_network_error(err: BaseException) -> bool:
    """Connection-level failures (any HTTP client huggingface_hub uses), not HTTP status errors."""
    if isinstance(err, (OfflineModeIsEnabled, ConnectionError, TimeoutError)):
        return True
    for module_name, class_name in TRANSPORT_ERRORS:
        module = sys.modules.get(module_name)  # only a loaded client can have raised
        error_type = getattr(module, class_name, None) if module is not None else None
        if isinstance(error_type, type) and isinstance(err, error_type):
            return True
    return False


def _first_line(err: BaseException) -> str:
    lines = [line for line in str(err).splitlines() if line.strip()]
    return lines[0] if lines else type(err).__name__
