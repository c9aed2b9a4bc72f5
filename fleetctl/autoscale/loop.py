"""Autoscaling: a control loop from instance metrics to a desired count, applied as `scale` applies it.

Like Kubernetes' HPA: each poll turns the fleet's in-flight and queued OCR jobs into a recommended
instance count (jobs over `target` jobs per worker). Scale-up takes the lowest recommendation of a
short window (load must be sustained, not a spike); scale-down takes the highest of a long window
(`down_window`), never below what the instances' CPU use still needs, so a busy fleet is not shrunk
between two bursts. A cooldown separates actions, and the count stays within [min, max].
`decide` is pure; `Autoscaler` observes, decides, logs the reason and plans-then-applies.
"""
from __future__ import annotations

import logging
import math
import os
import signal
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

from fleetctl import procs
from fleetctl.backends.types import InstanceInfo
from fleetctl.config import FleetConfig
from fleetctl.errors import FleetError
from fleetctl.fleet import metrics_scrape

log = logging.getLogger("fleetctl.autoscale.loop")

CPU_SPAN_S = 20.0  # CPU rates over this span: workers refresh their CPU gauge every 5 s
HEARTBEAT_S = 60.0  # an unchanged hold is logged again this often


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
    latest = history[-1]
    per_worker = latest.load / max(1, latest.instances * p.workers)
    now_load = f"{latest.load:g} job(s) on {latest.instances} instance(s), {per_worker:.2f} per worker"
    want, kind, why = current, "hold", f"{now_load}, target {p.target:g}"
    up = _window(history, now, p.up_window)
    down = _window(history, now, p.down_window)
    if up is not None and min(recommend(s, p) for s in up) > current:
        want, kind = min(recommend(s, p) for s in up), "up"
        why = f"{now_load} for {p.up_window:g}s, above target {p.target:g}"
    elif recommend(latest, p) > current:
        kind, why = "pending-up", f"{now_load}: above target {p.target:g}, not yet for {p.up_window:g}s"
    elif recommend(latest, p) < current:
        if down is None:
            kind, why = "window", f"{now_load}: watching {p.down_window:g}s before any scale-down"
        else:
            need = p.clamp(max(max(recommend(s, p), cpu_floor(s, p)) for s in down))
            peak = max(s.load for s in down)
            cpu = max((s.cpu for s in down if s.cpu is not None), default=None)
            seen = f"peak {peak:g} job(s)" + ("" if cpu is None else f", peak CPU {cpu:.2f} cores")
            if need < current:
                want, kind = need, "down"
                why = f"{seen} over the last {p.down_window:g}s needs {need}"
            else:
                kind, why = "window", f"{now_load}, but {seen} in the last {p.down_window:g}s needs {need}"
    if want != current and last_action is not None and now - last_action < p.cooldown:
        left = p.cooldown - (now - last_action)
        return Decision(current, current, "cooldown", f"wants {want} ({why}); cooldown {left:.0f}s left")
    return Decision(current, want, kind, why)


# --- observing the fleet -----------------------------------------------------------------------

@dataclass
class CpuMeter:
    """Turns each instance's CPU-seconds gauge into cores in use, over the last CPU_SPAN_S."""

    span: float = CPU_SPAN_S
    seen: dict[str, deque[tuple[float, float]]] = field(default_factory=dict)

    def add(self, iid: str, t: float, seconds: float | None) -> float | None:
        points = self.seen.setdefault(iid, deque())
        if seconds is None:
            return None
        if points and seconds < points[-1][1]:
            points.clear()  # a worker was recycled: its CPU time left the sum
        points.append((t, seconds))
        while len(points) > 2 and points[1][0] <= t - self.span:
            points.popleft()
        t0, s0 = points[0]
        return (seconds - s0) / (t - t0) if t - t0 >= self.span / 4 else None

    def forget(self, live: set[str]) -> None:
        for iid in set(self.seen) - live:
            del self.seen[iid]


Scrape = Callable[[str], metrics_scrape.InstanceMetrics | None]


def observe(infos: Sequence[InstanceInfo], t: float, cpu: CpuMeter,
            scrape: Scrape = lambda a: metrics_scrape.fetch(a, timeout=2.0)) -> Sample | None:
    """Scrape every instance at once; None when none answered (nothing to judge load by)."""
    with ThreadPoolExecutor(max_workers=max(1, min(8, len(infos)))) as pool:
        scraped = list(pool.map(lambda i: scrape(i.address), infos))
    cpu.forget({i.id for i in infos})
    answered = [(i, m) for i, m in zip(infos, scraped, strict=True) if m is not None]
    if not answered:
        return None
    rates = [cpu.add(i.id, t, m.cpu_seconds) for i, m in answered]
    known = [r for r in rates if r is not None]
    return Sample(t=t, instances=len(infos), load=float(sum(m.inflight for _, m in answered)),
                  cpu=round(sum(known), 3) if known else None)


# --- the loop ----------------------------------------------------------------------------------

def policy_from(cfg: FleetConfig, lo: int, hi: int) -> Policy:
    """The policy for bounds [lo, hi] with the FLEET_AUTOSCALE_* settings of `cfg`."""
    return Policy(min=lo, max=hi, target=cfg.autoscale_target, cpu_target=cfg.autoscale_cpu_target,
                  up_window=cfg.autoscale_up_window, down_window=cfg.autoscale_down_window,
                  cooldown=cfg.autoscale_cooldown, workers=cfg.workers)


def state_path(cfg: FleetConfig) -> Path:
    """Where the loop leaves its bounds and last decision for `fleetctl status`."""
    return cfg.run_dir / "autoscale.json"


def read_state(cfg: FleetConfig) -> dict[str, Any]:
    """The running loop's record (bounds, last decision); {} when no loop left one."""
    return procs.read_json(state_path(cfg))


@dataclass
class Autoscaler:
    """Observe, decide, log, apply; `fleet` is a fleetctl.fleet.orchestrate.Fleet and `apply` its scale()."""

    fleet: Any
    policy: Policy
    apply: Callable[[Any, int], Any]
    scrape: Scrape = lambda a: metrics_scrape.fetch(a, timeout=2.0)
    clock: Callable[[], float] = time.monotonic
    history: deque[Sample] = field(default_factory=deque)
    cpu: CpuMeter = field(default_factory=CpuMeter)
    last_action: float | None = None
    last_logged: tuple[str, int, float] = ("", -1, 0.0)
    last_change: dict[str, Any] | None = None

    def step(self) -> Decision:
        """One poll: sample, decide, record, and carry out a change (errors logged, loop goes on)."""
        now = self.clock()
        infos = self.fleet.backend.instances()
        sample = observe(infos, now, self.cpu, self.scrape)
        if sample is not None:
            self.history.append(sample)
        keep = max(self.policy.down_window, self.policy.up_window) + 1
        while len(self.history) > 1 and self.history[1].t <= now - keep:
            self.history.popleft()
        d = decide(list(self.history), len(infos), self.policy, now, self.last_action)
        self._log(d, now)
        self._save(d, sample)
        if d.desired != d.current:
            self.last_change = {"time": time.time(), **asdict(d), "action": d.action, "line": d.line()}
            self._save(d, sample)
            try:
                self.apply(self.fleet, d.desired)
            except Exception as exc:  # noqa: BLE001 - recorded and logged; the loop keeps control of the fleet
                log.error("%s failed: %s", d.action, exc)
                self.last_change["error"] = str(exc)
                self._save(d, sample)
            self.last_action = self.clock()
        return d

    def _log(self, d: Decision, now: float) -> None:
        """Every change is logged; a hold when its kind or count changes, and once a minute."""
        key = (d.kind, d.desired)
        if d.desired != d.current or key != self.last_logged[:2] or now - self.last_logged[2] >= HEARTBEAT_S:
            log.info("%s", d.line())
            self.last_logged = (*key, now)

    def _save(self, d: Decision, sample: Sample | None) -> None:
        p = self.policy
        state = {
            "pid": os.getpid(), "backend": self.fleet.backend.name, "min": p.min, "max": p.max,
            "target": d.desired, "current": d.current, "load": None if sample is None else sample.load,
            "cpu": None if sample is None else sample.cpu, "time": time.time(),
            "policy": asdict(p),
            "last_decision": {**asdict(d), "action": d.action, "line": d.line()},
            "last_change": self.last_change,
        }
        procs.write_json(state_path(self.fleet.cfg), state)

    def run(self, stop: threading.Event, poll: float) -> None:
        log.info("autoscaling %s instances between %d and %d (target %g jobs/worker, up %gs, down %gs, "
                 "cooldown %gs, poll %gs)", self.fleet.backend.name, self.policy.min, self.policy.max,
                 self.policy.target, self.policy.up_window, self.policy.down_window, self.policy.cooldown,
                 poll)
        while not stop.is_set():
            try:
                self.step()
            except Exception:  # noqa: BLE001 - a runtime or agent that is away now may be back next poll
                log.exception("autoscaler step failed; trying again in %gs", poll)
            stop.wait(poll)


def run_daemon(scaler: Autoscaler, poll: float) -> int:
    """`fleetctl autoscale`: loop until SIGTERM/SIGINT; a scale in progress finishes first."""
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        log.info("signal %d: stopping the autoscaler after this step", signum)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        scaler.run(stop, poll)
    finally:
        state_path(scaler.fleet.cfg).unlink(missing_ok=True)  # status then shows no stale target
    log.info("autoscaler stopped")
    return 0
