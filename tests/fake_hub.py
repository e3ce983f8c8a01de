"""A fake Hugging Face Hub on 127.0.0.1 that answers the requests huggingface_hub 2.4 makes to download a model.

    with FakeHub({"org/name": {"main": {"config.json": b"{...}", "model.safetensors": data}}}) as hub:
        env = hub_env(cache, home, offline=False, endpoint=hub.url)   # run the code under test in a subprocess
        hub.downloads("org/name")   # the files whose bytes were requested: ["config.json", "model.safetensors"]

Endpoints, and what huggingface_hub reads from each:

    GET  /api/models/{repo}[/revision/{rev}]   model_info / repo_info: "sha" (the commit), "siblings"
    GET  /api/models/{repo}/tree/{rev}         list_repo_tree(recursive=True): path, size, oid, lfs; snapshot_download
                                               writes it to the cache as trees/<commit>.json
    HEAD /{repo}/resolve/{rev}/{file}          X-Repo-Commit, ETag (the blob's name in the cache: sha256 for LFS
                                               files, git blob sha1 otherwise), X-Linked-Etag / X-Linked-Size (LFS),
                                               Content-Length
    GET  /{repo}/resolve/{rev}/{file}          the same headers, then the bytes in chunks; honours "Range: bytes=N-"

No Xet headers are ever sent, so huggingface_hub takes its plain HTTP download path; LFS files are served here
rather than through a redirect to a CDN as on the real Hub (the headers are the same). Errors carry the Hub's
X-Error-Code (RepoNotFound, RevisionNotFound, EntryNotFound), which huggingface_hub maps to its exceptions.
`fail(repo, file, *faults)` queues faults for the next GETs of a file: "500", "reset" (TCP reset mid-body),
"drop" (connection closed mid-body) or "truncate" (a short body with no Content-Length).
"""
from __future__ import annotations

import hashlib
import json
import re
import socket
import struct
import threading
from collections import defaultdict, deque
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit

LFS_SUFFIXES = (".safetensors", ".bin", ".pth", ".pt")  # as hub_fixtures: files the Hub stores in LFS
FAULTS = ("500", "reset", "drop", "truncate")
COMMIT = re.compile(r"[0-9a-f]{40}")
REPO = r"(?P<repo>[^/]+/[^/]+)"
ROUTES = [
    ("tree", re.compile(rf"/api/models/{REPO}/tree/(?P<revision>[^/]+)(?:/(?P<path>.*))?")),
    ("info", re.compile(rf"/api/models/{REPO}(?:/revision/(?P<revision>[^/]+))?")),
    ("resolve", re.compile(rf"/{REPO}/resolve/(?P<revision>[^/]+)/(?P<path>.+)")),
]


def git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def is_lfs(name: str) -> bool:
    return name.endswith(LFS_SUFFIXES)


def etag(name: str, data: bytes) -> str:
    """What huggingface_hub names the blob after: sha256 for LFS files, the git blob sha1 otherwise."""
    return hashlib.sha256(data).hexdigest() if is_lfs(name) else git_blob_sha1(data)


@dataclass(frozen=True)
class Commit:
    sha: str
    files: dict[str, bytes]


def make_commit(repo_id: str, revision: str, files: dict[str, bytes]) -> Commit:
    """A commit named by `revision` when that is a 40-hex sha, else by a hash of the repo, revision and files."""
    if COMMIT.fullmatch(revision):
        return Commit(revision, dict(files))
    digest = hashlib.sha1(f"{repo_id}@{revision}".encode())
    for name in sorted(files):
        digest.update(name.encode() + hashlib.sha256(files[name]).digest())
    return Commit(digest.hexdigest(), dict(files))


class FakeHub:
    """Repos {repo_id: {branch_or_commit: {filename: bytes}}} served over HTTP; a context manager.

    `requests` logs every request as (method, path), the path without its query and with escapes decoded;
    `ranges` the (path, Range header) of each request that asked for part of a file.
    """

    def __init__(self, repos: dict[str, dict[str, dict[str, bytes]]], chunk_size: int = 256 * 1024):
        self.chunk_size = chunk_size
        self.refs: dict[str, dict[str, Commit]] = {}  # repo -> {branch name and commit sha -> commit}
        for repo_id, revisions in repos.items():
            commits = {revision: make_commit(repo_id, revision, files) for revision, files in revisions.items()}
            self.refs[repo_id] = {**commits, **{commit.sha: commit for commit in commits.values()}}
        self.requests: list[tuple[str, str]] = []  # (method, path)
        self.ranges: list[tuple[str, str]] = []  # (path, Range header) of GETs that resumed
        self.faults: dict[tuple[str, str], deque[str]] = defaultdict(deque)
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    # ---- control -------------------------------------------------------------------------------
    def start(self) -> "FakeHub":
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), FakeHubHandler)
        self._server.daemon_threads = True
        self._server.hub = self
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> "FakeHub":
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    @property
    def url(self) -> str:
        assert self._server is not None, "FakeHub is not running"
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def commit(self, repo_id: str, revision: str = "main") -> str:
        return self.refs[repo_id][revision].sha

    def fail(self, repo_id: str, filename: str, *faults: str) -> None:
        """The next GETs of `filename` (at any revision) meet these faults, one each, in order."""
        assert set(faults) <= set(FAULTS), f"unknown fault in {faults}; choose from {FAULTS}"
        with self._lock:
            self.faults[(repo_id, filename)].extend(faults)

    # ---- what was asked ------------------------------------------------------------------------
    def log(self, method: str, path: str, byte_range: str | None) -> None:
        with self._lock:
            self.requests.append((method, path))
            if byte_range is not None:
                self.ranges.append((path, byte_range))

    def requested(self, repo_id: str, method: str = "GET") -> list[str]:
        """The paths of `repo_id` requested with `method`, in order."""
        prefixes = (f"/api/models/{repo_id}/", f"/{repo_id}/")
        with self._lock:
            return [path for verb, path in self.requests if verb == method
                    and (path.startswith(prefixes) or path == f"/api/models/{repo_id}")]

    def downloads(self, repo_id: str) -> list[str]:
        """The files of `repo_id` whose bytes were requested (GET /resolve), sorted, each once."""
        prefix = f"/{repo_id}/resolve/"
        return sorted({path[len(prefix):].split("/", 1)[1] for path in self.requested(repo_id)
                       if path.startswith(prefix)})

    def next_fault(self, repo_id: str, filename: str) -> str | None:
        with self._lock:
            queue = self.faults.get((repo_id, filename))
            return queue.popleft() if queue else None


# ---- responses -------------------------------------------------------------------------------------
def model_info(repo_id: str, commit: Commit) -> dict:
    return {"id": repo_id, "modelId": repo_id, "sha": commit.sha, "private": False, "gated": False,
            "disabled": False, "tags": [], "downloads": 0, "likes": 0,
            "siblings": [{"rfilename": name} for name in sorted(commit.files)]}


def tree_listing(commit: Commit, folder: str = "") -> list[dict]:
    """The recursive /tree answer for `folder` (the root by default): its subfolders, then its files with their
    git oid, size and LFS pointer info."""
    prefix = folder.strip("/") + "/" if folder.strip("/") else ""
    names = sorted(name for name in commit.files if name.startswith(prefix))
    parts = [name.split("/") for name in names]
    folders = sorted({"/".join(p[:k]) for p in parts for k in range(1, len(p))} - {prefix.rstrip("/")})
    entries = [{"type": "directory", "oid": hashlib.sha1(path.encode()).hexdigest(), "path": path}
               for path in folders if path.startswith(prefix)]
    for name in names:
        data = commit.files[name]
        entry = {"type": "file", "oid": git_blob_sha1(data), "size": len(data), "path": name}
        if is_lfs(name):
            pointer = f"version https://git-lfs.github.com/spec/v1\noid sha256:{etag(name, data)}\nsize {len(data)}\n"
            entry.update(oid=git_blob_sha1(pointer.encode()),
                         lfs={"oid": etag(name, data), "size": len(data), "pointerSize": len(pointer)})
        entries.append(entry)
    return entries


def file_headers(commit: Commit, name: str) -> dict[str, str]:
    data = commit.files[name]
    headers = {"X-Repo-Commit": commit.sha, "ETag": f'"{etag(name, data)}"', "Accept-Ranges": "bytes",
               "Content-Type": "application/octet-stream"}
    if is_lfs(name):
        headers.update({"X-Linked-Etag": f'"{etag(name, data)}"', "X-Linked-Size": str(len(data))})
    return headers


class FakeHubHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as huggingface_hub's httpx2 client expects of the Hub

    @property
    def hub(self) -> FakeHub:
        return self.server.hub

    def do_GET(self):
        self.route(body=True)

    def do_HEAD(self):
        self.route(body=False)

    def log_message(self, *args):
        pass

    def route(self, body: bool) -> None:
        path = urlsplit(self.path).path  # matched still quoted: a revision like refs%2Fpr%2F1 is one segment
        self.hub.log(self.command, unquote(path), self.headers.get("Range"))
        for kind, pattern in ROUTES:
            match = pattern.fullmatch(path)
            if match:
                found = {key: unquote(value) for key, value in match.groupdict().items() if value is not None}
                return self.answer(kind, found["repo"], found.get("revision", "main"), found.get("path"), body)
        self.send_status(404, {"X-Error-Code": "RepoNotFound", "X-Error-Message": f"no route for {path}"})

    def answer(self, kind: str, repo_id: str, revision: str, path: str | None, body: bool) -> None:
        if repo_id not in self.hub.refs:
            return self.send_status(404, {"X-Error-Code": "RepoNotFound", "X-Error-Message": "Repository not found"})
        commit = self.hub.refs[repo_id].get(revision)
        if commit is None:
            return self.send_status(404, {"X-Error-Code": "RevisionNotFound", "X-Error-Message": "Invalid rev id"})
        if kind == "info":
            return self.send_json(model_info(repo_id, commit))
        if kind == "tree":
            return self.send_json(tree_listing(commit, path or ""))
        if path not in commit.files:
            return self.send_status(404, {"X-Error-Code": "EntryNotFound", "X-Repo-Commit": commit.sha,
                                          "X-Error-Message": "Entry not found"})
        fault = self.hub.next_fault(repo_id, path) if body else None
        if fault is not None:
            return self.send_fault(fault, commit, path)
        self.send_file(commit, path, body)

    # ---- writing -------------------------------------------------------------------------------
    def send_status(self, status: int, headers: dict[str, str]) -> None:
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def send_json(self, payload) -> None:
        data = json.dumps(payload).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command == "GET":
            self.wfile.write(data)

    def send_file(self, commit: Commit, name: str, body: bool) -> None:
        data = commit.files[name]
        start = self.range_start(len(data)) if body else 0
        self.send_response(206 if start else 200)
        for key, value in file_headers(commit, name).items():
            self.send_header(key, value)
        if start:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        self.send_header("Content-Length", str(len(data) - start))
        self.end_headers()
        if body:
            self.send_chunks(data[start:])

    def send_chunks(self, data: bytes) -> None:
        for offset in range(0, len(data), self.hub.chunk_size):
            self.wfile.write(data[offset:offset + self.hub.chunk_size])
            self.wfile.flush()

    def range_start(self, size: int) -> int:
        match = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range", ""))
        return int(match[1]) if match and int(match[1]) < size else 0

    def send_fault(self, fault: str, commit: Commit, name: str) -> None:
        data = commit.files[name]
        if fault == "500":
            return self.send_status(500, {"X-Error-Message": "Internal Error - We're working hard to fix this"})
        self.send_response(200)
        for key, value in file_headers(commit, name).items():
            self.send_header(key, value)
        if fault == "truncate":
            self.send_header("Connection", "close")  # a body ended by closing, without Content-Length
        else:
            self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.send_chunks(data[:len(data) // 2])
        self.close_connection = True
        if fault == "reset":  # SO_LINGER 0: close() sends a TCP RST instead of a FIN
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()
