"""describe shows the load policy in force, not '-' (issue 28). Pure."""

from __future__ import annotations

from api_builders import selection, state
from fovea.api.inspect import task_view
from fovea.usercli.views import describe_fields


def test_an_unset_load_policy_is_the_catalogs_eager() -> None:
    view = task_view(state([selection("object_detection", "yolov8n")]), "object_detection")
    assert view["spec"]["loadPolicy"] is None  # the selection sets none
    assert view["load_policy"] == "eager"  # the contract catalog's warmup_on_startup
    assert dict(describe_fields(view))["Load policy"] == "eager"


def test_a_selections_own_load_policy_wins() -> None:
    sel = selection("object_detection", "yolov8n", load_policy="onDemand")
    view = task_view(state([sel]), "object_detection")
    assert dict(describe_fields(view))["Load policy"] == "onDemand"
