"""The generated CRDs on a real API server: good manifests apply, bad ones are refused
at `kubectl apply` with a message a person understands, and nothing is stored."""

from __future__ import annotations

from pathlib import Path

import pytest

from kube_testing import Kube

REPO = Path(__file__).resolve().parents[2]

CATALOG = """
apiVersion: fovea.dev/v1alpha1
kind: ModelCatalog
metadata: {{name: {name}}}
spec:
  tasks:
    det:
      options:
{options}
{inference}
"""


def catalog(options: str, inference: str = "", name: str = "bad") -> str:
    indented = "\n".join(f"        {line}" for line in options.strip().splitlines())
    return CATALOG.format(name=name, options=indented, inference=inference)


def selection(spec: str, name: str = "sel") -> str:
    return (
        f"apiVersion: fovea.dev/v1alpha1\nkind: ModelSelection\n"
        f"metadata: {{name: {name}}}\nspec: {spec}\n"
    )


def apply(kube: Kube, manifest: str) -> tuple[int, str]:
    done = kube.kubectl(["apply", "-n", kube.namespace, "-f", "-"], stdin=manifest, check=False)
    return done.returncode, done.stdout + done.stderr


@pytest.mark.parametrize("path", ["default.yaml", "demo.yaml"])
def test_shipped_catalogs_apply(kube: Kube, path: str) -> None:
    code, out = apply(kube, (REPO / "manifests" / "catalog" / path).read_text())
    assert code == 0, out
    assert "modelcatalog.fovea.dev/default created" in out
    listed = kube.kubectl(["get", "mcat,msel", "-n", kube.namespace]).stdout
    assert "object-detection" in listed and "THRESHOLD" in listed


@pytest.mark.parametrize(
    ("manifest", "message"),
    [
        (
            catalog("a: {modelId: a, vramGb: 1, vramMb: 512}"),
            "spec.tasks[det].options[a]: Invalid value: give either vramGb or vramMb, not both",
        ),
        (
            catalog("a: {modelId: a}"),
            "needs vramGb or vramMb (only framework external_api may have neither)",
        ),
        (
            catalog("a: {modelId: a, vramGb: 1, framework: tensorflow}"),
            'spec.tasks.det.options.a.framework: Unsupported value: "tensorflow"',
        ),
        (catalog("'a b': {modelId: a, vramGb: 1}"), "each option name must be 1-63 letters"),
        (catalog("a: {modelId: a, vramGb: -1}"), "should be greater than or equal to 0"),
        (
            catalog("a: {modelId: a, vramGb: 1}", "  inference: {maxMemoryPerModel: lots}"),
            "maxMemoryPerModel must be a positive number of GiB or 'auto'",
        ),
        (
            catalog("a: {modelId: a, vramGb: 1}", "  inference: {offloadThreshold: 1.5}"),
            "spec.inference.offloadThreshold in body should be less than or equal to 1",
        ),
        (
            catalog("a: {modelId: a, vramGb: 1}", "  inference: {defaultBatchSize: 9}"),
            "defaultBatchSize must not exceed maxBatchSize",
        ),
        (catalog("a: {modelId: a, vramGb: 1, colour: red}"), 'unknown field "spec.tasks.det'),
        (selection("{task: det, priority: 5000}"), "priority must be between 0 and 1000"),
        (selection("{task: det, devicePolicy: tpu}"), 'Unsupported value: "tpu"'),
        (selection("{model: a}"), "spec.task: Required value"),
        (selection("{task: 'bad task'}"), "spec.task in body should match"),
        (selection("{task: det, catalog: Default}"), "spec.catalog in body should match"),
    ],
)
def test_invalid_input_is_refused_with_a_clear_message(
    kube: Kube, manifest: str, message: str
) -> None:
    code, out = apply(kube, manifest)
    assert code != 0 and message in out, out
    stored = kube.kubectl(["get", "mcat,msel", "-n", kube.namespace, "-o", "name"]).stdout
    assert stored.strip() == ""


def test_an_external_api_needs_no_vram_and_fractions_are_decimal_strings(kube: Kube) -> None:
    manifest = catalog(
        "api: {modelId: claude, framework: external_api}",
        '  inference: {maxMemoryPerModel: "22.5"}',
        name="default",
    )
    code, out = apply(kube, manifest)
    assert code == 0, out


def test_task_is_immutable_and_status_is_a_subresource(kube: Kube) -> None:
    assert (
        apply(kube, selection("{task: object_detection, model: yolov8n}", "object-detection"))[0]
        == 0
    )
    code, out = apply(kube, selection("{task: other, model: yolov8n}", "object-detection"))
    assert code != 0 and "task is immutable" in out, out
    kube.patch_status(
        "object_detection",
        {
            "phase": "Ready",
            "conditions": [
                {
                    "type": "Ready",
                    "status": "True",
                    "reason": "Loaded",
                    "message": "yolov8n ready",
                    "lastTransitionTime": "2026-01-01T00:00:00Z",
                }
            ],
            "device": "cuda:0",
            "node": "gpu-1",
            "measuredMemoryGb": 0.42,
            "declaredMemoryGb": 0.5,
            "declaredMemory": "0.5 GB",
            "measuredMemory": "0.42 GB",
            "runtime": {
                "state": "Ready",
                "simulatedGpu": True,
                "memoryBreakdown": {"weights": 0.1},
            },
        },
    )
    stored = kube.selection("object_detection")
    assert stored["status"]["runtime"]["memoryBreakdown"] == {"weights": 0.1}
    assert stored["spec"]["priority"] == 100  # defaulted by the CRD
    listed = kube.kubectl(["get", "msel", "-n", kube.namespace]).stdout.splitlines()
    assert listed[0].split() == [
        "NAME", "TASK", "MODEL", "PHASE", "READY", "DECLARED", "MEASURED", "DEVICE", "NODE",
        "GPU", "AGE",
    ]  # fmt: skip
    assert listed[1].split()[:11] == [
        "object-detection",
        "object_detection",
        "yolov8n",
        "Ready",
        "True",
        "0.5",
        "GB",  # every memory column says its unit
        "0.42",
        "GB",
        "cuda:0",
        "gpu-1",
    ]
