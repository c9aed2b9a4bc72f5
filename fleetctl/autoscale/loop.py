"""Autoscaling: a control loop from instance metrics to a desired count, applied as `scale` applies it.

Each poll scrapes the instances into a Sample; the pure policy (policy.py) turns the history into a
desired count; `Autoscaler` logs the reason, records it for `fleetctl status`, and plans-then-applies.
"""
from __future__ import annotations

import logging
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
from fleetctl.autoscale.policy import Decision, Policy, Sample, decide
from fleetctl.backends.types import InstanceInfo
from fleetctl.config import FleetConfig
from fleetctl.fleet import metrics_scrape

log = logging.getLogger("fleetctl.autoscale.loop")

CPU_SPAN_S = 20.0  # CPU rates over this span: workers refresh their CPU gauge every 5 s
HEARTBEAT_S = 60.0  # an unchanged hold is logged again this often


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
