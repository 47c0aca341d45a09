"""A stand-in for an sglang/vLLM server: starts, answers /health and completions, and can die.

A request with `"stream": true` is answered as the engines do: Server-Sent
Events, one `data: {...}` chunk per token (the words of the answer), with
`--token-delay` seconds between tokens, ending with `data: [DONE]`.

Run as a child process by the engine adapter's tests, exactly as a real
engine would be (same kind of command line, same health path).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--model-path", default="stand-in")
    parser.add_argument("--startup-seconds", type=float, default=0.3)
    parser.add_argument(
        "--die-after", type=float, default=None, help="exit 9 this long after start"
    )
    parser.add_argument("--fail-at-start", default=None, help="print this and exit 1 at once")
    parser.add_argument("--never-healthy", action="store_true")
    parser.add_argument("--hold-mib", type=int, default=0, help="keep this much memory resident")
    parser.add_argument(
        "--token-delay", type=float, default=0.0, help="seconds between streamed tokens"
    )
    args, _ = parser.parse_known_args()

    print(f"stand-in engine {os.getpid()} starting for {args.model_path}", flush=True)
    if args.fail_at_start:
        print(args.fail_at_start, flush=True)
        sys.exit(1)
    ballast = bytearray(args.hold_mib * 1024 * 1024)
    for offset in range(0, len(ballast), 4096):
        ballast[offset] = 1  # touch every page so it is resident
    time.sleep(args.startup_seconds)

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *_: object) -> None:
            pass

        def _send(self, code: int, body: dict[str, object]) -> None:
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            if self.path == "/health" and not args.never_healthy:
                self._send(200, {"status": "ok"})
            else:
                self._send(503, {"status": "starting"})

        def _stream(self, request: dict[str, Any], chat: bool) -> None:
            """The answer's words as Server-Sent Events, each written (and sent) on its own."""
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.end_headers()  # no length: the body ends when the connection closes
            prompt = request["messages"][-1]["content"] if chat else request["prompt"]
            words = f"echo: {prompt}".split(" ")
            for index, word in enumerate(words):
                if index:
                    time.sleep(args.token_delay)
                token = word if index == 0 else f" {word}"
                choice = {"index": 0, "delta": {"content": token}} if chat else {"text": token}
                chunk = {"model": request.get("model"), "choices": [choice]}
                self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
                self.wfile.flush()
            self.wfile.write(b"data: [DONE]\n\n")
            self.wfile.flush()

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            request = json.loads(self.rfile.read(length) or b"{}")
            chat = self.path == "/v1/chat/completions"
            if self.path in ("/v1/chat/completions", "/v1/completions"):
                if ("messages" if chat else "prompt") not in request:
                    wanted = "messages" if chat else "prompt"
                    self._send(400, {"error": {"message": f"{wanted} is required"}})
                    return
                if request.get("stream"):
                    self._stream(request, chat)
                    return
            if self.path == "/v1/chat/completions":
                text = request["messages"][-1]["content"]
                self._send(
                    200,
                    {
                        "model": request.get("model"),
                        "choices": [{"message": {"role": "assistant", "content": f"echo: {text}"}}],
                    },
                )
            elif self.path == "/v1/completions":
                self._send(
                    200,
                    {
                        "model": request.get("model"),
                        "choices": [{"text": f"echo: {request['prompt']}"}],
                    },
                )
            else:
                self._send(404, {"error": "no such path"})

    server = ThreadingHTTPServer((args.host, args.port), Handler)
    if args.die_after is not None:

        def die() -> None:
            time.sleep(args.die_after)
            print("stand-in engine: fatal error, exiting", flush=True)
            os._exit(9)

        threading.Thread(target=die, daemon=True).start()
    print(f"stand-in engine listening on {args.port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
