"""The values backends and the planner trade in: what to start, what runs, and a plan between the two."""
from __future__ import annotations

import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

from fleetctl.errors import FleetError


class BackendUnavailable(FleetError):
    """The runtime behind a backend (e.g. Docker) is missing or not running; the message says what to do."""


class InstanceFailed(FleetError):
    """An instance died or refused to start; carries the tail of its log so the user sees why."""


class UnknownInstance(FleetError):
    """No running instance has the given id."""


@dataclass(frozen=True)
class InstanceSpec:
    """What to start: identity, where it listens, and the environment it gets."""

    id: str
    port: int
    config_hash: str
    env: Mapping[str, str] = field(default_factory=dict)
    host: str = "127.0.0.1"


@dataclass(frozen=True)
class InstanceInfo:
    """A running instance as the runtime reports it (never read from a state file alone)."""

    id: str
    backend: str
    host: str
    port: int
    pid: int | None = None
    container_id: str | None = None
    started_at: float = 0.0
    config_hash: str = ""
    node: str | None = None  # the machine it runs on, when the runtime places instances (Swarm)

    @property
    def address(self) -> str:
        """host:port, the form Consul and the upstream file use."""
        return f"{self.host}:{self.port}"

    @property
    def where(self) -> str:
        """What runs it, for progress lines: a pid or a container."""
        return f"pid {self.pid}" if self.pid else f"container {(self.container_id or '')[:12]}"

    def uptime(self, now: float | None = None) -> float:
        return max(0.0, (time.time() if now is None else now) - self.started_at)


@dataclass(frozen=True)
class Scheduled:
    """What a backend did with a plan: the instances to wait for, and who takes the plan's stops out."""

    started: list[InstanceInfo]
    removed: list[InstanceInfo] = field(default_factory=list)  # the runtime stops these: they drain on SIGTERM
    drain: list[InstanceInfo] = field(default_factory=list)  # fleetctl drains and stops these itself


def instance_id(port: int) -> str:
    """Instance ids follow the port so they are stable, unique per host and readable."""
    return f"ocr-{port}"


def is_instance_id(name: str) -> bool:
    """Whether `name` is one instance_id() makes (log files of instances sit beside the services')."""
    return re.fullmatch(r"ocr-\d+", name) is not None


@dataclass(frozen=True)
class Start:
    """Start a new instance with this id on this port."""

    id: str
    port: int
    reason: str = "scale up"


@dataclass(frozen=True)
class Stop:
    """Drain and stop this instance."""

    instance: InstanceInfo
    reason: str = "scale down"


@dataclass(frozen=True)
class Plan:
    """The actions that take the fleet from what runs now to the desired count."""

    desired: int
    start: tuple[Start, ...] = ()
    stop: tuple[Stop, ...] = ()
    keep: tuple[InstanceInfo, ...] = ()
    config_hash: str = ""  # what started instances are labelled with: computed once, with the plan

    @property
    def is_noop(self) -> bool:
        return not self.start and not self.stop

    @property
    def final_count(self) -> int:
        return len(self.keep) + len(self.start)

    def describe(self) -> list[str]:
        """Human-readable lines, one per action, for --dry-run and progress output."""
        lines = [f"start {s.id} on port {s.port} ({s.reason})" for s in self.start]
        lines += [f"stop  {s.instance.id} at {s.instance.address} ({s.reason})" for s in self.stop]
        lines += [f"keep  {k.id} at {k.address}" for k in self.keep]
        if self.is_noop:
            lines.insert(0, f"nothing to do: {self.desired} instance(s) running with the current config")
        return lines

    def to_dict(self) -> dict[str, object]:
        return {
            "desired": self.desired,
            "start": [{"id": s.id, "port": s.port, "reason": s.reason} for s in self.start],
            "stop": [{"id": s.instance.id, "port": s.instance.port, "reason": s.reason} for s in self.stop],
            "keep": [{"id": k.id, "port": k.port} for k in self.keep],
            "config_hash": self.config_hash,
        }
