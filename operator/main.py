"""`fovea-models operator`: run the kopf operator (blocking until signalled)."""

from __future__ import annotations

import argparse


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--kubeconfig", help="kubeconfig path (default: $KUBECONFIG, in-cluster)")
    parser.add_argument(
        "-n",
        "--namespace",
        action="append",
        default=[],
        help="namespace to watch (repeatable; default: all namespaces)",
    )
    parser.add_argument("--liveness-port", type=int, default=0, help="serve /healthz here")
    parser.add_argument(
        "--liveness-host", default="0.0.0.0", help="the address of /healthz (default 0.0.0.0)"
    )
    parser.add_argument("--verbose", action="store_true")


def run(args: argparse.Namespace) -> int:
    import kopf

    from fovea.kube import configure_kopf_login
    from fovea.operator import handlers  # noqa: F401  (registers the handlers)
    from fovea.operator.settings import set_flags

    configure_kopf_login(args.kubeconfig)
    if args.namespace:
        set_flags(namespaces=list(args.namespace))
    # kopf logs every handler call at INFO; our planner logs what it decides.
    kopf.configure(verbose=args.verbose, quiet=not args.verbose)
    kopf.run(
        standalone=True,  # leadership is the planner's Lease (fovea.operator.leader)
        clusterwide=not args.namespace,
        namespaces=list(args.namespace),
        liveness_endpoint=(
            f"http://{args.liveness_host}:{args.liveness_port}/healthz"
            if args.liveness_port
            else None
        ),
    )
    return 0
