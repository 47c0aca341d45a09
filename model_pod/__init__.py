"""The model-server process that runs inside each model-server pod.

It reads who it is from its environment (`identity`), loads its model through
a framework adapter (`adapters`), measures what the model really takes
(`measure`), reports into its own ModelSelection's `status.runtime`
(`report`), and serves `/healthz`, `/readyz` and `/predict` (`server`).
`lifecycle` ties loading, measuring and reporting together; `main` is the CLI.

`identity`, `measure` and `adapters` import neither pydantic nor kubernetes at
module level, so the GPU memory check (`bench/gpu_memory_check.py`) runs on a
machine that has only torch and its usual companions.
"""
