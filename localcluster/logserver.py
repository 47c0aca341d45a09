"""The node agent's kubelet log endpoint: `kubectl logs` and pods/log on the local cluster.

The API server answers `GET /api/v1/namespaces/N/pods/P/log` by calling the
kubelet of the pod's node at `https://<InternalIP>:<kubeletEndpoint.Port>/
containerLogs/N/P/C`. The agent serves that path for all of its nodes from one
HTTPS port on loopback: a serving certificate from the cluster's CA, and only
clients with a certificate from the same CA (the API server's kubelet client
certificate) are served. The log is the container's current log file (an
init container's own, else the pod's); `follow` streams new lines until that
container's process is gone; `tailLines` and `limitBytes` are honoured.
"""

from __future__ import annotations

import ssl
import threading
import time
from collections.abc import Callable, Iterator
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

FOLLOW_POLL_S = 0.2
CHUNK = 64 * 1024

# (namespace, pod, container) -> the container's log file and whether its process may
# still write to it
LogLookup = Callable[[str, str, str], tuple[Path, bool] | None]


def tail_bytes(data: bytes, lines: int | None) -> bytes:
    """The last `lines` lines of `data` (everything when None)."""
    if lines is None:
        return data
    if lines <= 0:
        return b""
    kept = data.splitlines(keepends=True)
    return b"".join(kept[-lines:])


def parse_log_path(path: str) -> tuple[str, str, str] | None:
    """`/containerLogs/<ns>/<pod>/<container>` -> its three parts, else None."""
    parts = [p for p in path.split("/") if p]
    if len(parts) != 4 or parts[0] != "containerLogs":
        return None
    return parts[1], parts[2], parts[3]


class KubeletLogServer:
    """One HTTPS server on 127.0.0.1 serving every local node's container logs."""

    def __init__(self, lookup: LogLookup, cert: Path, key: Path, client_ca: Path) -> None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        context.load_verify_locations(client_ca)
        context.verify_mode = ssl.CERT_REQUIRED
        handler = _handler(lookup)
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="kubelet-logs", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def _handler(lookup: LogLookup) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            url = urlsplit(self.path)
            where = parse_log_path(url.path)
            found = lookup(*where) if where else None
            if where is None or found is None:
                self._error(HTTPStatus.NOT_FOUND, "no such container log")
                return
            query = parse_qs(url.query)
            try:
                tail = _int(query, "tailLines")
                limit = _int(query, "limitBytes")
            except ValueError:
                self._error(HTTPStatus.BAD_REQUEST, "tailLines and limitBytes are integers")
                return
            follow = query.get("follow", ["false"])[0] == "true"
            path, live = found
            namespace, pod, container = where

            def still_written() -> bool:
                again = lookup(namespace, pod, container)
                return bool(again and again[0] == path and again[1])

            self.send_response(HTTPStatus.OK)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            try:
                for chunk in _read(path, tail, limit, follow and live, still_written):
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                    self.wfile.flush()
                self.wfile.write(b"0\r\n\r\n")
            except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
                pass  # the client stopped reading

        def _error(self, status: HTTPStatus, message: str) -> None:
            body = message.encode()
            self.send_response(status)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass  # the API server's own log says who asked

    return Handler


def _int(query: dict[str, list[str]], name: str) -> int | None:
    values = query.get(name)
    return int(values[0]) if values else None


def _read(
    path: Path, tail: int | None, limit: int | None, follow: bool, live: Callable[[], bool]
) -> Iterator[bytes]:
    sent = 0
    with path.open("rb") as handle:
        first = tail_bytes(handle.read(), tail)
        if limit is not None:
            first = first[:limit]
        if first:
            sent += len(first)
            yield first
        while follow and (limit is None or sent < limit):
            more = handle.read(CHUNK)
            if more:
                if limit is not None:
                    more = more[: limit - sent]
                sent += len(more)
                yield more
                continue
            if not live():
                return
            time.sleep(FOLLOW_POLL_S)
