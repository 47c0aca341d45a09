"""The pod builder is pure: same inputs, same pod; limits follow the sharing mode."""

from __future__ import annotations

from typing import Any

from fovea.domain import constants as c
from fovea.domain.image_refs import normalize_image
from fovea.domain.nodes import ANNOTATION_AVOID_NODES, MODEL_POD_TOLERATIONS, pod_requests
from fovea.domain.resources import ModelOption, SharingMode
from fovea.operator.podspec import (
    PodSettings,
    SelectionRef,
    Target,
    build_pod,
    gpu_limits,
    pod_images,
    pod_name,
)

SEL = SelectionRef("team-a", "object-detection", "uid-1", "object_detection", "yolov8n")
OPTION = ModelOption(model_id="yolov8n", framework="ultralytics", vram_mb=512, cpu_memory_gb=1.0)


def test_same_inputs_give_the_same_pod() -> None:
    target = Target("gpu-node-0", 0)
    assert build_pod(SEL, OPTION, target, PodSettings()) == build_pod(
        SEL, OPTION, target, PodSettings()
    )


def test_name_changes_with_model_or_target_and_stays_a_valid_name() -> None:
    a = pod_name(SEL, OPTION, Target("gpu-node-0", 0))
    b = pod_name(SEL, OPTION, Target("gpu-node-1", 0))
    other = SelectionRef("team-a", "object-detection", "uid-1", "object_detection", "yolov8s")
    assert len({a, b, pod_name(other, OPTION, Target("gpu-node-0", 0))}) == 3
    long = SelectionRef("ns", "x" * 80, "u", "t", "m" * 80)
    name = pod_name(long, OPTION, Target("n", None))
    assert len(name) <= 63 and name[0].isalnum() and name[-1].isalnum()


def test_batch_size_sets_the_warm_up_batch_and_is_part_of_the_name() -> None:
    target = Target("gpu-node-0", 0)
    one = build_pod(SEL, OPTION, target, PodSettings())
    four = build_pod(SEL, OPTION, target, PodSettings(), batch_size=4)

    def batch(pod: dict[str, Any]) -> str:
        env = pod["spec"]["containers"][0]["env"]
        return str(next(e["value"] for e in env if e["name"] == c.ENV_BATCH_SIZE))

    assert (batch(one), batch(four)) == ("1", "4")
    # The name covers the spec's hash: a new warm-up batch rolls out a new pod.
    assert one["metadata"]["name"] != four["metadata"]["name"]


def test_gpu_pod_has_limits_affinity_owner_probes_and_identity() -> None:
    pod = build_pod(SEL, OPTION, Target("gpu-node-0", 0), PodSettings())
    meta, spec = pod["metadata"], pod["spec"]
    container = spec["containers"][0]
    assert container["command"] == ["fovea-models", "model-pod"]
    assert container["resources"]["limits"][c.RESOURCE_GPU] == "1"
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env[c.ENV_DEVICE] == "cuda:0" and env[c.ENV_MODEL_ID] == "yolov8n"
    assert env[c.ENV_SELECTION] == "object-detection" and env[c.ENV_NAMESPACE] == "team-a"
    terms = spec["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert terms["nodeSelectorTerms"][0]["matchFields"][0]["values"] == ["gpu-node-0"]
    owner = meta["ownerReferences"][0]
    assert owner["uid"] == "uid-1" and owner["controller"] is True
    assert {"startupProbe", "readinessProbe", "livenessProbe"} <= container.keys()
    assert spec["serviceAccountName"] == "fovea-model-pod"
    assert meta["labels"][c.LABEL_COMPONENT] == c.COMPONENT_MODEL_POD
    assert meta["annotations"][c.ANNOTATION_VRAM_GIB] == "0.5"


def test_cpu_pod_has_no_gpu_limits() -> None:
    pod = build_pod(SEL, OPTION, Target("cpu-node", None), PodSettings())
    resources = pod["spec"]["containers"][0]["resources"]
    assert not any("nvidia.com" in k for k in {**resources["limits"], **resources["requests"]})
    env = {e["name"]: e.get("value") for e in pod["spec"]["containers"][0]["env"]}
    assert env[c.ENV_DEVICE] == "cpu"
    assert resources["requests"]["memory"] == "1024Mi"


def test_sharing_modes() -> None:
    big = ModelOption(model_id="m", vram_gb=8, mig_profile="2g.20gb")
    assert gpu_limits(big, SharingMode.WHOLE) == {c.RESOURCE_GPU: "1"}
    assert gpu_limits(big, SharingMode.TIME_SLICED) == {c.RESOURCE_GPU: "1"}
    assert gpu_limits(big, SharingMode.HAMI) == {
        c.RESOURCE_GPU: "1",
        c.RESOURCE_HAMI_GPUMEM: "8192",
    }
    assert gpu_limits(big, SharingMode.MIG) == {"nvidia.com/mig-2g.20gb": "1"}
    assert gpu_limits(big, SharingMode.DRA) == {}  # a ResourceClaim instead


def test_in_dra_mode_a_gpu_pod_references_its_claim_and_a_cpu_pod_none() -> None:
    settings = PodSettings(sharing_mode=SharingMode.DRA)
    pod = build_pod(SEL, OPTION, Target("gpu-node-0", 1), settings, claim="gpu-c")
    assert pod["spec"]["resourceClaims"] == [{"name": "gpu", "resourceClaimName": "gpu-c"}]
    container = pod["spec"]["containers"][0]
    assert container["resources"]["claims"] == [{"name": "gpu"}]
    assert c.RESOURCE_GPU not in container["resources"]["limits"]
    other = build_pod(SEL, OPTION, Target("gpu-node-0", 1), settings, claim="gpu-d")
    assert other["metadata"]["name"] != pod["metadata"]["name"]  # the claim is in the spec
    cpu = build_pod(SEL, OPTION, Target(None, None), settings, claim="gpu-c")
    assert "resourceClaims" not in cpu["spec"]


def test_requests_are_the_planners_and_the_avoided_nodes_travel_with_the_pod() -> None:
    for target in (Target("gpu-node-0", 0), Target("cpu-node", None)):
        pod = build_pod(SEL, OPTION, target, PodSettings(), avoid_nodes=["b", "a", "b"])
        resources = pod["spec"]["containers"][0]["resources"]
        counted = pod_requests(OPTION)
        assert {k: resources["requests"][k] for k in ("cpu", "memory")} == counted.requests()
        assert resources["limits"]["memory"] == counted.limits()["memory"] == "1536Mi"
        assert pod["metadata"]["annotations"][ANNOTATION_AVOID_NODES] == "a,b"
        assert pod["spec"]["tolerations"] == [dict(t) for t in MODEL_POD_TOLERATIONS]
        keys = {t["key"] for t in pod["spec"]["tolerations"]}
        assert keys == {"nvidia.com/gpu", "fovea.dev/preloaded-images"}
    # Not pinned (the scheduler picks the node): it must not go where its image may be missing.
    anywhere = build_pod(SEL, OPTION, Target(None, None), PodSettings())
    assert [t["key"] for t in anywhere["spec"]["tolerations"]] == ["nvidia.com/gpu"]
    plain = build_pod(SEL, OPTION, Target("gpu-node-0", 0), PodSettings())
    assert ANNOTATION_AVOID_NODES not in plain["metadata"]["annotations"]
    bigger = build_pod(SEL, OPTION, Target("gpu-node-0", 0), PodSettings(default_memory_gib=8))
    assert bigger["spec"]["containers"][0]["resources"]["requests"]["memory"] == "1024Mi"


def test_pod_images_are_what_the_pod_runs() -> None:
    """The planner matches these against a node's images: the same set the pod names."""
    settings = PodSettings(image="ghcr.io/fovea-models/model-pod:1")
    own = OPTION.model_copy(update={"image": "ghcr.io/fovea-models/other:2"})
    fetched = own.model_copy(update={"weights": "https://weights.example/m.safetensors"})
    for option in (OPTION, own, fetched):
        pod = build_pod(SEL, option, Target("cpu-node", None), settings)
        containers = pod["spec"]["containers"] + pod["spec"].get("initContainers", [])
        assert pod_images(option, settings) == {normalize_image(k["image"]) for k in containers}
    assert len(pod_images(fetched, settings)) == 2  # the fetcher runs the operator's image
