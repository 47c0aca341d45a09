"""The weights fields of the CRDs on a real API server: good ones apply and are kept, bad
ones are refused at `kubectl apply` with a clear message, and a fetch's report is stored."""

from __future__ import annotations

import pytest

from kube_testing import Kube

DIGEST = "ab" * 32
CATALOG = """
apiVersion: fovea.dev/v1alpha1
kind: ModelCatalog
metadata: {{name: {name}}}
spec:
  tasks:
    det:
      options:
        {options}
{extra}
"""


def catalog(options: str, extra: str = "", name: str = "bad") -> str:
    return CATALOG.format(name=name, options=options, extra=extra)


def selection(spec: str, name: str) -> str:
    head = "apiVersion: fovea.dev/v1alpha1\nkind: ModelSelection\n"
    return f"{head}metadata: {{name: {name}}}\nspec: {spec}\n"


def apply(kube: Kube, manifest: str) -> tuple[int, str]:
    done = kube.kubectl(["apply", "-n", kube.namespace, "-f", "-"], stdin=manifest, check=False)
    return done.returncode, done.stdout + done.stderr


WEIGHTS_OPTION = f"a: {{modelId: a, vramGb: 1, weights: 's3://models/a', weightsSha256: {DIGEST}}}"


def test_weights_settings_apply_and_keep_their_defaults(kube: Kube) -> None:
    extra = (
        "  weightsCache: {kind: shared, claim: model-cache}\n"
        "  weightsCredentials: {secret: hub-token}\n"
        "  weightsEnv: {HF_ENDPOINT: 'http://hub.internal'}"
    )
    code, out = apply(kube, catalog(WEIGHTS_OPTION, extra, name="default"))
    assert code == 0, out
    stored = kube.custom.get_namespaced_custom_object(
        "fovea.dev", "v1alpha1", kube.namespace, "modelcatalogs", "default"
    )["spec"]
    assert stored["weightsCache"] == {
        "kind": "shared",
        "claim": "model-cache",
        "path": "/var/cache/fovea-models/weights",
        "sizeGb": 50.0,
    }
    option = stored["tasks"]["det"]["options"]["a"]
    assert (option["weights"], option["weightsSha256"]) == ("s3://models/a", DIGEST)


@pytest.mark.parametrize(
    ("options", "extra", "message"),
    [
        (
            "a: {modelId: a, vramGb: 1, weights: 'ftp://x/y'}",
            "",
            "spec.tasks.det.options.a.weights",
        ),
        (
            "a: {modelId: a, vramGb: 1, weightsSha256: " + DIGEST + "}",
            "",
            "weightsSha256 needs weights (the source it checks)",
        ),
        ("a: {modelId: a, vramGb: 1, weights: 's3://b/x', weightsSha256: XYZ}", "", "should match"),
        (WEIGHTS_OPTION, "  weightsCache: {kind: shared}", "a shared weights cache needs claim"),
        (WEIGHTS_OPTION, "  weightsCache: {claim: c}", "claim is for kind shared"),
        (WEIGHTS_OPTION, "  weightsCache: {path: /var/../etc}", "must not contain a '..' segment"),
        (WEIGHTS_OPTION, "  weightsCache: {sizeGb: 0}", "weightsCache.sizeGb"),
        (
            WEIGHTS_OPTION,
            "  weightsEnv: {LD_PRELOAD: /x.so}",
            "weightsEnv may set only HF_ENDPOINT",
        ),
        (WEIGHTS_OPTION, "  weightsCredentials: {}", "spec.weightsCredentials.secret: Required"),
    ],
)
def test_bad_weights_settings_are_refused(
    kube: Kube, options: str, extra: str, message: str
) -> None:
    code, out = apply(kube, catalog(options, extra))
    assert code != 0 and message in out, out


def test_a_fetch_report_is_stored_on_a_selection_without_runtime_state(kube: Kube) -> None:
    assert apply(kube, selection("{task: det, model: a}", "det"))[0] == 0
    report = {"phase": "Fetching", "source": "s3://models/a", "bytesDone": 5, "fetchedBytes": 5}
    kube.patch_status("det", {"runtime": {"pod": "p-1", "state": "Loading", "weights": report}})
    kube.patch_status("det", {"weights": {**report, "bytesTotal": 10}})
    kube.patch_status("det", {"runtime": {"state": None}})  # the fetch may write no state
    status = kube.selection("det")["status"]
    assert status["runtime"] == {"pod": "p-1", "weights": report}
    assert status["weights"]["bytesTotal"] == 10
