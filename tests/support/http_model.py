"""A model-server stand-in small enough to pass as `python -c`: real HTTP, any node kind.

`pod(...)` is a Pod that labels itself as the model-server pod of a selection
(the labels its Service selects) and runs SCRIPT: `GET /readyz` answers 200,
`POST /predict` answers `{"pod": <its name>}`, or, in mode "die", exits on the
spot without answering (a pod that dies mid-request). It listens on
`$HOST:$PORT` where the node agent sets them, else 0.0.0.0:8080 (a container).
"""

from __future__ import annotations

from typing import Any

from fovea.domain import constants as c
from fovea.domain.endpoints import serving_selector

SCRIPT = """
import json, os, sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
mode = sys.argv[1]
class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        self.answer({"ready": True})
    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if mode == "die":
            os._exit(3)
        self.answer({"pod": os.environ.get("HOSTNAME", "")})
    def answer(self, body):
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
    def log_message(self, *args):
        pass
address = (os.environ.get("HOST") or "0.0.0.0", int(os.environ.get("PORT") or 8080))
ThreadingHTTPServer(address, Handler).serve_forever()
"""


def pod(
    name: str,
    selection: str,
    model: str,
    mode: str = "answer",
    image: str = "fovea-models/http-model:test",
    python: str = "python",
    **spec: Any,
) -> dict[str, Any]:
    """The Pod body (restartPolicy Never: a pod that died stays dead)."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "labels": {c.LABEL_MANAGED_BY: c.MANAGED_BY, **serving_selector(selection, model)},
        },
        "spec": {
            "restartPolicy": "Never",
            "containers": [
                {
                    "name": "model-server",
                    "image": image,
                    "imagePullPolicy": "Never",
                    "command": [python, "-c", SCRIPT, mode],
                    "env": [{"name": c.ENV_MODEL, "value": model}],
                    "ports": [{"name": "http", "containerPort": c.MODEL_POD_PORT}],
                    "readinessProbe": {
                        "httpGet": {"path": "/readyz", "port": "http"},
                        "periodSeconds": 1,
                    },
                }
            ],
            **spec,
        },
    }
