"""The sizes a selection's status carries for `kubectl get msel` (issue 28): declared and
measured memory as numbers by the one rounding rule, and as text with their unit."""

from __future__ import annotations

from typing import Any

from builders import catalog, catalog_spec, option, running, selection, world
from fovea.domain import crds
from fovea.domain.conditions import Phase, RuntimeState
from fovea.operator.podspec import PodSettings
from fovea.operator.reconcile import reconcile

TASKS = {"det": {"tiny": option(modelId="tiny", vramMb=64)}}


def _status(report: dict[str, Any] | None = None) -> dict[str, Any]:
    def decide(*pods: dict[str, Any], status: dict[str, Any] | None = None) -> Any:
        w = world(
            selection("det", "tiny", status),
            catalogs=[catalog(catalog_spec(TASKS))],
            pods=list(pods),
        )
        return reconcile(w, PodSettings()).actions()

    first = decide()
    if report is None:
        return dict(first.status[("ns", "det")])
    pod = first.create[0]
    runtime = {**report, "pod": pod["metadata"]["name"]}
    return dict(decide(running(pod), status={"runtime": runtime}).status[("ns", "det")])


def test_a_64_mb_option_is_declared_as_0_06_gb_with_its_unit() -> None:
    status = _status()
    assert (status["declaredMemoryGb"], status["declaredMemory"]) == (0.06, "0.06 GB")
    assert status.get("measuredMemory") is None  # nothing measured yet


def test_a_tiny_measurement_keeps_its_digits_and_says_its_unit() -> None:
    ready = {"state": RuntimeState.READY, "measuredMemoryGb": 0.000072, "device": "cpu"}
    status = _status(ready)
    assert status["phase"] == Phase.READY
    assert status["measuredMemory"] == "0.000072 GB"  # not kubectl's bare 7.2e-05


def test_the_columns_read_the_fields_the_operator_writes() -> None:
    version = crds.selection_crd()["spec"]["versions"][0]
    paths = {c["name"]: c["jsonPath"] for c in version["additionalPrinterColumns"]}
    assert paths["Declared"] == ".status.declaredMemory"
    assert paths["Measured"] == ".status.measuredMemory"


def test_one_64_mb_option_reads_0_06_in_list_ps_status_validate_and_kubectl() -> None:
    """Issue 28: it read 0.0625 (list), 0.062 (ps, /status), 0.06 (validate), 7.2e-05."""
    from fovea.api.inspect import option_view
    from fovea.domain.resources import ModelOption
    from fovea.domain.units import round_gb
    from fovea.usercli.views import gb

    tiny = ModelOption(model_id="tiny", vram_mb=64)
    assert option_view(tiny)["declared_memory_gb"] == 0.06  # list, describe (the API)
    assert gb(0.0625) == "0.06"  # list, ps, validate (the command line)
    assert round_gb(tiny.vram_gib) == 0.06  # /status, /validate's fields
    assert _status()["declaredMemory"] == "0.06 GB"  # kubectl get msel
