"""The weights part of a model pod, and how the operator reads a fetch into status.weights."""

from __future__ import annotations

from typing import Any

from builders import catalog, catalog_spec, option, running, selection, world
from fovea.domain import constants as c
from fovea.domain.conditions import ConditionType, EventType, Reason, WeightsPhase
from fovea.domain.resources import (
    CatalogSpec,
    ModelOption,
    Phase,
    WeightsCache,
    WeightsCredentials,
)
from fovea.domain.weights import ENV_WEIGHTS_PATH, WEIGHTS_MOUNT, cache_key, parse_weights_uri
from fovea.operator.podspec import PodSettings, SelectionRef, Target, build_pod
from fovea.operator.reconcile import reconcile
from fovea.operator.weights_pod import FETCH_CONTAINER, WeightsSettings
from fovea.operator.weights_status import weights_status

SEL = SelectionRef("team-a", "det", "uid-1", "det", "small")
DIGEST = "ab" * 32
URL = "http://127.0.0.1:8000/yolo.safetensors"
WITH_WEIGHTS = ModelOption(model_id="yolov8n", vram_mb=512, weights=URL, weights_sha256=DIGEST)


def _pod(opt: ModelOption, settings: WeightsSettings | None = None) -> dict[str, Any]:
    return build_pod(SEL, opt, Target("gpu-0", 0), PodSettings(), weights=settings)


def _env(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value") for e in container["env"]}


def test_an_option_without_weights_gets_the_pod_it_always_had() -> None:
    plain = ModelOption(model_id="yolov8n", vram_mb=512)
    pod = _pod(plain, WeightsSettings(credentials=WeightsCredentials(secret="s")))
    assert pod == build_pod(SEL, plain, Target("gpu-0", 0), PodSettings())
    assert "initContainers" not in pod["spec"] and "volumes" not in pod["spec"]


def test_a_node_cache_gives_the_fetch_init_container_and_a_host_directory() -> None:
    pod = _pod(WITH_WEIGHTS)
    spec = pod["spec"]
    (fetch,) = spec["initContainers"]
    assert fetch["name"] == FETCH_CONTAINER
    assert fetch["image"] == PodSettings().image
    assert fetch["command"] == [
        "fovea-models",
        "fetch-weights",
        "--source",
        URL,
        "--sha256",
        DIGEST,
        "--cache",
        WEIGHTS_MOUNT,
        "--cache-size-gb",
        "50",
    ]
    # It reports as its pod, to its own selection; no probe can kill it (init containers
    # have none), and it keeps the restricted posture of the model container.
    env = _env(fetch)
    assert env[c.ENV_SELECTION] == "det" and env[c.ENV_NAMESPACE] == "team-a"
    assert c.ENV_POD_NAME in env and "envFrom" not in fetch
    assert not {"startupProbe", "livenessProbe", "readinessProbe"} & set(fetch)
    assert fetch["securityContext"]["runAsNonRoot"] is True
    assert fetch["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert spec["volumes"] == [
        {
            "name": "weights-cache",
            "hostPath": {"path": "/var/cache/fovea-models/weights", "type": "DirectoryOrCreate"},
        }
    ]
    assert fetch["volumeMounts"] == [{"name": "weights-cache", "mountPath": WEIGHTS_MOUNT}]
    model = spec["containers"][0]
    key = cache_key(parse_weights_uri(URL), DIGEST)
    assert _env(model)[ENV_WEIGHTS_PATH] == f"{WEIGHTS_MOUNT}/{key}"
    assert model["volumeMounts"] == [
        {"name": "weights-cache", "mountPath": WEIGHTS_MOUNT, "readOnly": True}
    ]
    # The model container's startup probe allows a long load (900 s by default).
    startup = model["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 900


def test_a_shared_cache_credentials_env_and_a_pvc_source() -> None:
    opt = ModelOption(model_id="m", vram_gb=1, weights="pvc://model-store/llama/8b")
    settings = WeightsSettings(
        cache=WeightsCache(kind="shared", claim="weights-rwx", size_gb=200),
        credentials=WeightsCredentials(secret="hub-token"),
        env={"HF_ENDPOINT": "http://hub.internal"},
    )
    spec = _pod(opt, settings)["spec"]
    (fetch,) = spec["initContainers"]
    assert fetch["envFrom"] == [{"secretRef": {"name": "hub-token"}}]  # not optional
    assert _env(fetch)["HF_ENDPOINT"] == "http://hub.internal"
    assert fetch["command"][-2:] == ["--cache-size-gb", "200"]
    assert spec["volumes"] == [
        {"name": "weights-cache", "persistentVolumeClaim": {"claimName": "weights-rwx"}},
        {
            "name": "weights-source",
            "persistentVolumeClaim": {"claimName": "model-store", "readOnly": True},
        },
    ]
    assert {
        "name": "weights-source",
        "mountPath": "/mnt/fovea-pvc/model-store",
        "readOnly": True,
    } in (fetch["volumeMounts"])
    assert spec["securityContext"] == {"fsGroup": 10001}  # the PVC is writable for the image


def test_new_weights_or_checksum_roll_a_new_pod() -> None:
    other = WITH_WEIGHTS.model_copy(update={"weights_sha256": "cd" * 32})
    names = {_pod(o)["metadata"]["name"] for o in (WITH_WEIGHTS, other)}
    names.add(_pod(ModelOption(model_id="yolov8n", vram_mb=512))["metadata"]["name"])
    assert len(names) == 3


# --- status.weights ---------------------------------------------------------------------------


def _report(phase: str, **extra: Any) -> dict[str, Any]:
    return {"phase": phase, "source": URL, "bytesDone": 10, "bytesTotal": 100, **extra}


def _bound(init: dict[str, Any] | None = None) -> dict[str, Any]:
    pod: dict[str, Any] = {"metadata": {"name": "p"}, "spec": {"nodeName": "gpu-0"}, "status": {}}
    if init is not None:
        pod["status"]["initContainerStatuses"] = [{"name": FETCH_CONTAINER, **init}]
    return pod


def test_the_fetch_report_is_taken_only_from_the_wanted_pod() -> None:
    runtime = {"pod": "p", "weights": _report("Fetching", bytesPerSecond=5.0)}
    mine = weights_status(WITH_WEIGHTS, runtime, True, _bound(), None)
    assert mine is not None and mine.phase == WeightsPhase.FETCHING and mine.bytes_done == 10
    # Another pod's report (the old model's pod): this pod's fetch has not said anything yet.
    other = weights_status(WITH_WEIGHTS, runtime, False, _bound({"state": {"running": {}}}), None)
    assert other is not None and other.bytes_done == 0 and other.phase == WeightsPhase.FETCHING
    assert weights_status(WITH_WEIGHTS, runtime, False, None, None) is None  # no pod yet
    plain = ModelOption(model_id="m", vram_gb=1)
    assert weights_status(plain, runtime, True, _bound(), None) is None


def test_a_report_older_than_the_pod_is_an_earlier_pods_of_the_same_name() -> None:
    stale = {"pod": "p", "weights": _report("Cached", updatedAt="2026-01-01T00:00:00Z")}
    pod = {**_bound({"state": {"running": {}}}), "metadata": {"name": "p"}}
    pod["metadata"]["creationTimestamp"] = "2026-01-01T00:05:00Z"
    now = weights_status(WITH_WEIGHTS, stale, True, pod, None)
    assert now is not None and now.phase == WeightsPhase.FETCHING and now.bytes_done == 0
    fresh = {"pod": "p", "weights": _report("Cached", updatedAt="2026-01-01T00:05:01Z")}
    later = weights_status(WITH_WEIGHTS, fresh, True, pod, None)
    assert later is not None and later.phase == WeightsPhase.CACHED


def test_a_missing_secret_is_failed_with_its_name() -> None:
    waiting = {"reason": "CreateContainerConfigError", "message": 'secret "hub-token" not found'}
    report = weights_status(
        WITH_WEIGHTS, {}, False, _bound({"state": {"waiting": waiting}}), "hub-token"
    )
    assert report is not None and report.phase == WeightsPhase.FAILED
    assert report.message is not None and report.message.startswith("Secret hub-token not found")


def test_a_fetch_that_exits_non_zero_is_failed_and_stays_so_while_it_retries() -> None:
    crashed = {
        "state": {"waiting": {"reason": "CrashLoopBackOff"}},
        "restartCount": 1,
        "lastState": {"terminated": {"exitCode": 3, "message": "boom"}},
    }
    silent = weights_status(WITH_WEIGHTS, {}, False, _bound(crashed), None)
    assert silent is not None and silent.phase == WeightsPhase.FAILED
    assert silent.message == "fetch-weights exited with code 3: boom"
    said = {"pod": "p", "weights": _report("Failed", message="HTTP 404 for " + URL)}
    told = weights_status(WITH_WEIGHTS, said, True, _bound(crashed), None)
    assert told is not None and told.message == "HTTP 404 for " + URL
    # The retry starts and reports Fetching: still Failed with the reason, retry counted.
    retry = {**crashed, "state": {"running": {}}, "restartCount": 2}
    again = {"pod": "p", "weights": _report("Fetching")}
    kept = weights_status(
        WITH_WEIGHTS, again, True, _bound(retry), None, told.model_dump(by_alias=True)
    )
    assert kept is not None and kept.phase == WeightsPhase.FAILED
    assert kept.message == f"HTTP 404 for {URL} (retry 2 in progress)"
    # A retry that gets the weights is Cached.
    cached = {"pod": "p", "weights": _report("Cached", bytesDone=100)}
    done = weights_status(WITH_WEIGHTS, cached, True, _bound(retry), None, kept.model_dump())
    assert done is not None and done.phase == WeightsPhase.CACHED


# --- the operator's decision ----------------------------------------------------------------


def _world(status: dict[str, Any] | None = None, pods: list[dict[str, Any]] | None = None) -> Any:
    spec = catalog_spec({"det": {"small": option(0.5, modelId="yolov8n", weights=URL)}})
    spec["weightsCredentials"] = {"secret": "hub-token"}
    CatalogSpec.model_validate(spec)
    return world(selection("det", "small", status), catalogs=[catalog(spec)], pods=pods)


def _decide(status: dict[str, Any] | None = None, pod_status: dict[str, Any] | None = None) -> Any:
    first = reconcile(_world(status), PodSettings()).selections[0]
    pod = running(dict(first.desired_pod or {}), ready=False)
    if pod_status is not None:
        pod["status"] = {**pod["status"], **pod_status}
    name = pod["metadata"]["name"]
    return name, reconcile(_world(status, [pod]), PodSettings()).selections[0]


def test_fetching_is_loading_with_reason_weights_fetching_and_the_bytes() -> None:
    first = reconcile(_world(), PodSettings()).selections[0]
    name = first.desired_pod["metadata"]["name"]  # type: ignore[index]
    report = _report("Fetching", bytesDone=2**30, bytesTotal=2**32, bytesPerSecond=2.0**25)
    _, d = _decide({"runtime": {"pod": name, "state": "Loading", "weights": report}})
    assert d.status.phase == Phase.LOADING
    assert d.status.weights is not None and d.status.weights.bytes_total == 2**32
    ready = next(x for x in d.status.conditions if x.type == ConditionType.READY)
    assert ready.reason == Reason.WEIGHTS_FETCHING
    assert d.status.message.endswith("1.0 GB of 4.0 GB at 32.0 MB/s")
    assert d.patch is not None and d.patch["weights"]["bytesDone"] == 2**30


def test_cached_weights_go_on_to_loading() -> None:
    first = reconcile(_world(), PodSettings()).selections[0]
    name = first.desired_pod["metadata"]["name"]  # type: ignore[index]
    runtime = {"pod": name, "state": "Loading", "weights": _report("Cached", fetchedBytes=0)}
    _, d = _decide({"runtime": runtime})
    ready = next(x for x in d.status.conditions if x.type == ConditionType.READY)
    assert (d.status.phase, ready.reason) == (Phase.LOADING, Reason.LOADING)
    assert d.status.weights is not None and d.status.weights.phase == WeightsPhase.CACHED


def test_a_missing_secret_fails_the_selection_with_weights_failed_and_a_warning() -> None:
    waiting = {"reason": "CreateContainerConfigError", "message": 'secret "hub-token" not found'}
    init = [{"name": FETCH_CONTAINER, "state": {"waiting": waiting}}]
    _, d = _decide(pod_status={"initContainerStatuses": init})
    assert d.status.phase == Phase.FAILED
    assert d.status.weights is not None and d.status.weights.phase == WeightsPhase.FAILED
    ready = next(x for x in d.status.conditions if x.type == ConditionType.READY)
    assert ready.reason == Reason.WEIGHTS_FAILED and "Secret hub-token not found" in ready.message
    assert [(e.type, e.reason) for e in d.events if e.reason == Reason.WEIGHTS_FAILED] == [
        (EventType.WARNING, Reason.WEIGHTS_FAILED)
    ]
    assert d.keep  # the pod stays: the Secret may still come
