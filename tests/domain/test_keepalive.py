"""Keep-alive: durations, and when an on-demand model is unloaded for idleness (pure)."""

from __future__ import annotations

import pytest

from fovea.domain import keepalive


def test_durations_pinned_and_refusals() -> None:
    assert keepalive.parse("5m") == 300
    assert keepalive.parse("1h30m") == 5400
    assert keepalive.parse("45") == 45
    assert keepalive.parse("0") == 0
    assert keepalive.parse("-1") is None and keepalive.parse(None) is None
    for bad in ("5 minutes", "m5", "1d", "", "-5"):
        with pytest.raises(ValueError, match="is not -1, seconds or a duration"):
            keepalive.parse(bad)


def test_the_selections_keep_alive_wins_over_the_options() -> None:
    assert keepalive.effective("1m", "1h") == "1m"
    assert keepalive.effective(None, "1h") == "1h"
    assert keepalive.effective(None, None) is None


def decide(keep: str | None, **kw: float | None) -> keepalive.Idle | None:
    args: dict[str, float | None] = {
        "loaded_since": 100.0,
        "last_activity": 0.0,
        "unloaded_at": None,
        "now": 1000.0,
    }
    args.update(kw)
    return keepalive.decide(keep, **args)  # type: ignore[arg-type]


def test_an_idle_model_is_unloaded_once_its_keep_alive_is_over() -> None:
    assert decide("5m", now=399.0) is None  # idle 299 s of 300
    idle = decide("5m", now=401.0)
    assert idle is not None and idle.unloaded_at == 400.0  # when it became due, not the clock
    assert "keepAlive (5m)" in idle.message
    assert decide("5m", last_activity=200.0, now=401.0) is None  # used since it loaded


def test_pinned_unset_or_not_loaded_is_never_unloaded() -> None:
    assert decide("-1", now=1e9) is None
    assert decide(None, now=1e9) is None
    assert decide("5m", loaded_since=None, now=1e9) is None


def test_zero_unloads_right_after_use() -> None:
    assert decide("0", loaded_since=100.0, last_activity=100.0, now=100.0) is None
    assert decide("0", loaded_since=100.0, last_activity=100.0, now=101.0) is not None


def test_it_stays_unloaded_until_a_later_use_or_load() -> None:
    still = decide("5m", loaded_since=None, last_activity=100.0, unloaded_at=400.0, now=2000.0)
    assert still is not None and still.unloaded_at == 400.0
    assert decide("5m", loaded_since=None, last_activity=402.0, unloaded_at=400.0) is None


def test_a_load_the_deciding_pass_did_not_see_is_not_lost() -> None:
    # The pass that unloaded it at 1000 read a snapshot without the /load made at 950 (after
    # the activity at 100 it decided on): the next pass loads the model again.
    idle = decide("5m", loaded_since=100.0, last_activity=100.0, now=1000.0)
    assert idle is not None and idle.unloaded_at == 400.0
    assert decide("5m", loaded_since=None, last_activity=950.0, unloaded_at=400.0) is None
    # The activity it did decide on keeps it unloaded.
    assert decide("5m", loaded_since=None, last_activity=100.0, unloaded_at=400.0) is not None
