"""Real weights servers on loopback for tests and benchmarks: nothing from the internet.

- `HttpFileServer`: a plain HTTP file server (stdlib) with Content-Length, HEAD and
  single Range requests, answered by sendfile; faults can be injected per path (a status
  for the next N requests; a connection dropped after N bytes) and every GET is counted.
- `HubServer`: the Hugging Face hub's HTTP API, as much as its client uses to download
  (`HF_ENDPOINT`): repository info, file tree, `/resolve/` with the hub's error codes.
- `S3Server`: moto's S3-compatible server, run as its own process (`python -m
  moto.server`) on a free loopback port; `env()` gives the AWS_* environment a client needs.
- `write_safetensors`: a real .safetensors file of float32 tensors (no torch needed).
- `prefill_hf_cache`: a Hugging Face hub cache holding one repository snapshot, laid out
  as huggingface_hub writes it (blobs, snapshots of symlinks, refs), for HF_HUB_OFFLINE.

Run as a script it serves a directory over HTTP in the foreground (the benchmark's server
in its own process): `python -P weight_servers.py http DIR PORT`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import socket
import struct
import subprocess
import sys
import threading
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import unquote

_RANGE = re.compile(r"^bytes=(\d+)-(\d*)$")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --- HTTP -------------------------------------------------------------------------------------


@dataclass
class Faults:
    """Faults to inject, per URL path."""

    statuses: dict[str, list[int]] = field(default_factory=dict)  # answered before the file
    drops: dict[str, list[int]] = field(default_factory=dict)  # bytes sent before closing
    lock: threading.Lock = field(default_factory=threading.Lock)

    def next_status(self, path: str) -> int | None:
        with self.lock:
            queue = self.statuses.get(path)
            return queue.pop(0) if queue else None

    def next_drop(self, path: str) -> int | None:
        with self.lock:
            queue = self.drops.get(path)
            return queue.pop(0) if queue else None


class _Handler(BaseHTTPRequestHandler):
    server: _FileHTTPServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        return

    def do_HEAD(self) -> None:
        self._serve(body=False)

    def do_GET(self) -> None:
        self._serve(body=True)

    def _serve(self, body: bool) -> None:
        path = self.path.split("?", 1)[0]
        if body:
            self.server.gets[path] += 1
        status = self.server.faults.next_status(path) if body else None
        if status is not None:
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        file = (self.server.root / path.lstrip("/")).resolve()
        if not file.is_relative_to(self.server.root) or not file.is_file():
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        size = file.stat().st_size
        start, end = 0, size - 1
        match = _RANGE.match(self.headers.get("Range", ""))
        if match:
            start = int(match.group(1))
            end = int(match.group(2)) if match.group(2) else size - 1
            if start >= size:
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{size}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        else:
            self.send_response(200)
        count = end - start + 1
        self.send_header("Content-Length", str(count))
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Type", "application/octet-stream")
        self.end_headers()
        if not body:
            return
        drop = self.server.faults.next_drop(path)
        if drop is not None:
            count = min(count, drop)
        self.wfile.flush()
        with open(file, "rb") as handle:
            sent = self.connection.sendfile(handle, offset=start, count=count)
        self.server.bytes_sent[path] += sent
        if drop is not None:
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)


class _FileHTTPServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, root: Path, port: int) -> None:
        super().__init__(("127.0.0.1", port), _Handler)
        self.root = root.resolve()
        self.faults = Faults()
        self.gets: Counter[str] = Counter()
        self.bytes_sent: Counter[str] = Counter()


class HttpFileServer:
    """Serves the files under `root` at http://127.0.0.1:<port>/<relative path>."""

    def __init__(self, root: Path, port: int = 0) -> None:
        self.server = _FileHTTPServer(root, port)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    @property
    def faults(self) -> Faults:
        return self.server.faults

    @property
    def gets(self) -> Counter[str]:
        return self.server.gets

    @property
    def bytes_sent(self) -> Counter[str]:
        return self.server.bytes_sent

    def __enter__(self) -> HttpFileServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


# --- a Hugging Face hub (the protocol its client speaks) --------------------------------------


@dataclass
class HubRepo:
    files: dict[str, bytes]
    commit: str = ""
    gated_token: str | None = None  # set: a request without this bearer token is refused

    def __post_init__(self) -> None:
        if not self.commit:
            blob = b"".join(k.encode() + v for k, v in sorted(self.files.items()))
            self.commit = hashlib.sha1(blob).hexdigest()


class _HubHandler(BaseHTTPRequestHandler):
    server: _HubHTTPServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        return

    def _send(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, data: Any) -> None:
        self._send(200, json.dumps(data).encode(), {"Content-Type": "application/json"})

    def _error(self, status: int, code: str, message: str) -> None:
        body = json.dumps({"error": message}).encode()
        self._send(status, body, {"X-Error-Code": code, "Content-Type": "application/json"})

    def do_HEAD(self) -> None:
        self._route()

    def do_GET(self) -> None:
        self._route()

    def _repo(self, repo_id: str) -> HubRepo | None:
        repo = self.server.repos.get(repo_id)
        if repo is None:
            self._error(404, "RepoNotFound", f"Repository {repo_id} not found")
            return None
        if repo.gated_token and self.headers.get("Authorization") != f"Bearer {repo.gated_token}":
            self._error(401, "GatedRepo", f"Access to model {repo_id} is restricted")
            return None
        return repo

    def _revision_ok(self, repo: HubRepo, revision: str) -> bool:
        if unquote(revision) in ("main", repo.commit):
            return True
        self._error(404, "RevisionNotFound", f"Invalid rev id: {unquote(revision)}")
        return False

    def _route(self) -> None:
        self.server.requests.append(f"{self.command} {self.path}")
        path = self.path.split("?", 1)[0]
        if path.startswith("/api/models/"):
            rest = path.removeprefix("/api/models/")
            for marker in ("/revision/", "/tree/"):
                if marker in rest:
                    repo_id, _, revision = rest.partition(marker)
                    revision = revision.split("/", 1)[0]
                    break
            else:
                repo_id, marker, revision = rest, "/revision/", "main"
            repo = self._repo(repo_id)
            if repo is None or not self._revision_ok(repo, revision):
                return
            entries = sorted(repo.files.items())
            if marker == "/tree/":
                self._json(
                    [
                        {
                            "type": "file",
                            "oid": hashlib.sha1(content).hexdigest(),
                            "size": len(content),
                            "path": name,
                        }
                        for name, content in entries
                    ]
                )
                return
            self._json(
                {
                    "id": repo_id,
                    "modelId": repo_id,
                    "sha": repo.commit,
                    "private": False,
                    "gated": bool(repo.gated_token),
                    "siblings": [
                        {"rfilename": name, "size": len(content)} for name, content in entries
                    ],
                }
            )
            return
        repo_part, marker, rest = path.lstrip("/").partition("/resolve/")
        if not marker:
            self._error(404, "EntryNotFound", "not a hub path")
            return
        repo = self._repo(repo_part)
        revision, _, filename = rest.partition("/")
        if repo is None or not self._revision_ok(repo, revision):
            return
        content = repo.files.get(unquote(filename))
        if content is None:
            self._error(404, "EntryNotFound", f"{filename} does not exist")
            return
        digest = hashlib.sha256(content).hexdigest()
        self._send(
            200,
            content,
            {
                "X-Repo-Commit": repo.commit,
                "ETag": f'"{digest}"',
                "Accept-Ranges": "bytes",
                "Content-Type": "application/octet-stream",
            },
        )


class _HubHTTPServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, repos: dict[str, HubRepo]) -> None:
        super().__init__(("127.0.0.1", 0), _HubHandler)
        self.repos = repos
        self.requests: list[str] = []


class HubServer:
    """A model hub on loopback that huggingface_hub downloads from (`HF_ENDPOINT`).

    It answers what `snapshot_download` and `model_info` ask: the repository's
    info and file tree, and each file by `/resolve/` (HEAD and GET), with the
    hub's error codes (RepoNotFound, RevisionNotFound, GatedRepo).
    """

    def __init__(self, repos: dict[str, HubRepo]) -> None:
        self.server = _HubHTTPServer(repos)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    @property
    def requests(self) -> list[str]:
        return self.server.requests

    def __enter__(self) -> HubServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


# --- S3 (moto server) -------------------------------------------------------------------------

ACCESS_KEY = "fovea-test-access"
SECRET_KEY = "fovea-test-secret"


class S3Server:
    """moto's S3-compatible server in its own process on a free loopback port."""

    def __init__(self, start_timeout: float = 60.0) -> None:
        self.port = free_port()
        self.start_timeout = start_timeout
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self, credentials: bool = True) -> dict[str, str]:
        """The environment a fetch needs (credentials left out when asked)."""
        env = {"AWS_ENDPOINT_URL": self.endpoint, "AWS_REGION": "us-east-1"}
        if credentials:
            env.update(AWS_ACCESS_KEY_ID=ACCESS_KEY, AWS_SECRET_ACCESS_KEY=SECRET_KEY)
        return env

    def client(self) -> Any:
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name="us-east-1",
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
        )

    def __enter__(self) -> S3Server:
        command = [
            sys.executable,
            "-P",
            "-m",
            "moto.server",
            "-H",
            "127.0.0.1",
            "-p",
            str(self.port),
        ]
        self.process = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
        )
        # Imported here: this file also runs alone as the HTTP server (see above), where
        # the tests' helpers are not importable.
        from waiting import eventually

        process = self.process

        def listening() -> bool:
            if process.poll() is not None:
                raise RuntimeError(f"moto server exited with {process.returncode}")
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), timeout=1),
            ):
                return True
            return False

        if eventually(listening, self.start_timeout):
            return self
        self.__exit__(None, None, None)
        raise RuntimeError(f"moto server did not listen on {self.port} in {self.start_timeout}s")

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


# --- files ------------------------------------------------------------------------------------


def write_safetensors(path: Path, tensors: dict[str, tuple[int, ...]], seed: int = 0) -> str:
    """Write float32 tensors of the given shapes (deterministic values); the file's sha256."""
    header: dict[str, Any] = {}
    blobs = []
    offset = 0
    for index, (name, shape) in enumerate(sorted(tensors.items())):
        count = 1
        for dim in shape:
            count *= dim
        data = struct.pack(f"<{count}f", *((seed + index + i) % 97 / 97.0 for i in range(count)))
        header[name] = {
            "dtype": "F32",
            "shape": list(shape),
            "data_offsets": [offset, offset + len(data)],
        }
        blobs.append(data)
        offset += len(data)
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    path.parent.mkdir(parents=True, exist_ok=True)
    content = struct.pack("<Q", len(raw)) + raw + b"".join(blobs)
    path.write_bytes(content)
    return hashlib.sha256(content).hexdigest()


def write_random_file(path: Path, size: int, chunk: int = 1 << 24) -> None:
    """`size` bytes of pseudo-random data (a benchmark's object)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    block = os.urandom(min(size, chunk))
    with open(path, "wb") as out:
        left = size
        while left > 0:
            out.write(block[: min(left, len(block))])
            left -= len(block)


def prefill_hf_cache(hub_cache: Path, repo_id: str, files: dict[str, bytes]) -> str:
    """A hub cache with one snapshot of `repo_id` (refs/main → commit); the commit hash."""
    repo = hub_cache / f"models--{repo_id.replace('/', '--')}"
    commit = hashlib.sha1(repo_id.encode() + b"".join(sorted(files.values()))).hexdigest()
    for rel, content in files.items():
        blob = repo / "blobs" / hashlib.sha256(content).hexdigest()
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(content)
        link = repo / "snapshots" / commit / rel
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(commit)
    return commit


if __name__ == "__main__":
    if len(sys.argv) != 4 or sys.argv[1] != "http":
        sys.exit("usage: weight_servers.py http DIR PORT")
    server = _FileHTTPServer(Path(sys.argv[2]), int(sys.argv[3]))
    server.serve_forever()
