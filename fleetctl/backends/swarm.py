"""Instances as the tasks of one Docker Swarm service: Swarm places, restarts and rolls them out.

fleetctl still plans and waits. Each task runs on its node's host network and binds
FLEET_BASE_PORT + generation offset + {{.Task.Slot}}; the offset alternates with every rolling
update, so a start-first update can run a slot's new task beside its old one on one node.
A task registers with its node's Consul agent (the same port on every node) and drains on
SIGTERM; Swarm's stop grace period is longer than that drain.
"""
from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from fleetctl.backends.docker import (
    LABEL,
    DockerRuntime,
    fleet_label,
    parse_docker_time,
)
from fleetctl.backends.environment import instance_env
from fleetctl.backends.types import (
    BackendUnavailable,
    InstanceInfo,
    InstanceSpec,
    Plan,
    Scheduled,
    Start,
    Stop,
    instance_id,
)
from fleetctl.config import FleetConfig

NS = 1_000_000_000
# Longer than all an instance does on SIGTERM: serve OCR_DRAIN_SECONDS (3 s) out of the registry,
# then let gunicorn finish in-flight work for up to OCR_GRACEFUL_TIMEOUT (90 s). Only then SIGKILL.
STOP_GRACE_S = 100
LIVE_STATES = ("new", "pending", "assigned", "accepted", "preparing", "ready", "starting", "running")
# The task's port, computed where the template has been expanded (Go templates cannot add).
PORT_EXPR = "$((FLEET_PORT_BASE + FLEET_TASK_SLOT))"
ADDR_FILE = "/tmp/ocr-fleet-address"
# The node's address as its Consul agent advertises it: the task binds and registers it, so the
# gateways of other nodes reach it (a lone dev agent says 127.0.0.1).
NODE_ADDR = ('import json, os, urllib.request as u\n'
             'try:\n'
             '    url = "http://%s/v1/agent/self" % os.environ["OCR_CONSUL_ADDR"]\n'
             '    print(json.load(u.urlopen(url, timeout=5))["Member"]["Addr"])\n'
             'except Exception:\n'
             '    print("127.0.0.1")\n')
RUN = (f"addr=$(python3 -c '{NODE_ADDR}'); echo \"$addr\" > {ADDR_FILE}; "
       f"export OCR_HOST=$addr OCR_PORT={PORT_EXPR} OCR_INSTANCE_ID=ocr-{PORT_EXPR}; "
       "exec gunicorn -c python:ocr_app.gunicorn_conf 'ocr_app:create_app()'")
# Readiness (engine warm), not liveness: a start-first update must not stop the old task early.
HEALTH = ("import os, urllib.request; port = int(os.environ['FLEET_PORT_BASE']) + "
          "int(os.environ['FLEET_TASK_SLOT']); "
          f"addr = open('{ADDR_FILE}').read().strip() or '127.0.0.1'; "
          "urllib.request.urlopen('http://%s:%d/ready' % (addr, port), timeout=2)")
APPLY_WAIT_S = 60.0
# Each check is a process in the container (runc exec + python3): not too often (docs/benchmarks.md).
HEALTH_INTERVAL_S = 2


def service_name(cfg: FleetConfig) -> str:
    """One service per fleet home, so a test fleet never touches a developer's."""
    return f"ocr-fleet-{fleet_label(cfg)}"


def ensure_swarm(client: Any, report: Callable[[str], None] = lambda _m: None) -> None:
    """Make this engine a swarm manager: init a single-node swarm when it is in none."""
    state = client.info().get("Swarm", {})
    if state.get("LocalNodeState") == "active":
        if not state.get("ControlAvailable"):
            raise BackendUnavailable("this Docker node is a swarm worker: run fleetctl on a manager node")
        return
    client.swarm.init(advertise_addr="127.0.0.1")
    report("initialised a single-node swarm (docker swarm init --advertise-addr 127.0.0.1)")


def is_manager(client: Any) -> bool:
    state = client.info().get("Swarm", {})
    return bool(state.get("LocalNodeState") == "active" and state.get("ControlAvailable"))


def _env_value(env: list[str], name: str) -> str:
    for item in env:
        key, _, value = item.partition("=")
        if key == name:
            return value
    return ""


def rolled_slots(slots: Sequence[int], desired: int) -> list[int]:
    """The slots a service of `desired` tasks has: the kept ones, then the lowest missing ones."""
    kept = list(slots)[:desired]
    extra = (s for s in range(1, desired + len(kept) + 1) if s not in kept)
    while len(kept) < desired:
        kept.append(next(extra))
    return sorted(kept)


class SwarmBackend(DockerRuntime):
    """The tasks of one replicated service; the Docker client is passed in. The image checks, memory
    and logs are the docker backend's, for the tasks' containers on this node."""

    name = "swarm"

    def __init__(self, cfg: FleetConfig, client: Any):
        super().__init__(cfg, client)
        self._nodes: dict[str, tuple[str, str]] = {}

    # --- the service and its tasks --------------------------------------------------------------

    def service(self) -> Any | None:
        import docker

        try:
            return self.client.services.get(service_name(self.cfg))
        except docker.errors.NotFound:
            return None

    def _node(self, node_id: str) -> tuple[str, str]:
        """(address, hostname) of a node, asked once per node."""
        if node_id not in self._nodes:
            try:
                attrs = self.client.nodes.get(node_id).attrs
                self._nodes[node_id] = (attrs["Status"].get("Addr") or "127.0.0.1",
                                        attrs["Description"].get("Hostname", node_id[:12]))
            except Exception:  # noqa: BLE001 - a node that left: show its id
                return ("127.0.0.1", node_id[:12])
        return self._nodes[node_id]

    def _tasks(self, service: Any) -> list[dict[str, Any]]:
        return list(service.tasks())

    def _task_port(self, task: dict[str, Any]) -> int:
        env = task["Spec"]["ContainerSpec"].get("Env") or []
        return int(_env_value(env, "FLEET_PORT_BASE") or 0) + int(task.get("Slot") or 0)

    def _info(self, task: dict[str, Any]) -> InstanceInfo:
        port = self._task_port(task)
        host, hostname = self._node(task.get("NodeID", "")) if task.get("NodeID") else ("127.0.0.1", "")
        status = task.get("Status", {})
        labels = task["Spec"]["ContainerSpec"].get("Labels") or {}
        return InstanceInfo(
            id=instance_id(port), backend=self.name, host=host, port=port,
            container_id=(status.get("ContainerStatus") or {}).get("ContainerID") or None,
            started_at=parse_docker_time(task.get("CreatedAt", "")),
            config_hash=labels.get(f"{LABEL}.config-hash", ""), node=hostname or None,
        )

    def _wanted(self, service: Any) -> list[dict[str, Any]]:
        """Tasks Swarm wants running (the current ones, not the history it keeps)."""
        return [t for t in self._tasks(service)
                if t.get("DesiredState") == "running" and t["Status"]["State"] in LIVE_STATES]

    def instances(self) -> list[InstanceInfo]:
        service = self.service() if is_manager(self.client) else None
        if service is None:
            return []
        return sorted((self._info(t) for t in self._wanted(service)), key=lambda i: i.port)

    # --- planning: Swarm picks the tasks, fleetctl predicts their slots ---------------------------

    def _generation(self, service: Any | None) -> int:
        if service is None:
            return 0
        return int(service.attrs["Spec"].get("Labels", {}).get(f"{LABEL}.generation", "0"))

    def _port_base(self, generation: int) -> int:
        return self.cfg.base_port + generation * self.cfg.swarm_slots

    def plan(self, desired: int, actual: Sequence[InstanceInfo], cfg_hash: str,
             busy: set[int]) -> Plan:
        """Scale: the lowest free slots start (Swarm fills those too); Swarm picks which tasks stop, so
        the stops shown are a guess. Stale: every slot rolls to the other port window, new before old."""
        service = self.service()
        gen = self._generation(service)
        base = self._port_base(gen)
        if any(i.config_hash != cfg_hash for i in actual):
            slots = rolled_slots(sorted(i.port - base for i in actual), desired)
            other = self._port_base(1 - gen)
            why = "rolling update, start-first"
            starts = tuple(Start(instance_id(other + s), other + s, why) for s in slots)
            return Plan(desired=desired, start=starts, stop=tuple(Stop(i, "rolling update") for i in actual),
                        config_hash=cfg_hash)
        extra = sorted(actual, key=lambda i: i.port, reverse=True)[:max(0, len(actual) - desired)]
        keep = [i for i in actual if i not in extra]
        slots = rolled_slots(sorted(i.port - base for i in keep), desired)
        starts = tuple(Start(instance_id(base + s), base + s) for s in slots if base + s not in
                       {i.port for i in keep})
        stops = tuple(Stop(i, "scale down: Swarm picks the task") for i in extra)
        return Plan(desired=desired, start=starts, stop=stops, keep=tuple(keep), config_hash=cfg_hash)

    # --- applying -------------------------------------------------------------------------------

    def preflight(self) -> None:
        self.ensure_image()
        ensure_swarm(self.client)

    def _spec(self, generation: int, cfg_hash: str) -> dict[str, Any]:
        import docker

        env = instance_env(self.cfg, "", 0)
        for own in ("OCR_PORT", "OCR_INSTANCE_ID"):
            env.pop(own)
        env.update(FLEET_PORT_BASE=str(self._port_base(generation)), FLEET_TASK_SLOT="{{.Task.Slot}}")
        fleet = {LABEL: "1", f"{LABEL}.fleet": fleet_label(self.cfg)}
        return {
            # By ID: the agent never tries a registry for an image referenced by its digest.
            "image": self.artifact(),
            "command": ["sh", "-c", RUN],
            "env": [f"{k}={v}" for k, v in env.items()],
            "labels": {**fleet, f"{LABEL}.generation": str(generation), f"{LABEL}.image": self.cfg.image},
            # Not the docker backend's labels: it would take the tasks' containers for its own.
            "container_labels": {f"{LABEL}.swarm": fleet_label(self.cfg), f"{LABEL}.config-hash": cfg_hash},
            "networks": ["host"],
            "stop_grace_period": STOP_GRACE_S * NS,
            "healthcheck": docker.types.Healthcheck(
                test=["CMD", "python3", "-c", HEALTH], interval=HEALTH_INTERVAL_S * NS, timeout=3 * NS, retries=3,
                start_period=120 * NS),
            "update_config": docker.types.UpdateConfig(parallelism=1, order="start-first",
                                                       failure_action="pause", monitor=5 * NS),
            "restart_policy": docker.types.RestartPolicy(condition="any", delay=2 * NS),
        }

    def schedule(self, p: Plan, specs: Sequence[InstanceSpec], report: Callable[[str], None]) -> Scheduled:
        """Create, scale or roll the service to the plan; return the tasks to wait for and those leaving
        (the task template, not `specs`, says what each task runs).

        Swarm picks the tasks a scale-down stops, so they are read back from it, and a rolling update
        that also shrinks scales down first: the slots it then rolls are the ones Swarm kept."""
        import docker

        mode = docker.types.ServiceMode("replicated", replicas=p.desired)
        service = self.service()
        if service is None:
            if p.desired:
                self.client.services.create(name=service_name(self.cfg), mode=mode, **self._spec(0, p.config_hash))
            return Scheduled(started=self._infos(0, range(1, p.desired + 1), p.config_hash))
        gen = self._generation(service)
        wanted = self._wanted(service)
        removed: list[InstanceInfo] = []
        if p.desired < len(wanted):
            self._scale(p.desired)
            removed = self._await_removed({t["ID"]: t for t in wanted})
            service.reload()
        kept = [self._info(t) for t in self._wanted(service)]
        slots = rolled_slots(sorted(i.port - self._port_base(gen) for i in kept), p.desired)
        if any(i.config_hash != p.config_hash for i in kept):
            service.update(mode=mode, **self._spec(1 - gen, p.config_hash))
            return Scheduled(started=self._infos(1 - gen, slots, p.config_hash), removed=removed + kept)
        if p.desired > len(kept):
            self._scale(p.desired)
        new = [s for s in slots if self._port_base(gen) + s not in {i.port for i in kept}]
        return Scheduled(started=self._infos(gen, new, p.config_hash), removed=removed)

    def _scale(self, replicas: int) -> None:
        """Set the replica count alone. The CLI sends the service's spec back unchanged; the SDK's
        scale() sends empty sections where the spec has none, which Swarm takes for a new task
        template and answers with a rolling update of every task."""
        run = subprocess.run(["docker", "service", "scale", "--detach", f"{service_name(self.cfg)}={replicas}"],
                             capture_output=True, text=True, timeout=60, check=False)
        if run.returncode != 0:
            raise BackendUnavailable(f"docker service scale failed: {run.stderr.strip()}")

    def _infos(self, generation: int, slots: Iterable[int], cfg_hash: str) -> list[InstanceInfo]:
        """What the tasks of these slots will be (their node is known once Swarm placed them)."""
        base = self._port_base(generation)
        return [InstanceInfo(id=instance_id(base + s), backend=self.name, host="127.0.0.1", port=base + s,
                             config_hash=cfg_hash) for s in slots]

    def _await_removed(self, before: dict[str, dict[str, Any]]) -> list[InstanceInfo]:
        """The tasks Swarm chose to stop: those it no longer wants running (asked until it has chosen)."""
        deadline = time.monotonic() + APPLY_WAIT_S
        gone: list[InstanceInfo] = []
        while time.monotonic() < deadline:
            service = self.service()
            wanted = {t["ID"] for t in self._wanted(service)} if service is not None else set()
            gone = [self._info(t) for tid, t in before.items() if tid not in wanted]
            if gone:
                return gone
            time.sleep(0.2)
        return gone

    def _task_of(self, info: InstanceInfo) -> dict[str, Any] | None:
        """The newest task bound to this instance's port."""
        service = self.service()
        if service is None:
            return None
        mine = [t for t in self._tasks(service) if self._task_port(t) == info.port]
        return max(mine, key=lambda t: t.get("CreatedAt", ""), default=None)

    def is_alive(self, info: InstanceInfo) -> bool:
        """A slot still on its way up (no task yet in a rolling update) counts as alive."""
        task = self._task_of(info)
        if task is None:  # not created yet, or removed after it stopped (a task that ran had a container)
            return info.container_id is None and self.service() is not None
        return bool(task["Status"]["State"] in LIVE_STATES)

    def is_ready(self, info: InstanceInfo) -> bool:
        task = self._task_of(info)
        return task is not None and task["Status"]["State"] == "running"

    def stop(self, info: InstanceInfo, grace: float) -> None:
        """One task cannot be stopped alone: scale the service down by one (Swarm picks which)."""
        service = self.service()
        if service is not None:
            self._scale(max(0, len(self._wanted(service)) - 1))

    def remove_all(self, grace: float, report: Callable[[str], None]) -> int:
        """`down`: remove the service; its tasks drain on SIGTERM and are gone when this returns."""
        service = self.service() if is_manager(self.client) else None
        if service is None:
            return 0
        count = len(self._wanted(service))
        containers = [self._info(t).container_id for t in self._tasks(service)]
        service.remove()
        report(f"removed swarm service {service_name(self.cfg)} ({count} task(s))")
        deadline = time.monotonic() + grace + STOP_GRACE_S
        import docker

        for cid in filter(None, containers):
            while time.monotonic() < deadline:
                try:
                    self.client.containers.get(cid)
                except docker.errors.NotFound:
                    break
                time.sleep(0.2)
        return count
