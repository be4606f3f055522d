"""Loopback Hugging Face Hub API server for tests (standard library only).

It answers the part of the Hub HTTP API that the real `huggingface_hub` and `datasets` clients use
to push and load datasets, so tests exercise the project's real push/load code over HTTP without
monkeypatching: repo info, repo and branch creation, preupload, the Git LFS batch API (basic
transfer), ndjson commits, tree / paths-info listings, refs, commit history and file downloads
with Range support. Repos live on disk with real commits (40-hex shas), branches and pull-request
refs (`refs/pr/N`).

Clients reach it through environment variables only, read by `huggingface_hub` at
import time (so run the client in a subprocess): `HF_ENDPOINT=http://127.0.0.1:PORT` (not
`localhost`: `datasets` probes `datasets-server.<host>`) and `HF_HUB_DISABLE_XET=1` (LFS basic
transfer instead of Xet), plus `HF_TOKEN` for writes.

Standalone: `python tests/hub_server.py --root DIR --port N`.
"""

import argparse
import base64
import fnmatch
import hashlib
import json
import os
import re
import sys
import tempfile
import threading
import traceback
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import NamedTuple
from urllib.parse import parse_qs, quote, unquote, urlencode, urlsplit

# What a new repo's first commit holds, so that `sha` is never null: the Hub's stock LFS patterns.
INITIAL_GITATTRIBUTES = "".join(
    f"{pattern} filter=lfs diff=lfs merge=lfs -text\n"
    for pattern in (
        "*.7z *.arrow *.bin *.bz2 *.ckpt *.gz *.h5 *.joblib *.lz4 *.mds *.model *.msgpack *.npy *.npz"
        " *.onnx *.ot *.parquet *.pb *.pickle *.pkl *.pt *.pth *.safetensors *.tar *.tflite *.wasm"
        " *.xz *.zip *.zst *.mp3 *.ogg *.wav *.flac *.jpg *.jpeg *.png *.webp *.mp4"
    ).split()
)
# The Hub refuses regular (non-LFS) files above this size.
LFS_SIZE_THRESHOLD = 10 * 1024 * 1024
LFS_POINTER = "version https://git-lfs.github.com/spec/v1\noid sha256:{oid}\nsize {size}\n"
REPO_TYPES = {"models": "", "datasets": "datasets/", "spaces": "spaces/"}  # API name -> URL prefix
_REPO_ID = re.compile(r"[\w.-]+/[\w.-]+")


class HubError(Exception):
    """An API failure, answered as JSON plus the `X-Error-Code` header the client maps to exceptions."""

    def __init__(self, status: int, message: str, code: str | None = None, headers=None, extra=None):
        super().__init__(message)
        self.status, self.message, self.code = status, message, code
        self.headers = headers or {}  # more response headers
        self.extra = extra or {}  # more JSON body fields


class LoggedRequest(NamedTuple):
    method: str
    path: str  # as requested, query string included
    bytes_sent: int  # response body bytes


def git_blob_oid(data: bytes) -> str:
    """The git object id of a blob: what the Hub reports as a regular file's `oid`."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _matches(patterns: list[str], path: str) -> bool:
    """gitattributes/gitignore-style match: slash-less patterns match the basename at any depth."""
    name = path.rsplit("/", 1)[-1]
    return any(fnmatch.fnmatchcase(path if "/" in p else name, p.lstrip("/")) for p in patterns)


class RepoStore:
    """Repos on disk, each under `root/{models,datasets,spaces}/{namespace}/{name}/`:

    - `repo.json`: creation date, privacy and refs (`refs/heads/<branch>`, `refs/pr/<n>`) -> commit sha;
    - `commits/<sha>.json`: parents, message, date and the full tree (path -> blob record);
    - `objects/<sha256>`: file contents, regular and LFS alike (content-addressed, so deduplicated).

    A repo is addressed by its key, e.g. `datasets/user/name`. One lock serialises every read and
    write, which keeps refs and commits consistent under the threaded HTTP server.
    """

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        self.lock = threading.RLock()

    # -- repos and refs ---------------------------------------------------------------------

    def create_repo(self, key: str, private: bool, author: str) -> bool:
        """Create the repo with an initial `.gitattributes` commit; False if it already exists."""
        with self.lock:
            if (self.root / key / "repo.json").exists():
                return False
            (self.root / key / "commits").mkdir(parents=True)
            (self.root / key / "objects").mkdir()
            blob = self._store_bytes(key, INITIAL_GITATTRIBUTES.encode(), lfs=False)
            sha = self._write_commit(key, None, {".gitattributes": blob}, "initial commit", "", author)
            self._save_meta(key, {"createdAt": _now(), "private": private, "refs": {"refs/heads/main": sha}})
            return True

    def meta(self, key: str) -> dict:
        try:
            return json.loads((self.root / key / "repo.json").read_text())
        except FileNotFoundError:
            raise HubError(404, f"Repository {key} not found", "RepoNotFound") from None

    def resolve(self, key: str, revision: str) -> str:
        """Commit sha of a branch, `refs/heads/..`, `refs/pr/N`, or a (possibly abbreviated) sha."""
        with self.lock:
            refs = self.meta(key)["refs"]
            for ref in (revision, f"refs/heads/{revision}"):
                if ref.startswith("refs/") and ref in refs:
                    return refs[ref]
            if re.fullmatch(r"[0-9a-f]{7,40}", revision):
                found = [p.stem for p in (self.root / key / "commits").glob(f"{revision}*.json")]
                if len(found) == 1:
                    return found[0]
            raise HubError(404, f"Invalid rev id: {revision}", "RevisionNotFound")

    def commit_record(self, key: str, sha: str) -> dict:
        return json.loads((self.root / key / "commits" / f"{sha}.json").read_text())

    def tree(self, key: str, revision: str) -> tuple[str, dict]:
        """(commit sha, {path: blob record}) of a revision."""
        with self.lock:
            sha = self.resolve(key, revision)
            return sha, self.commit_record(key, sha)["tree"]

    def history(self, key: str, revision: str) -> list[dict]:
        """Commits reachable through first parents, newest first."""
        with self.lock:
            sha, commits = self.resolve(key, revision), []
            while sha:
                commits.append(self.commit_record(key, sha))
                sha = commits[-1]["parents"][0] if commits[-1]["parents"] else None
            return commits

    def create_branch(self, key: str, branch: str, starting_point: str | None) -> None:
        with self.lock:
            meta = self.meta(key)
            if branch.startswith("refs/") or not re.fullmatch(r"[\w.\-/]+", branch):
                raise HubError(400, f"Invalid branch name: {branch}")
            if f"refs/heads/{branch}" in meta["refs"]:
                raise HubError(409, f"Branch {branch} already exists")
            meta["refs"][f"refs/heads/{branch}"] = self.resolve(key, starting_point or "main")
            self._save_meta(key, meta)

    # -- objects ----------------------------------------------------------------------------

    def object_path(self, key: str, sha256: str) -> Path:
        return self.root / key / "objects" / sha256

    def has_object(self, key: str, sha256: str, size: int) -> bool:
        path = self.object_path(key, sha256)
        return path.is_file() and path.stat().st_size == size

    def store_object(self, key: str, sha256: str, data: bytes) -> None:
        """Keep an uploaded LFS object, refusing content that does not hash to its announced oid."""
        if hashlib.sha256(data).hexdigest() != sha256:
            raise HubError(400, f"Uploaded content does not match oid {sha256}")
        with self.lock:
            self.meta(key)
            self._write_object(key, sha256, data)

    # -- commits ----------------------------------------------------------------------------

    def commit(self, key: str, revision: str, header: dict, operations: list[dict], create_pr: bool, author: str):
        """Apply ndjson commit operations on top of `revision`; return (commit sha, PR number or None).

        Like the Hub: committing to a missing branch is a 404 (branches come from `create_branch`),
        a stale `parentCommit` is a 412, and `create_pr` opens `refs/pr/N` from the parent commit.
        """
        with self.lock:
            meta = self.meta(key)
            parent_commit = header.get("parentCommit")
            if create_pr:
                base = self.resolve(key, parent_commit or revision)
                numbers = [int(ref.rsplit("/", 1)[1]) for ref in meta["refs"] if ref.startswith("refs/pr/")]
                pr_num = 1 + max(numbers, default=0)
                ref = f"refs/pr/{pr_num}"
            else:
                pr_num = None
                ref = revision if revision.startswith("refs/pr/") else f"refs/heads/{revision}"
                if ref not in meta["refs"]:
                    raise HubError(404, f"Invalid rev id: {revision}", "RevisionNotFound")
                base = meta["refs"][ref]
                if parent_commit and not base.startswith(parent_commit):
                    raise HubError(412, "A commit has happened since. Please refresh and try again.")
            tree = dict(self.commit_record(key, base)["tree"])
            for op in operations:
                self._apply(key, tree, op["key"], op["value"])
            for path in tree:
                parents = path.split("/")[:-1]
                if any("/".join(parents[: i + 1]) in tree for i in range(len(parents))):
                    raise HubError(400, f"{path} is inside a path that is a file")
            summary = header.get("summary") or "Upload files"
            sha = self._write_commit(key, base, tree, summary, header.get("description", ""), author)
            meta["refs"][ref] = sha
            self._save_meta(key, meta)
            return sha, pr_num

    def _apply(self, key: str, tree: dict, kind: str, value: dict) -> None:
        path = value["path"]
        if kind == "file":
            content = value["content"]
            data = base64.b64decode(content) if value.get("encoding") == "base64" else content.encode()
            tree[_checked_path(path)] = self._store_bytes(key, data, lfs=False)
        elif kind == "lfsFile":
            object_path = self.object_path(key, value["oid"])
            if not object_path.is_file():
                raise HubError(400, f"LFS object {value['oid']} for {path} was never uploaded")
            tree[_checked_path(path)] = _blob_record(value["oid"], object_path.stat().st_size, lfs=True)
        elif kind == "deletedFile":
            if tree.pop(path, None) is None:
                raise HubError(404, f"A file with this name doesn't exist: {path}", "EntryNotFound")
        elif kind == "deletedFolder":
            prefix = path.rstrip("/") + "/"
            doomed = [p for p in tree if p.startswith(prefix)]
            if not doomed:
                raise HubError(404, f"A folder with this name doesn't exist: {path}", "EntryNotFound")
            for p in doomed:
                del tree[p]
        else:
            raise HubError(400, f"Unknown commit operation {kind!r}")

    def _store_bytes(self, key: str, data: bytes, lfs: bool) -> dict:
        sha256 = hashlib.sha256(data).hexdigest()
        self._write_object(key, sha256, data)
        return _blob_record(sha256, len(data), lfs, git_oid=None if lfs else git_blob_oid(data))

    def _write_object(self, key: str, sha256: str, data: bytes) -> None:
        target = self.object_path(key, sha256)
        if not target.exists():
            _atomic_write(target, data)

    def _write_commit(self, key: str, parent: str | None, tree: dict, title: str, message: str, author: str) -> str:
        record = {
            "parents": [parent] if parent else [],
            "title": title,
            "message": message,
            "date": _now(),
            "authors": [author],
            "tree": dict(sorted(tree.items())),
        }
        sha = hashlib.sha1(json.dumps(record, sort_keys=True).encode()).hexdigest()
        _atomic_write(self.root / key / "commits" / f"{sha}.json", json.dumps({"id": sha, **record}).encode())
        return sha

    def _save_meta(self, key: str, meta: dict) -> None:
        _atomic_write(self.root / key / "repo.json", json.dumps(meta, indent=1).encode())


def _blob_record(sha256: str, size: int, lfs: bool, git_oid: str | None = None) -> dict:
    """A tree entry. For LFS files the git oid is that of the pointer file, as on the Hub."""
    if lfs:
        git_oid = git_blob_oid(LFS_POINTER.format(oid=sha256, size=size).encode())
    return {"sha256": sha256, "size": size, "lfs": lfs, "oid": git_oid}


def _checked_path(path: str) -> str:
    if not path or path.startswith("/") or any(part in ("", ".", "..") for part in path.split("/")):
        raise HubError(400, f"Invalid path in repo: {path!r}")
    return path


def _atomic_write(target: Path, data: bytes) -> None:
    """Write then rename, so a reader never sees half a file."""
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, target)


# -- HTTP ---------------------------------------------------------------------------------------

_API = r"/api/(?P<kind>models|datasets|spaces)/(?P<repo>[^/]+/[^/]+)"
_GIT = r"/(?:(?P<prefix>datasets|spaces)/)?(?P<repo>[^/]+/[^/]+?)\.git/info/lfs/objects"
_RESOLVE = r"/(?:(?P<prefix>datasets|spaces)/)?(?P<repo>[^/]+/[^/]+)/resolve/(?P<rev>[^/]+)/(?P<path>.+)"
# (methods, path pattern, handler `route_<name>`, needs a token)
_ROUTE_TABLE = [
    ("GET", r"/api/whoami-v2", "whoami", True),
    ("GET", r"/api/agent-harnesses", "agent_harnesses", False),
    ("POST", r"/api/repos/create", "create_repo", True),
    ("POST", r"/api/validate-yaml", "validate_yaml", False),
    ("GET", _API + r"(?:/revision/(?P<rev>[^/]+))?", "repo_info", False),
    ("GET", _API + r"/refs", "refs", False),
    ("GET", _API + r"/commits/(?P<rev>[^/]+)", "list_commits", False),
    ("GET", _API + r"/tree/(?P<rev>[^/]+)(?:/(?P<path>.+))?", "tree", False),
    ("POST", _API + r"/paths-info/(?P<rev>[^/]+)", "paths_info", False),
    ("POST", _API + r"/preupload/(?P<rev>[^/]+)", "preupload", True),
    ("POST", _API + r"/commit/(?P<rev>[^/]+)", "commit", True),
    ("POST", _API + r"/branch/(?P<branch>[^/]+)", "create_branch", True),
    ("POST", _GIT + r"/batch", "lfs_batch", True),
    ("POST", _GIT + r"/verify", "lfs_verify", True),
    # The upload href is used without an Authorization header, like the Hub's pre-signed S3 URLs.
    ("PUT", _GIT + r"/(?P<oid>[0-9a-f]{64})", "lfs_upload", False),
    ("GET HEAD", _RESOLVE, "resolve", False),
]
ROUTES = [(methods.split(), re.compile(pattern + "$"), name, auth) for methods, pattern, name, auth in _ROUTE_TABLE]


class HubRequestHandler(BaseHTTPRequestHandler):
    """Dispatches one request to its `route_<name>` method."""

    protocol_version = "HTTP/1.1"  # keep-alive, as the clients' connection pools expect
    timeout = 60  # drop idle keep-alive connections so handler threads end

    def do_GET(self):
        self._dispatch()

    do_HEAD = do_POST = do_PUT = do_DELETE = do_GET

    @property
    def hub(self) -> "HubServer":
        return self.server.hub

    def log_request(self, code="-", size="-"):
        """No access log on stderr: the request log is `HubServer.requests`."""

    def _dispatch(self):
        self.bytes_sent, self._read_body = 0, None
        url = urlsplit(self.path)
        self.query = parse_qs(url.query)
        try:
            for methods, pattern, name, needs_token in ROUTES:
                match = pattern.match(url.path)
                if self.command in methods and match:
                    self._check_token(needs_token)
                    params = {k: unquote(v) for k, v in match.groupdict().items() if v is not None}
                    getattr(self, f"route_{name}")(**params)
                    break
            else:
                self.hub.unhandled.append((self.command, self.path))
                print(f"hub_server: no route for {self.command} {self.path}", file=sys.stderr, flush=True)
                raise HubError(404, f"No route for {self.command} {url.path}")
        except HubError as err:
            self._send_error(err)
        except ConnectionError:  # the client hung up mid-response (e.g. a stream closed early)
            self.close_connection = True
        except Exception as err:  # a server bug: answer 500 and show it, rather than hang the client
            traceback.print_exc()
            self._send_error(HubError(500, f"{type(err).__name__}: {err}"))
        finally:
            self.hub.requests.append(LoggedRequest(self.command, self.path, self.bytes_sent))

    def _check_token(self, needed: bool) -> None:
        auth = self.headers.get("Authorization", "")
        expected = self.hub.token
        if auth and expected is not None and auth != f"Bearer {expected}":
            raise HubError(401, "Invalid credentials in Authorization header")
        if needed and not auth.startswith("Bearer "):
            raise HubError(401, "You must be authenticated to access this resource")

    # -- request and response helpers ----------------------------------------------------------

    def _body(self) -> bytes:
        """The request body, sent with Content-Length or chunked (streamed uploads); read once."""
        if self._read_body is None:
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                chunks = []
                while size := int(self.rfile.readline().split(b";")[0], 16):
                    chunks.append(self.rfile.read(size))
                    self.rfile.readline()
                while self.rfile.readline() not in (b"\r\n", b"\n", b""):  # trailers
                    pass
                self._read_body = b"".join(chunks)
            else:
                self._read_body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        return self._read_body

    def _json_body(self) -> dict:
        try:
            return json.loads(self._body() or b"{}")
        except ValueError:
            raise HubError(400, "Request body is not valid JSON") from None

    def _send(self, status: int, body: bytes = b"", headers: dict | None = None, content_type="application/json"):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
            self.bytes_sent += len(body)

    def _send_json(self, obj, status: int = 200, headers: dict | None = None):
        self._send(status, json.dumps(obj).encode(), headers)

    def _send_error(self, err: HubError):
        headers = {"X-Error-Message": err.message.encode("ascii", "replace").decode(), **err.headers}
        if err.code:
            headers["X-Error-Code"] = err.code
        self._body()  # drain an unread body, or the kept-alive connection would parse it as a request
        self._send_json({"error": err.message, **err.extra}, err.status, headers)

    @property
    def base_url(self) -> str:
        """Where the client reached us, for the absolute URLs it is handed back."""
        host = self.headers.get("Host")
        return f"http://{host}" if host else self.hub.url

    def _key(self, kind: str | None = None, repo: str = "", prefix: str | None = None) -> str:
        """Storage key of the addressed repo: API routes name its `kind`, web/git routes a URL prefix."""
        if not _REPO_ID.fullmatch(repo):
            raise HubError(400, f"Invalid repo id: {repo}")
        return f"{kind or prefix or 'models'}/{repo}"

    def _flag(self, name: str) -> bool:
        return self.query.get(name, ["false"])[-1].lower() in ("1", "true")

    # -- routes --------------------------------------------------------------------------------

    def route_whoami(self):
        user = self.hub.user
        self._send_json({"type": "user", "name": user, "fullname": user, "orgs": [], "auth": {"type": "access_token"}})

    def route_agent_harnesses(self):
        """The client fetches this registry for its user agent: an empty one detects no agent."""
        self._send_json({"standardEnvVars": [], "harnesses": {}})

    def route_create_repo(self):
        body = self._json_body()
        kind = f"{body.get('type') or 'model'}s"
        if kind not in REPO_TYPES:
            raise HubError(400, f"Invalid repo type: {body.get('type')}")
        repo_id = f"{body.get('organization') or self.hub.user}/{body.get('name')}"
        private = body.get("private") or body.get("visibility") == "private"
        url = f"{self.base_url}/{REPO_TYPES[kind]}{repo_id}"
        if not self.hub.store.create_repo(self._key(kind, repo_id), bool(private), self.hub.user):
            raise HubError(409, f"You already created this {kind[:-1]} repo", extra={"url": url})
        self._send_json({"url": url, "name": repo_id, "id": repo_id})

    def route_validate_yaml(self):
        self._json_body()
        self._send_json({"errors": [], "warnings": []})

    def route_repo_info(self, kind, repo, rev="main"):
        key = self._key(kind, repo)
        store = self.hub.store
        with store.lock:
            meta = store.meta(key)
            sha, tree = store.tree(key, rev)
            last_modified = store.commit_record(key, sha)["date"]
        siblings = []
        for path, blob in tree.items():
            sibling = {"rfilename": path}
            if self._flag("blobs"):
                sibling.update(size=blob["size"], blobId=blob["oid"])
                if blob["lfs"]:
                    sibling["lfs"] = _lfs_block(blob, oid_key="sha256")
            siblings.append(sibling)
        info = {
            "_id": hashlib.sha1(key.encode()).hexdigest()[:24],
            "id": repo,
            "author": repo.split("/")[0],
            "sha": sha,
            "createdAt": meta["createdAt"],
            "lastModified": last_modified,
            "private": meta["private"],
            "gated": False,
            "disabled": False,
            "downloads": 0,
            "likes": 0,
            "tags": [],
            "siblings": siblings,
            "usedStorage": sum(blob["size"] for blob in tree.values()),
        }
        expand = self.query.get("expand")
        if expand:
            info = {k: v for k, v in info.items() if k in ("_id", "id", *expand)}
        self._send_json(info)

    def route_refs(self, kind, repo):
        refs = self.hub.store.meta(self._key(kind, repo))["refs"]

        def listed(prefix):
            return [
                {"name": ref[len(prefix) :] if prefix == "refs/heads/" else ref, "ref": ref, "targetCommit": sha}
                for ref, sha in sorted(refs.items())
                if ref.startswith(prefix)
            ]

        answer = {"branches": listed("refs/heads/"), "converts": [], "tags": []}
        if self._flag("include_prs"):
            answer["pullRequests"] = listed("refs/pr/")
        self._send_json(answer)

    def route_list_commits(self, kind, repo, rev):
        history = self.hub.store.history(self._key(kind, repo), rev)
        self._send_paginated([_commit_json(c) for c in history], page_size=self.hub.page_size)

    def route_tree(self, kind, repo, rev, path=""):
        key, path = self._key(kind, repo), path.strip("/")
        recursive, expand = self._flag("recursive"), self._flag("expand")
        with self.hub.store.lock:
            sha, tree = self.hub.store.tree(key, rev)
            prefix = f"{path}/" if path else ""
            below = {p: blob for p, blob in tree.items() if p.startswith(prefix)}
            if path and not below:
                raise HubError(404, f"{path} does not exist on {rev}", "EntryNotFound")
            entries = {}
            for file_path in below:
                parts = file_path[len(prefix) :].split("/")
                folders = [prefix + "/".join(parts[:i]) for i in range(1, len(parts))]
                for folder in folders if recursive else folders[:1]:
                    if folder not in entries:
                        entries[folder] = self._entry(key, sha, tree, folder, expand)
                if recursive or not folders:
                    entries[file_path] = self._entry(key, sha, tree, file_path, expand)
        self._send_paginated(
            [entries[p] for p in sorted(entries)], page_size=min(self.hub.page_size, 50 if expand else 1000)
        )

    def route_paths_info(self, kind, repo, rev):
        key = self._key(kind, repo)
        if "json" in self.headers.get("Content-Type", ""):
            body = self._json_body()
            paths, expand = body.get("paths", []), str(body.get("expand", "")).lower() == "true"
        else:
            form = parse_qs(self._body().decode())
            paths, expand = form.get("paths", []), form.get("expand", [""])[-1].lower() == "true"
        with self.hub.store.lock:
            sha, tree = self.hub.store.tree(key, rev)
            found = []
            for path in paths:
                path = path.strip("/")
                if path in tree or any(p.startswith(path + "/") for p in tree):
                    found.append(self._entry(key, sha, tree, path, expand))
        self._send_json(found)

    def route_preupload(self, kind, repo, rev):
        """Upload mode per file (LFS if `.gitattributes` says so, or binary, or big), the gitignore
        verdict, and the remote oid that lets the client skip unchanged files."""
        key, body = self._key(kind, repo), self._json_body()
        store = self.hub.store
        with store.lock:
            _, tree = store.tree(key, rev)
            attributes = [line.split() for line in _repo_text(store, key, tree, ".gitattributes")]
            gitignore = body.get("gitIgnore")
            gitignore = gitignore.splitlines() if gitignore is not None else _repo_text(store, key, tree, ".gitignore")
        lfs_patterns = [words[0] for words in attributes if "filter=lfs" in words[1:]]
        ignored = [line.strip() for line in gitignore if line.strip() and not line.startswith("#")]
        files = []
        for file in body.get("files", []):
            path, size = file["path"], int(file["size"])
            sample = base64.b64decode(file.get("sample", ""))
            lfs = size >= LFS_SIZE_THRESHOLD or b"\0" in sample or _matches(lfs_patterns, path)
            remote = tree.get(path)
            remote_oid = (remote["sha256"] if remote["lfs"] else remote["oid"]) if remote else None
            files.append(
                {
                    "path": path,
                    "uploadMode": "lfs" if lfs else "regular",
                    "shouldIgnore": _matches(ignored, path),
                    "oid": remote_oid,
                }
            )
        self._send_json({"files": files})

    def route_commit(self, kind, repo, rev):
        key = self._key(kind, repo)
        lines = [json.loads(line) for line in self._body().splitlines() if line.strip()]
        if not lines or lines[0].get("key") != "header":
            raise HubError(400, "The commit payload must start with a header line")
        create_pr = self._flag("create_pr")
        sha, pr_num = self.hub.store.commit(
            key, rev, lines[0]["value"], lines[1:], create_pr=create_pr, author=self.hub.user
        )
        repo_url = f"{self.base_url}/{REPO_TYPES[kind]}{repo}"
        self._send_json(
            {
                "success": True,
                "commitOid": sha,
                "commitUrl": f"{repo_url}/commit/{sha}",
                "pullRequestUrl": f"{repo_url}/discussions/{pr_num}" if pr_num else None,
                "hookOutput": "",
            }
        )

    def route_create_branch(self, kind, repo, branch):
        body = self._json_body()
        self.hub.store.create_branch(self._key(kind, repo), branch, body.get("startingPoint"))
        self._send_json({})

    def route_lfs_batch(self, repo, prefix=None):
        key, body = self._key(prefix=prefix, repo=repo), self._json_body()
        self.hub.store.meta(key)
        if body.get("operation") != "upload":
            raise HubError(400, "Only the 'upload' LFS operation is served")
        objects_url = f"{self.base_url}/{prefix + '/' if prefix else ''}{repo}.git/info/lfs/objects"
        objects = []
        for obj in body.get("objects", []):
            answer = {"oid": obj["oid"], "size": obj["size"], "authenticated": True}
            if not self.hub.store.has_object(key, obj["oid"], obj["size"]):
                answer["actions"] = {
                    "upload": {"href": f"{objects_url}/{obj['oid']}", "expires_in": 3600},
                    "verify": {"href": f"{objects_url}/verify", "expires_in": 3600},
                }
            objects.append(answer)
        self._send(
            200,
            json.dumps({"transfer": "basic", "objects": objects}).encode(),
            content_type="application/vnd.git-lfs+json",
        )

    def route_lfs_upload(self, repo, oid, prefix=None):
        self.hub.store.store_object(self._key(prefix=prefix, repo=repo), oid, self._body())
        self._send(200)

    def route_lfs_verify(self, repo, prefix=None):
        key, body = self._key(prefix=prefix, repo=repo), self._json_body()
        if not self.hub.store.has_object(key, body.get("oid", ""), body.get("size", -1)):
            raise HubError(404, f"LFS object {body.get('oid')} not found")
        self._send_json({"success": True})

    def route_resolve(self, repo, rev, path, prefix=None):
        key, store = self._key(prefix=prefix, repo=repo), self.hub.store
        with store.lock:
            sha, tree = store.tree(key, rev)
            blob = tree.get(path)
            if blob is None:  # X-Repo-Commit lets the client cache the miss
                raise HubError(404, f"{path} does not exist on {rev}", "EntryNotFound", {"X-Repo-Commit": sha})
            file = open(store.object_path(key, blob["sha256"]), "rb")
        with file:
            self._send_file(file, blob, sha)

    def _send_file(self, file, blob: dict, commit_sha: str):
        """Serve a file with the headers `hf_hub_download` and `HfFileSystem` rely on, honouring Range."""
        size = blob["size"]
        headers = {
            "X-Repo-Commit": commit_sha,
            "ETag": f'"{blob["sha256"] if blob["lfs"] else blob["oid"]}"',
            "Accept-Ranges": "bytes",
        }
        start, end, status = 0, size, 200
        wanted = self.headers.get("Range")
        if wanted and "," not in wanted:  # multi-range requests get the whole file
            match = re.fullmatch(r"\s*bytes=(\d*)-(\d*)\s*", wanted)
            if match and match.group(1):
                start = int(match.group(1))
                end = min(int(match.group(2)) + 1, size) if match.group(2) else size
            elif match and match.group(2):
                start = max(size - int(match.group(2)), 0)
            if not match or start >= size or start >= end:
                headers = {"Content-Range": f"bytes */{size}"}
                raise HubError(416, f"Range {wanted} not satisfiable for {size} bytes", headers=headers)
            status = 206
            headers["Content-Range"] = f"bytes {start}-{end - 1}/{size}"
        self.send_response(status)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(end - start))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        if self.command == "HEAD":
            return
        file.seek(start)
        remaining = end - start
        while remaining and (chunk := file.read(min(remaining, 1 << 20))):
            self.wfile.write(chunk)
            self.bytes_sent += len(chunk)
            remaining -= len(chunk)

    def _entry(self, key: str, sha: str, tree: dict, path: str, expand: bool) -> dict:
        """A tree / paths-info entry, with last commit and security status when expanded."""
        blob = tree.get(path)
        if blob is None:
            under = sorted((p, b["oid"]) for p, b in tree.items() if p.startswith(path + "/"))
            entry = {"type": "directory", "oid": hashlib.sha1(json.dumps(under).encode()).hexdigest(), "size": 0}
        else:
            entry = {"type": "file", "oid": blob["oid"], "size": blob["size"]}
            if blob["lfs"]:
                entry["lfs"] = _lfs_block(blob, oid_key="oid")
        entry["path"] = path
        if expand:
            last = _last_commit(self.hub.store, key, sha, path)
            entry["lastCommit"] = {"id": last["id"], "title": last["title"], "date": last["date"]}
            if blob is not None:
                entry["securityFileStatus"] = {"status": "safe", "avScan": None, "pickleImportScan": None}
        return entry

    def _send_paginated(self, items: list, page_size: int):
        """One page of `items` plus an absolute `Link: <...cursor=N>; rel="next"` header, like the Hub."""
        offset = int(self.query.get("cursor", ["0"])[-1])
        page = items[offset : offset + page_size]
        headers = {}
        if offset + page_size < len(items):
            query = {k: v[-1] for k, v in self.query.items()} | {"cursor": str(offset + page_size)}
            url = f"{self.base_url}{quote(urlsplit(self.path).path, safe='/%')}?{urlencode(query)}"
            headers["Link"] = f'<{url}>; rel="next"'
        self._send_json(page, headers=headers)


def _lfs_block(blob: dict, oid_key: str) -> dict:
    pointer_size = len(LFS_POINTER.format(oid=blob["sha256"], size=blob["size"]))
    return {oid_key: blob["sha256"], "size": blob["size"], "pointerSize": pointer_size}


def _commit_json(commit: dict) -> dict:
    return {
        "id": commit["id"],
        "title": commit["title"],
        "message": commit["message"],
        "date": commit["date"],
        "authors": [{"user": a} for a in commit["authors"]],
        "parents": commit["parents"],
    }


def _last_commit(store: RepoStore, key: str, sha: str, path: str) -> dict:
    """Newest commit (first-parent history) that changed `path`, a file or a folder."""

    def state(tree):
        return {p: b["sha256"] for p, b in tree.items() if p == path or p.startswith(path + "/")}

    history = store.history(key, sha)
    for commit, parent in zip(history, history[1:]):
        if state(commit["tree"]) != state(parent["tree"]):
            return commit
    return history[-1]


def _repo_text(store: RepoStore, key: str, tree: dict, path: str) -> list[str]:
    """Lines of a text file of the tree (e.g. `.gitattributes`), none if absent."""
    blob = tree.get(path)
    return store.object_path(key, blob["sha256"]).read_text(errors="replace").splitlines() if blob else []


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, hub: "HubServer"):
        self.hub = hub
        super().__init__(("127.0.0.1", hub.port), HubRequestHandler)


def client_env(endpoint: str, home: Path, token: str) -> dict:
    """The environment of a client process pointed at the server: its own empty HF_HOME and datasets cache."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE_"))}
    env.update(
        HF_ENDPOINT=endpoint,
        HF_HUB_DISABLE_XET="1",
        HF_TOKEN=token,
        HF_HOME=str(home / "hf_home"),
        HF_DATASETS_CACHE=str(home / "datasets_cache"),
    )
    return env


class HubServer:
    """A loopback Hub on a free port of 127.0.0.1, storing repos under `root_dir`.

    Use as a context manager or with `start()` / `stop()`. `requests` logs every request as
    (method, path, bytes_sent); `unhandled` lists the (method, path) that matched no route.
    `token`, when given, is the only one accepted; otherwise any Bearer token may write.
    `page_size` caps tree / commit listing pages (the Hub's is 1000, 50 with expand).
    """

    def __init__(
        self, root_dir, *, port: int = 0, token: str | None = None, user: str = "user", page_size: int = 1000
    ):
        self.store = RepoStore(root_dir)
        self.requests: list[LoggedRequest] = []
        self.unhandled: list[tuple[str, str]] = []
        self.port, self.token, self.user, self.page_size = port, token, user, page_size
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> str:
        """Bind and serve in a daemon thread; return the base URL for HF_ENDPOINT."""
        self._httpd = _Server(self)
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="hub-server", daemon=True)
        self._thread.start()
        return self.url

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._thread.join()
            self._httpd = None

    def __enter__(self) -> "HubServer":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- inspection ----------------------------------------------------------------------------

    def list_files(self, repo_id: str, revision: str = "main", repo_type: str = "dataset") -> dict[str, int]:
        """{path: size in bytes} of every file at `revision`."""
        _, tree = self.store.tree(f"{repo_type}s/{repo_id}", revision)
        return {path: blob["size"] for path, blob in tree.items()}

    def read_file(self, repo_id: str, path: str, revision: str = "main", repo_type: str = "dataset") -> bytes:
        key = f"{repo_type}s/{repo_id}"
        with self.store.lock:
            _, tree = self.store.tree(key, revision)
            if path not in tree:
                raise FileNotFoundError(f"{path} not in {repo_id}@{revision}")
            return self.store.object_path(key, tree[path]["sha256"]).read_bytes()

    def is_lfs(self, repo_id: str, path: str, revision: str = "main", repo_type: str = "dataset") -> bool:
        """Whether the file was committed through LFS (`lfsFile`) rather than inline (`file`)."""
        return self.store.tree(f"{repo_type}s/{repo_id}", revision)[1][path]["lfs"]

    def commits(self, repo_id: str, revision: str = "main", repo_type: str = "dataset") -> list[dict]:
        """History of `revision`, newest first: dicts with id, title, message, date, authors, parents."""
        return [_commit_json(c) for c in self.store.history(f"{repo_type}s/{repo_id}", revision)]

    def refs(self, repo_id: str, repo_type: str = "dataset") -> dict[str, str]:
        """{ref: commit sha}, e.g. {"refs/heads/main": ..., "refs/pr/1": ...}."""
        with self.store.lock:
            return dict(self.store.meta(f"{repo_type}s/{repo_id}")["refs"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", required=True, help="directory holding the repos")
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0: a free one)")
    parser.add_argument("--token", help="the only token accepted (default: any)")
    args = parser.parse_args()
    server = HubServer(args.root, port=args.port, token=args.token)
    print(f"HF_ENDPOINT={server.start()}", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()


if __name__ == "__main__":
    main()
