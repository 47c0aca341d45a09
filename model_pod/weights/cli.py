"""`fovea-models fetch-weights`: the model pod's init container (and a tool for people).

    fovea-models fetch-weights --source URI [--sha256 HEX] --cache DIR [--cache-size-gb N]

Fetches the weights into DIR/<cache key>/ (or finds them there), reporting
progress into the own ModelSelection's `status.runtime.weights` when
FOVEA_SELECTION and FOVEA_NAMESPACE are set. Prints the final status as one
JSON line on stdout. Exit codes: 0 cached (fetched now or before); 1 failed
(unreachable after retries, 404, 403, missing credentials, checksum mismatch,
cache full; `phase: Failed` with the reason was reported); 2 bad arguments
(a malformed URI or sha256; also reported as Failed).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

from fovea.domain.weights import WEIGHTS_MOUNT
from fovea.model_pod.settings import get_settings

EXIT_CACHED = 0
EXIT_FAILED = 1
EXIT_USAGE = 2

log = logging.getLogger("fovea.model_pod.weights")


def configure(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Fetch model weights into the weights cache (the model pod's init container). "
        "Exit codes: 0 cached, 1 failed, 2 bad arguments."
    )
    parser.add_argument("--source", required=True, help="hf://, s3://, https://, pvc://, file://")
    parser.add_argument("--sha256", default=None, help="the pin: a file's or the manifest's sha256")
    parser.add_argument(
        "--cache", default=WEIGHTS_MOUNT, help=f"the cache directory (default {WEIGHTS_MOUNT})"
    )
    parser.add_argument(
        "--cache-size-gb",
        type=float,
        default=None,
        help="the cache's size limit in GiB; least-recently-used entries are evicted",
    )
    parser.add_argument(
        "--retries", type=int, default=5, help="attempts for transient errors (default 5)"
    )
    parser.add_argument(
        "--backoff-seconds",
        type=float,
        default=0.5,
        help="first retry delay, doubled each time up to 15 s (default 0.5)",
    )
    parser.add_argument(
        "--no-report", action="store_true", help="do not write the selection's status"
    )


def _send(args: argparse.Namespace) -> Any:
    """The patch function for the own selection, or None (no selection, or no cluster)."""
    settings = get_settings()
    namespace, name = settings.namespace.strip(), settings.selection.strip()
    if args.no_report or not (namespace and name):
        return None
    from fovea.kube import ClusterUnreachable, api_client
    from fovea.model_pod.report import selection_patcher

    try:
        return selection_patcher(api_client(), namespace, name)
    except ClusterUnreachable as exc:
        log.error("cannot report progress (fetching anyway): %s", exc)
        return None


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    from fovea.model_pod.weights.download import Retry
    from fovea.model_pod.weights.fetcher import FetchRequest, fetch_weights
    from fovea.model_pod.weights.progress import CACHED, FAILED, Outcome, ProgressReporter

    settings = get_settings()
    pod = settings.pod_name.strip() or settings.hostname or None
    reporter = ProgressReporter(_send(args), args.source, pod=pod)
    request = FetchRequest(
        uri=args.source,
        cache_dir=Path(args.cache),
        sha256=args.sha256,
        cache_size_gb=args.cache_size_gb,
        retry=Retry(attempts=max(1, args.retries), base_seconds=max(0.0, args.backoff_seconds)),
    )
    try:
        request.check()
    except ValueError as exc:
        status = reporter.finish(Outcome(phase=FAILED, message=str(exc)))
        print(json.dumps(status), flush=True)
        print(f"fovea-models fetch-weights: {exc}", file=sys.stderr)
        return EXIT_USAGE
    outcome = fetch_weights(request, reporter)
    print(json.dumps(reporter.final), flush=True)
    if outcome.phase != CACHED:
        print(f"fovea-models fetch-weights: {outcome.message}", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_CACHED
