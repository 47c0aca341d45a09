"""The real API app served on a loopback port from a thread of the test process."""

from __future__ import annotations

import socket
import threading

import httpx
import uvicorn

from fovea.api.app import create_app
from fovea.api.settings import Settings
from waiting import eventually


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ApiServer:
    """The real app under uvicorn on a loopback port, in a thread of the test process."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        # Bound here and handed to uvicorn: a port picked free, closed, then bound again
        # could be taken in between (the integration layer runs on several workers).
        self._socket = socket.socket()
        self._socket.bind(("127.0.0.1", 0))
        self.port = int(self._socket.getsockname()[1])
        self.url = f"http://127.0.0.1:{self.port}"
        self.app = create_app(settings)
        config = uvicorn.Config(
            self.app,
            host="127.0.0.1",
            port=self.port,
            log_level="warning",
            lifespan="on",
            # A test that leaves an event stream open (an SSE reader thread) would hold the
            # shutdown until stop()'s join gave up (30 s): cancel what still runs after 1 s.
            timeout_graceful_shutdown=1,
        )
        self.server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self.server.run,
            kwargs={"sockets": [self._socket]},
            name="api-under-test",
            daemon=True,
        )
        self.http = httpx.Client(base_url=self.url, timeout=30)

    def start(self) -> ApiServer:
        self._thread.start()
        started = eventually(lambda: self.server.started or not self._thread.is_alive(), 30)
        assert started and self._thread.is_alive(), "uvicorn did not start"
        return self

    def wait_ready(self, timeout: float = 30) -> None:
        ready = eventually(lambda: self.http.get("/readyz").status_code == 200, timeout)
        assert ready, f"API cache not synced: {self.http.get('/readyz').text}"

    def stop(self) -> None:
        self.server.should_exit = True
        self._thread.join(30)
        self.http.close()
        self._socket.close()
        assert not self._thread.is_alive(), "uvicorn did not stop within 30 s"
