"""Orchestration as plain functions: up, scale (plan then apply), down. No Click in here.

Scale-up waits until every new instance passes its Consul check *and* sits in the
rendered nginx upstream; scale-down takes an instance out of the upstream first
(Consul maintenance mode, then a reload without it), lets in-flight requests finish,
and only then sends SIGTERM. That order is what keeps the gateway at zero errors.
Every backend takes the plan in `schedule`: one that starts instances one by one leaves the
stops to the drain above; one whose runtime schedules (Swarm) stops tasks that drain themselves
on SIGTERM (out of Consul first), and fleetctl waits for both sides.
"""
from __future__ import annotations

import contextlib
import os
import socket
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from fleetctl import procs
from fleetctl.backends.base import Backend
from fleetctl.backends.environment import config_hash, instance_env
from fleetctl.backends.types import InstanceFailed, InstanceInfo, InstanceSpec, Plan, Start
from fleetctl.cluster import agent as cluster
from fleetctl.config import FleetConfig
from fleetctl.errors import FleetError
from fleetctl.fleet import metrics_scrape, planner
from fleetctl.fleet.status import health_by_id

POLL_S = 0.2
STOP_GRACE_S = 30.0  # beyond the instance's own drain; in-flight work has finished by then
INFLIGHT_WAIT_S = 30.0


class ScaleTimeout(FleetError):
    """The fleet did not converge in time; `pending` says what was still outstanding (exit code 3)."""

    exit_code = 3

    def __init__(self, message: str, pending: Sequence[str]):
        super().__init__(message)
        self.pending = list(pending)


@dataclass
class Fleet:
    """Everything the orchestration needs, passed in: config, backend, Consul client, upstream view."""

    cfg: FleetConfig
    backend: Backend
    consul: Any
    upstream_members: Callable[[FleetConfig], set[str]]
    reload_count: Callable[[FleetConfig], int]
    report: Callable[[str], None] = field(default=lambda _msg: None)
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.monotonic


def port_free(port: int, host: str = "127.0.0.1") -> bool:
    """Whether an instance could bind this port now (SO_REUSEADDR like gunicorn, so TIME_WAIT is fine)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def busy_ports(base_port: int, span: int, own: Iterable[int], host: str = "127.0.0.1") -> set[int]:
    """Ports in [base, base+span) held by something that is not one of our instances."""
    mine = set(own)
    top = min(65536, base_port + span)
    return {p for p in range(base_port, top) if p not in mine and not port_free(p, host)}


def oversubscription_warning(cfg: FleetConfig, instances: int, cpus: int | None = None) -> str | None:
    """Warn when engines would fight for cores: oversubscription is slower, not faster (docs/benchmarks.md)."""
    cpus = cpus or os.cpu_count() or 1
    demand = instances * cfg.workers * cfg.threads
    if demand <= cpus:
        return None
    return (
        f"warning: {instances} instance(s) x {cfg.workers} worker(s) x {cfg.threads} thread(s) = {demand} "
        f"engine threads on {cpus} CPU(s); oversubscription lowers throughput "
        f"(measured 0.98 img/s vs 1.45-1.56 img/s on 2 cores)"
    )


def make_plan(fleet: Fleet, desired: int) -> Plan:
    """The convergence plan for `desired` instances, from what the runtime reports right now."""
    actual = fleet.backend.instances()
    span = desired + len(actual) + 64
    busy = busy_ports(fleet.cfg.base_port, span, (i.port for i in actual), fleet.cfg.gateway_host)
    cfg_hash = config_hash(fleet.cfg, fleet.backend.name, fleet.backend.artifact())
    own = fleet.backend.plan(desired, actual, cfg_hash, busy)
    return own or planner.plan(desired, actual, cfg_hash, base_port=fleet.cfg.base_port, busy_ports=busy)


def scale_lock(cfg: FleetConfig) -> contextlib.AbstractContextManager[None]:
    """One scale at a time per fleet: two concurrent plans would pick the same free ports."""
    return procs.file_lock(cfg.run_dir / "scale.lock")


def scale(fleet: Fleet, desired: int, *, wait: bool = True, timeout: float = 180.0,
          show_plan: Callable[[Plan], None] = lambda _p: None) -> Plan:
    """Plan, then apply: start new instances, wait for them, then drain and stop the removed ones."""
    with scale_lock(fleet.cfg):
        p = make_plan(fleet, desired)
        show_plan(p)
        apply_plan(fleet, p, wait=wait, timeout=timeout)
    return p


def apply_plan(fleet: Fleet, p: Plan, *, wait: bool = True, timeout: float = 180.0) -> None:
    """Carry out a plan. New capacity comes up before old capacity goes, so replacement has no gap."""
    if p.is_noop:
        return
    deadline = fleet.clock() + timeout
    t0 = fleet.clock()
    if p.start:
        fleet.backend.preflight()
    scheduled = fleet.backend.schedule(p, [instance_spec(fleet, s, p.config_hash) for s in p.start], fleet.report)
    if scheduled.started and wait:
        wait_ready(fleet, scheduled.started, deadline)
        fleet.report(f"{len(scheduled.started)} instance(s) ready in {fleet.clock() - t0:.1f}s")
    if scheduled.drain:
        drain_and_stop(fleet, scheduled.drain, deadline)
    wait_gone(fleet, scheduled.removed, deadline)


def instance_spec(fleet: Fleet, start: Start, cfg_hash: str) -> InstanceSpec:
    """What one Start runs as, labelled with the plan's config hash (the one its stale check used)."""
    return InstanceSpec(id=start.id, port=start.port, config_hash=cfg_hash,
                        env=instance_env(fleet.cfg, start.id, start.port), host=fleet.cfg.gateway_host)


def passing_ids(fleet: Fleet) -> set[str]:
    """Service ids whose checks all pass; an unreachable agent counts as 'none yet'."""
    health = health_by_id(fleet.consul, fleet.cfg.service_name, cluster.node_name(fleet.cfg))
    return {sid for sid, state in health.items() if state == "passing"}


def wait_ready(fleet: Fleet, infos: Sequence[InstanceInfo], deadline: float) -> None:
    """Poll until each instance passes in Consul and is in the rendered upstream; fail fast if one dies."""
    t0 = fleet.clock()
    seen: dict[str, set[str]] = {i.id: set() for i in infos}
    pending = {i.id: i for i in infos}
    while pending:
        passing = passing_ids(fleet)
        members = fleet.upstream_members(fleet.cfg)
        placed = {i.id: i for i in fleet.backend.instances()}  # where the runtime put it (Swarm picks the node)
        for iid, info in list(pending.items()):
            info = pending[iid] = placed.get(iid, info)
            marks = seen[iid]
            if iid in passing and "passing" not in marks:
                marks.add("passing")
                fleet.report(f"{iid}: passing in Consul (+{fleet.clock() - t0:.1f}s)")
            if info.address in members and "upstream" not in marks:
                marks.add("upstream")
                fleet.report(f"{iid}: in the nginx upstream (+{fleet.clock() - t0:.1f}s)")
            if marks >= {"passing", "upstream"} and fleet.backend.is_ready(info):
                del pending[iid]
            elif not fleet.backend.is_alive(info):
                tail = fleet.backend.log_tail(info)
                raise InstanceFailed(f"{iid} exited while starting; last log lines:\n{tail}")
        if not pending:
            return
        if fleet.clock() >= deadline:
            raise ScaleTimeout(
                "timed out waiting for new instances",
                [_pending_ready(iid, seen[iid]) for iid in pending],
            )
        fleet.sleep(POLL_S)


def _pending_ready(iid: str, marks: set[str]) -> str:
    labels = {"passing": "passing in Consul", "upstream": "in the nginx upstream"}
    missing = [label for key, label in labels.items() if key not in marks] or ["up in the runtime's view"]
    return f"{iid}: not yet " + " and ".join(missing)


def wait_gone(fleet: Fleet, infos: Sequence[InstanceInfo], deadline: float) -> None:
    """Instances the runtime stops drain themselves on SIGTERM: wait until they left the upstream and
    exited, then drop any registration a hard kill left behind."""
    t0 = fleet.clock()
    pending = {i.id: i for i in infos}
    while pending:
        members = fleet.upstream_members(fleet.cfg)
        for iid, info in list(pending.items()):
            if info.address not in members and not fleet.backend.is_alive(info):
                deregister(fleet.consul, iid)
                fleet.report(f"{iid}: stopped (+{fleet.clock() - t0:.1f}s)")
                del pending[iid]
        if not pending:
            return
        if fleet.clock() >= deadline:
            raise ScaleTimeout("timed out waiting for instances to stop", [f"{i}: still running" for i in pending])
        fleet.sleep(POLL_S)


def set_maintenance(consul: Any, service_id: str, enable: bool) -> None:
    """Consul maintenance mode fails the service's health, so the sync loop drops it from nginx."""
    try:
        consul.agent.service.maintenance(service_id, "true" if enable else "false",
                                         reason="fleetctl: draining" if enable else None)
    except Exception as exc:  # noqa: BLE001 - an unknown id or a down agent must not stop the drain
        if enable:
            raise FleetError(f"could not put {service_id} in maintenance mode: {exc}") from exc


def deregister(consul: Any, service_id: str) -> None:
    """Drop a stopped instance's registration (it deregisters itself on SIGTERM; this covers SIGKILL)."""
    try:
        consul.agent.service.deregister(service_id)
    except Exception:  # noqa: BLE001, S110 - already gone is the goal
        pass


def drain_and_stop(fleet: Fleet, infos: Sequence[InstanceInfo], deadline: float) -> None:
    """Out of the upstream, in-flight done, then SIGTERM; all removed instances drain together."""
    t0 = fleet.clock()
    before_members = fleet.upstream_members(fleet.cfg)
    before_reloads = fleet.reload_count(fleet.cfg)
    for info in infos:
        set_maintenance(fleet.consul, info.id, True)
        fleet.report(f"{info.id}: draining (maintenance mode)")
    addresses = {i.address for i in infos}
    needs_reload = bool(addresses & before_members)
    while True:
        members = fleet.upstream_members(fleet.cfg)
        still = addresses & members
        reloaded = not needs_reload or fleet.reload_count(fleet.cfg) > before_reloads
        if not still and reloaded:
            break
        if fleet.clock() >= deadline:
            pending = [f"{i.id}: still in the nginx upstream" for i in infos if i.address in still]
            pending = pending or ["nginx has not reloaded without the drained instances"]
            raise ScaleTimeout("timed out draining instances", pending)
        fleet.sleep(POLL_S)
    fleet.report(f"out of the upstream (+{fleet.clock() - t0:.1f}s)")
    wait_inflight(fleet, infos, min(deadline, fleet.clock() + INFLIGHT_WAIT_S))
    stop_all(fleet.backend, fleet.consul, infos, fleet.report)
    fleet.report(f"{len(infos)} instance(s) stopped (+{fleet.clock() - t0:.1f}s)")


def wait_inflight(fleet: Fleet, infos: Sequence[InstanceInfo], deadline: float) -> None:
    """Let requests nginx already handed over finish; gunicorn's graceful stop is the second net."""
    pending = list(infos)
    while pending:
        still = []
        for info in pending:
            m = metrics_scrape.fetch(info.address, timeout=1.0)
            if m is not None and m.inflight > 0:
                still.append(info)
        pending = still
        if not pending or fleet.clock() >= deadline:
            return
        fleet.sleep(POLL_S)


def stop_all(backend: Backend, consul: Any, infos: Sequence[InstanceInfo],
             report: Callable[[str], None], grace: float = STOP_GRACE_S) -> None:
    """SIGTERM all at once (each drains for its own few seconds), wait for every exit, clean Consul."""
    if not infos:
        return

    def one(info: InstanceInfo) -> None:
        backend.stop(info, grace)
        deregister(consul, info.id)
        report(f"{info.id}: stopped")

    with ThreadPoolExecutor(max_workers=min(8, len(infos))) as pool:
        for fut in [pool.submit(one, i) for i in infos]:
            fut.result()


def down(cfg: FleetConfig, backends: Sequence[Backend], consul: Any | None,
         stop_services: Callable[[FleetConfig], None], report: Callable[[str], None]) -> int:
    """Stop every instance of every backend, then the managed services; returns instances stopped."""
    count = 0
    for backend in backends:
        removed = backend.remove_all(STOP_GRACE_S, report)
        if removed is not None:
            count += removed
            continue
        infos = backend.instances()
        if not infos:
            continue
        stop_all(backend, consul, infos, report)
        count += len(infos)
    for backend in backends:
        count += backend.stop_orphans(STOP_GRACE_S, report)
    stop_services(cfg)
    report("managed services stopped")
    return count


def other_backends_note(chosen: Backend, backends: Sequence[Backend]) -> str | None:
    """Instances on another backend keep serving beside the chosen one; say so rather than surprise."""
    counts = {b.name: len(b.instances()) for b in backends if b.name != chosen.name}
    busy = {name: n for name, n in counts.items() if n}
    if not busy:
        return None
    parts = ", ".join(f"{n} on the {name} backend" for name, n in busy.items())
    hint = " ".join(f"`fleetctl scale 0 --backend {name}`" for name in busy)
    return f"note: {parts} also serve(s) through the gateway; {hint} removes them"
