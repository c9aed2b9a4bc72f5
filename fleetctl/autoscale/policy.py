"""The autoscaler's policy: a history of fleet samples in, a desired instance count and its reason out.

Like Kubernetes' HPA: each sample's in-flight and queued OCR jobs give a recommended instance count
(jobs over `target` jobs per worker). Scale-up takes the lowest recommendation of a short window
(load must be sustained, not a spike); scale-down takes the highest of a long window (`down_window`),
never below what the instances' CPU use still needs, so a busy fleet is not shrunk between two
bursts. A cooldown separates actions, and the count stays within [min, max]. Pure code, no I/O.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from fleetctl.errors import FleetError


class PolicyError(FleetError):
    """The bounds or windows make no sense (min above max, min 0, ...); the message names the flag."""


@dataclass(frozen=True)
class Policy:
    """The autoscaler's settings: bounds, target load per worker, windows and cooldown (seconds)."""

    min: int
    max: int
    target: float = 2.0  # in-flight + queued OCR jobs per worker: one running, one waiting
    cpu_target: float = 0.8  # CPU cores per worker that still count as busy; 0 turns the guard off
    up_window: float = 6.0
    down_window: float = 300.0
    cooldown: float = 30.0
    tolerance: float = 0.1  # load within 10% of the target changes nothing (HPA's default)
    workers: int = 1  # per instance (OCR_WORKERS): the unit of capacity

    def __post_init__(self) -> None:
        if self.min < 1:
            raise PolicyError(f"--min must be at least 1 (an empty fleet reports no load), got {self.min}")
        if self.max < self.min:
            raise PolicyError(f"--max {self.max} is below --min {self.min}")
        numbers = {"--target (FLEET_AUTOSCALE_TARGET)": self.target,
                   "FLEET_AUTOSCALE_CPU_TARGET": self.cpu_target,
                   "--scale-up-window (FLEET_AUTOSCALE_UP_WINDOW)": self.up_window,
                   "--scale-down-window (FLEET_AUTOSCALE_DOWN_WINDOW)": self.down_window,
                   "--cooldown (FLEET_AUTOSCALE_COOLDOWN)": self.cooldown}
        for name, value in numbers.items():
            if not math.isfinite(value) or value < 0:
                raise PolicyError(f"{name} must be a finite number of at least 0, got {value}")
        if self.target <= 0:
            raise PolicyError("--target (FLEET_AUTOSCALE_TARGET) must be above 0")

    def clamp(self, n: int) -> int:
        return max(self.min, min(self.max, n))


@dataclass(frozen=True)
class Sample:
    """One poll of the fleet: when (monotonic s), how many instances, their jobs and CPU cores in use."""

    t: float
    instances: int
    load: float
    cpu: float | None = None


@dataclass(frozen=True)
class Decision:
    """What the loop wants and why; `kind` is a stable word for tests, logs and the trace."""

    current: int
    desired: int
    kind: str  # up, down, min, max, hold, pending-up, window, cooldown, no-metrics
    reason: str

    @property
    def action(self) -> str:
        if self.desired > self.current:
            return "scale up"
        return "scale down" if self.desired < self.current else "hold"

    def line(self) -> str:
        return f"{self.action} {self.current} -> {self.desired} [{self.kind}]: {self.reason}"


def _ceil(x: float) -> int:
    return math.ceil(round(x, 6))


def recommend(s: Sample, p: Policy) -> int:
    """Instances this sample's load needs (HPA: ceil(jobs / target)), inside the bounds."""
    capacity = p.target * p.workers
    if s.instances and abs(s.load / (capacity * s.instances) - 1) <= p.tolerance:
        return p.clamp(s.instances)
    return p.clamp(_ceil(s.load / capacity))


def cpu_floor(s: Sample, p: Policy) -> int:
    """Instances the CPU in use still needs: scale-down never goes below it."""
    if s.cpu is None or p.cpu_target <= 0:
        return 0
    return _ceil(s.cpu / (p.cpu_target * p.workers))


def _window(history: Sequence[Sample], now: float, span: float) -> list[Sample] | None:
    """Samples of the last `span` seconds, or None while the history is shorter than the span."""
    if not history or history[0].t > now - span:
        return None
    return [s for s in history if s.t >= now - span] or [history[-1]]


def decide(history: Sequence[Sample], current: int, p: Policy, now: float,
           last_action: float | None) -> Decision:
    """The desired count from a history of samples (oldest first); pure, so a table tests it."""
    if current < p.min:
        return Decision(current, p.min, "min", f"{current} instance(s) is below --min {p.min}")
    if current > p.max:
        return Decision(current, p.max, "max", f"{current} instance(s) is above --max {p.max}")
    if not history:
        return Decision(current, current, "no-metrics", "no instance answered /metrics yet")
    want, kind, why = _wanted(history, current, p, now)
    if want != current and last_action is not None and now - last_action < p.cooldown:
        left = p.cooldown - (now - last_action)
        return Decision(current, current, "cooldown", f"wants {want} ({why}); cooldown {left:.0f}s left")
    return Decision(current, want, kind, why)


def _wanted(history: Sequence[Sample], current: int, p: Policy, now: float) -> tuple[int, str, str]:
    """(count, kind, reason) from the load alone: up after the up window, down after the down window."""
    latest = history[-1]
    per_worker = latest.load / max(1, latest.instances * p.workers)
    now_load = f"{latest.load:g} job(s) on {latest.instances} instance(s), {per_worker:.2f} per worker"
    up = _window(history, now, p.up_window)
    if up is not None and min(recommend(s, p) for s in up) > current:
        return min(recommend(s, p) for s in up), "up", f"{now_load} for {p.up_window:g}s, above target {p.target:g}"
    if recommend(latest, p) > current:
        return current, "pending-up", f"{now_load}: above target {p.target:g}, not yet for {p.up_window:g}s"
    if recommend(latest, p) < current:
        return _scale_down(history, current, p, now, now_load)
    return current, "hold", f"{now_load}, target {p.target:g}"


def _scale_down(history: Sequence[Sample], current: int, p: Policy, now: float,
                now_load: str) -> tuple[int, str, str]:
    """Down only to what every sample of the down window needs, by its jobs and by its CPU."""
    down = _window(history, now, p.down_window)
    if down is None:
        return current, "window", f"{now_load}: watching {p.down_window:g}s before any scale-down"
    need = p.clamp(max(max(recommend(s, p), cpu_floor(s, p)) for s in down))
    peak = max(s.load for s in down)
    cpu = max((s.cpu for s in down if s.cpu is not None), default=None)
    seen = f"peak {peak:g} job(s)" + ("" if cpu is None else f", peak CPU {cpu:.2f} cores")
    if need < current:
        return need, "down", f"{seen} over the last {p.down_window:g}s needs {need}"
    return current, "window", f"{now_load}, but {seen} in the last {p.down_window:g}s needs {need}"
