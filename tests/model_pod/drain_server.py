"""The model pod's app under `DrainingServer`, as `fovea-models model-pod` runs it, plus
`GET /slow?seconds=S`: a request that stays in flight (it prints when it starts).

Run as a child process by test_drain.py, so that SIGTERM is a real signal.
"""

from __future__ import annotations

import argparse
import asyncio

import uvicorn

from fovea.model_pod.adapters.adapter_torch import TorchAdapter
from fovea.model_pod.adapters.base import ModelSpec
from fovea.model_pod.drain import Drain, DrainingServer
from fovea.model_pod.identity import Identity
from fovea.model_pod.lifecycle import ModelService
from fovea.model_pod.server import create_app


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--drain-seconds", type=float, required=True)
    args = parser.parse_args()
    spec = ModelSpec(task="test_task", model_id="mlp-tiny", allow_random_weights=True)
    identity = Identity(
        spec=spec,
        framework="pytorch",
        model="test-option",
        planned_device="cpu",
        simulated_gpu=False,
        selection=None,
        namespace=None,
        pod_name="test-pod",
        port=args.port,
    )
    service = ModelService(identity, TorchAdapter(spec), reporter=None)
    service.load()
    drain = Drain(args.drain_seconds)
    app = create_app(service, on_shutdown=lambda: print("shut down", flush=True), drain=drain)

    @app.get("/slow")
    async def slow(seconds: float, name: str) -> dict[str, str]:
        print(f"{name} started", flush=True)
        await asyncio.sleep(seconds)
        return {"done": name}

    config = uvicorn.Config(app, host="127.0.0.1", port=args.port, log_level="warning")
    print("serving", flush=True)
    DrainingServer(config, drain).run()


if __name__ == "__main__":
    main()
