"""Instance backends: where instances run. Pick one by name; each hides its runtime behind `Backend`."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fleetctl.backends.base import Backend
from fleetctl.backends.environment import config_hash, instance_env
from fleetctl.backends.types import (
    BackendUnavailable,
    InstanceFailed,
    InstanceInfo,
    InstanceSpec,
    UnknownInstance,
    instance_id,
)
from fleetctl.config import BACKENDS, FleetConfig
from fleetctl.errors import FleetError

__all__ = [
    "Backend",
    "BackendUnavailable",
    "FleetError",
    "InstanceFailed",
    "InstanceInfo",
    "InstanceSpec",
    "UnknownInstance",
    "config_hash",
    "existing_backends",
    "instance_env",
    "instance_id",
    "make_backend",
]


def make_backend(name: str, cfg: FleetConfig, docker_client: Callable[[], Any] | None = None,
                 report: Callable[[str], None] = lambda _m: None) -> Backend:
    """The backend called `name`; `docker_client` is only called (and Docker only needed) for docker
    and swarm; swarm makes the engine a single-node swarm manager when it is in no swarm."""
    if name == "process":
        from fleetctl.backends.process import ProcessBackend

        return ProcessBackend(cfg)
    if name in ("docker", "swarm") and cfg.engine != "rapidocr":
        raise BackendUnavailable(f"OCR_ENGINE={cfg.engine} runs on the process backend only: the instance image "
                                 "carries the default engine (rapidocr); use --backend process")
    if name == "docker":
        from fleetctl.backends.docker import DockerBackend, connect

        return DockerBackend(cfg, (docker_client or connect)())
    if name == "swarm":
        from fleetctl.backends.docker import connect
        from fleetctl.backends.swarm import SwarmBackend, ensure_swarm

        client = (docker_client or connect)()
        ensure_swarm(client, report)
        return SwarmBackend(cfg, client)
    raise BackendUnavailable(f"unknown backend {name!r}; choose one of {', '.join(BACKENDS)}")


def existing_backends(cfg: FleetConfig) -> list[Backend]:
    """Every backend that can have instances right now, without starting anything (for status and down)."""
    from fleetctl.backends.docker import DockerBackend, docker_running
    from fleetctl.backends.process import ProcessBackend

    found: list[Backend] = [ProcessBackend(cfg)]
    client = docker_running()
    if client is not None:
        from fleetctl.backends.swarm import SwarmBackend, is_manager

        found.append(DockerBackend(cfg, client))
        if is_manager(client):
            found.append(SwarmBackend(cfg, client))
    return found
