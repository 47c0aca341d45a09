"""The commands people run: list, ps, select, load, unload, validate, logs, describe, predict.

They talk to the REST API only (the one the frontend uses), so they work
against any install given its URL and token. Kept light: no torch, kopf,
kubernetes or pydantic import on their path (see bench/cli.py).

- `client.py`: the HTTP adapter (httpx) and the errors with their exit codes
- `views.py`: pure functions from API bodies to rows and lines
- `output.py`: tables (rich, colours only on a terminal), JSON and YAML
- `commands.py`: each command's arguments and run
"""
