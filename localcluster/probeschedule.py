"""When each probe of a running container is due, and what its results mean. Pure.

Kubelet semantics: the startup probe runs first, and until it succeeds the
others wait; readiness flips after successThreshold successes or
failureThreshold failures in a row; liveness failing failureThreshold times in
a row kills the process. One deliberate difference: until the container is
first started (startup probe) or first ready (readiness probe), those probes
run every FAST_PROBE_S instead of every periodSeconds, so Ready follows the
moment a server can answer. A startup probe still fails only after
initialDelaySeconds + periodSeconds x failureThreshold, as written.
"""

from __future__ import annotations

from dataclasses import dataclass

from fovea.localcluster.podspec import Probe

FAST_PROBE_S = 0.2
STARTUP, READINESS, LIVENESS = "startup", "readiness", "liveness"


@dataclass
class _Track:
    probe: Probe
    due: float
    successes: int = 0
    failures: int = 0


@dataclass(frozen=True)
class Outcome:
    """What a probe result changed: `changed` (started/ready), or a reason to kill."""

    changed: bool = False
    kill: str | None = None


class ProbeSchedule:
    """Probe bookkeeping for one run of a container that started at `began` (monotonic s)."""

    def __init__(
        self,
        began: float,
        startup: Probe | None = None,
        readiness: Probe | None = None,
        liveness: Probe | None = None,
    ) -> None:
        self.began = began
        self._tracks = {
            name: _Track(probe, began + probe.initial_delay_s)
            for name, probe in ((STARTUP, startup), (READINESS, readiness), (LIVENESS, liveness))
            if probe is not None
        }
        self.started = startup is None
        self.ready = self.started and readiness is None
        self._ever_ready = self.ready

    def probe(self, name: str) -> Probe:
        return self._tracks[name].probe

    def _active(self) -> list[str]:
        if not self.started:
            return [STARTUP]
        return [name for name in (READINESS, LIVENESS) if name in self._tracks]

    def due(self, now: float) -> list[str]:
        """The probes to run now."""
        return [name for name in self._active() if self._tracks[name].due <= now]

    def next_due(self) -> float | None:
        """When the next probe is due, or None when nothing is ever probed."""
        times = [self._tracks[name].due for name in self._active()]
        return min(times) if times else None

    def record(self, name: str, ok: bool, now: float) -> Outcome:
        """Take one probe result at `now`; say what changed."""
        track = self._tracks[name]
        if ok:
            track.successes, track.failures = track.successes + 1, 0
        else:
            track.successes, track.failures = 0, track.failures + 1
        if name == STARTUP:
            return self._startup(track, ok, now)
        if name == READINESS:
            return self._readiness(track, ok, now)
        track.due = now + track.probe.period_s
        if track.failures >= track.probe.failure_threshold:
            return Outcome(kill=f"Liveness probe failed {track.failures} times in a row")
        return Outcome()

    def _startup(self, track: _Track, ok: bool, now: float) -> Outcome:
        if ok:
            self.started = True
            self.ready = READINESS not in self._tracks
            self._ever_ready = self.ready
            for name in (READINESS, LIVENESS):
                if name in self._tracks:
                    self._tracks[name].due = max(self._tracks[name].due, now)
            return Outcome(changed=True)
        probe = track.probe
        budget = probe.initial_delay_s + probe.period_s * probe.failure_threshold
        if now - self.began >= budget:
            return Outcome(kill=f"Startup probe failed for {budget:g}s")
        track.due = now + FAST_PROBE_S
        return Outcome()

    def _readiness(self, track: _Track, ok: bool, now: float) -> Outcome:
        ready = self.ready
        if ok and track.successes >= track.probe.success_threshold:
            ready = True
        elif not ok and track.failures >= track.probe.failure_threshold:
            ready = False
        changed = ready != self.ready
        self.ready = ready
        self._ever_ready = self._ever_ready or ready
        track.due = now + (track.probe.period_s if self._ever_ready else FAST_PROBE_S)
        return Outcome(changed=changed)
