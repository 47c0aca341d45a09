"""The kopf operator: thin handlers over a pure reconcile (import it as `fovea.operator`)."""

if __name__ == "operator":  # pragma: no cover - only when the repository root is on sys.path
    raise ImportError(
        "the folder operator/ was imported as the standard library's `operator`: the repository "
        "root is on sys.path. Run with PYTHONSAFEPATH=1 (or python -P), or from another folder."
    )
