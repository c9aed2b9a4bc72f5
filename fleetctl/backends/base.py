"""The one small interface every instance backend implements, and the values it trades in."""
from __future__ import annotations

import abc
import hashlib
import json
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

from fleetctl.config import FleetConfig


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

    @property
    def address(self) -> str:
        """host:port, the form Consul and the upstream file use."""
        return f"{self.host}:{self.port}"

    def uptime(self, now: float | None = None) -> float:
        return max(0.0, (time.time() if now is None else now) - self.started_at)


class Backend(abc.ABC):
    """Runs instances somewhere (host processes, containers); fleet logic only talks to this."""

    name: str = "abstract"

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
    def logs(self, info: InstanceInfo, follow: bool) -> Iterator[str]:
        """The instance's output, as text chunks; with follow, keeps yielding until the instance ends."""

    @abc.abstractmethod
    def rss_bytes(self, info: InstanceInfo) -> int | None:
        """Resident memory of everything the instance runs (master and workers), None if unknown."""

    @abc.abstractmethod
    def is_alive(self, info: InstanceInfo) -> bool:
        """Whether the instance is still running; used to fail fast while waiting for readiness."""

    def artifact(self) -> str:
        """What the instances run (an image ID, a source hash): part of the config hash, so a rebuilt
        image or updated code shows as drift and gets replaced like a changed setting."""
        return ""

    def preflight(self) -> None:  # noqa: B027 - optional hook, most backends need nothing
        """Fail before anything starts if the backend cannot start instances (e.g. image missing)."""

    def log_tail(self, info: InstanceInfo, lines: int = 20) -> str:
        """Last lines of the instance's log, for error messages."""
        text = "".join(self.logs(info, follow=False))
        return "\n".join(text.splitlines()[-lines:])


def instance_id(port: int) -> str:
    """Instance ids follow the port so they are stable, unique per host and readable."""
    return f"ocr-{port}"


def config_hash(cfg: FleetConfig, backend: str, artifact: str = "") -> str:
    """Hash of every setting that shapes an instance, so drift shows and gets replaced (compose's idea)."""
    relevant: dict[str, object] = {
        "backend": backend,
        "artifact": artifact,
        "workers": cfg.workers,
        "threads": cfg.threads,
        "max_upload_mb": cfg.max_upload_mb,
        "consul": cfg.consul_address,
        "redis": cfg.redis_address,
        "service": cfg.service_name,
    }
    if backend == "docker":
        relevant["image"] = cfg.image
    blob = json.dumps(relevant, sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:12]


def instance_env(cfg: FleetConfig, spec_id: str, port: int, runtime_dir: str | None) -> dict[str, str]:
    """The OCR_* environment an instance gets (see docs/architecture.md)."""
    env = {
        "OCR_HOST": "127.0.0.1",
        "OCR_PORT": str(port),
        "OCR_INSTANCE_ID": spec_id,
        "OCR_CONSUL_ADDR": cfg.consul_address,
        "OCR_REDIS_URL": cfg.redis_address,
        "OCR_SERVICE_NAME": cfg.service_name,
        "OCR_WORKERS": str(cfg.workers),
        "OCR_THREADS": str(cfg.threads),
        "OCR_MAX_UPLOAD_MB": str(cfg.max_upload_mb),
        "OCR_GATEWAY_URL": cfg.gateway_url,  # a document's pages go back through it to the whole fleet
    }
    if runtime_dir is not None:
        env["OCR_RUNTIME_DIR"] = runtime_dir
    return env
