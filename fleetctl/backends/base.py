"""The one small interface every instance backend implements, and the values it trades in."""
from __future__ import annotations

import abc
import collections
import hashlib
import json
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from fleetctl.cluster import acl, redis_auth
from fleetctl.config import FleetConfig, instance_settings
from fleetctl.logs import LogReader

if TYPE_CHECKING:
    from fleetctl.fleet.planner import Plan


class FleetError(Exception):
    """Something fleetctl cannot do; the CLI turns it into exit code 1 with its message."""

    exit_code = 1


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
class Converged:
    """What a backend that places instances itself did with a plan: what to wait for, what is leaving."""

    started: list[InstanceInfo]
    removed: list[InstanceInfo]


class Backend(abc.ABC):
    """Runs instances somewhere (host processes, containers); fleet logic only talks to this."""

    name: str = "abstract"
    cfg: FleetConfig

    @abc.abstractmethod
    def list(self) -> list[InstanceInfo]:
        """Live instances of this fleet, found by asking the runtime; cleans up dead leftovers."""

    @abc.abstractmethod
    def start(self, spec: InstanceSpec) -> InstanceInfo:
        """Start one instance and return at once (readiness is the caller's business)."""

    @abc.abstractmethod
    def stop(self, info: InstanceInfo, grace: float) -> None:
        """SIGTERM the whole instance, wait up to `grace` seconds, then kill; returns when it is gone."""

    @abc.abstractmethod
    def log_readers(self) -> dict[str, LogReader]:
        """A reader per instance log this backend can show, by instance id: the running instances,
        and stopped ones whose log the runtime keeps (a post-mortem needs the log of what died)."""

    @abc.abstractmethod
    def rss_bytes(self, info: InstanceInfo) -> int | None:
        """Resident memory of everything the instance runs (master and workers), None if unknown."""

    @abc.abstractmethod
    def is_alive(self, info: InstanceInfo) -> bool:
        """Whether the instance is still running; used to fail fast while waiting for readiness."""

    def is_ready(self, info: InstanceInfo) -> bool:
        """Whether the runtime itself counts the instance as up (Swarm: its task is running, i.e. the
        image's health check passed); waiting for it keeps `docker service ls` in step with fleetctl."""
        return True

    def artifact(self) -> str:
        """What the instances run (an image ID, a source hash): part of the config hash, so a rebuilt
        image or updated code shows as drift and gets replaced like a changed setting."""
        return ""

    def plan(self, desired: int, actual: Sequence[InstanceInfo], cfg_hash: str, busy: set[int]) -> Plan:
        """The convergence plan; a runtime that places instances itself predicts what it will do."""
        from fleetctl.fleet.planner import plan

        return plan(desired, actual, cfg_hash, base_port=self.cfg.base_port, busy_ports=busy)

    def converge(self, p: Plan) -> Converged | None:
        """Hand the whole plan to a runtime that schedules (Swarm); None: fleetctl starts and stops
        instance by instance itself."""
        return None

    def remove_all(self, grace: float, report: Callable[[str], None]) -> int | None:
        """`down` in one step for a runtime that owns its instances as a group; None: one by one."""
        return None

    def preflight(self) -> None:  # noqa: B027 - optional hook, most backends need nothing
        """Fail before anything starts if the backend cannot start instances (e.g. image missing)."""

    def stop_orphans(self, grace: float, report: Callable[[str], None]) -> int:
        """Stop instances of this fleet that `list()` cannot see any more (lost state); returns how many.

        Most runtimes find everything by label, so by default there is nothing to do.
        """
        return 0

    def log_tail(self, info: InstanceInfo, lines: int = 20) -> str:
        """Last lines of the instance's log, for error messages."""
        reader = self.log_readers().get(info.id)
        return "\n".join(collections.deque(reader.read_new(), maxlen=lines)) if reader is not None else "(no log)"


def instance_id(port: int) -> str:
    """Instance ids follow the port so they are stable, unique per host and readable."""
    return f"ocr-{port}"


def is_instance_id(name: str) -> bool:
    """Whether `name` is one instance_id() makes (log files of instances sit beside the services')."""
    return re.fullmatch(r"ocr-\d+", name) is not None


def config_hash(cfg: FleetConfig, backend: str, artifact: str = "") -> str:
    """Hash of everything that shapes an instance, so drift shows and gets replaced (compose's idea):
    what it runs, and the environment it gets except its own identity."""
    env = instance_env(cfg, "", 0)
    # The gateway's address is the fleet's, not the instance's shape: a moved gateway only sends
    # documents' pages back to local OCR until instances are replaced (ocr_app/jobs/fanout.py falls back).
    for own in ("OCR_PORT", "OCR_INSTANCE_ID", "OCR_GATEWAY_URL"):
        env.pop(own)
    relevant: dict[str, object] = {"backend": backend, "artifact": artifact, "env": env}
    if backend == "docker":
        relevant["image"] = cfg.image
    blob = json.dumps(relevant, sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:12]


def _consul_token(cfg: FleetConfig) -> dict[str, str]:
    """OCR_CONSUL_TOKEN when the fleet's Consul has ACLs: the instances' own small token."""
    token = acl.role_token(cfg, "instance")
    return {"OCR_CONSUL_TOKEN": token} if token else {}


def instance_env(cfg: FleetConfig, spec_id: str, port: int) -> dict[str, str]:
    """The OCR_* environment an instance gets: its identity, where Consul and Redis are, and the
    instance settings of the table in fleetctl/config.py (see docs/architecture.md)."""
    return {
        "OCR_HOST": cfg.gateway_host,  # other hosts' gateways dial it there in cluster mode
        "OCR_PORT": str(port),
        "OCR_INSTANCE_ID": spec_id,
        "OCR_CONSUL_ADDR": cfg.consul_address,
        **_consul_token(cfg),
        "OCR_REDIS_URL": redis_auth.url(cfg),  # with our Redis's password in cluster mode
        "OCR_SERVICE_NAME": cfg.service_name,
        **instance_settings(cfg),
        "OCR_GATEWAY_URL": cfg.gateway_url,  # a document's pages go back through it to the whole fleet
    }
