"""Instances as containers of the fleet image, found by their labels (compose's way).

Host networking keeps the contract identical to the process backend: each instance
listens on its own loopback port and talks to the same Consul and Redis.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import psutil

from fleetctl import resources
from fleetctl.backends.base import Backend, StartsOneByOne
from fleetctl.backends.types import BackendUnavailable, InstanceFailed, InstanceInfo, InstanceSpec
from fleetctl.config import FleetConfig
from fleetctl.logs import LogReader

LABEL = "ocr-fleet"
STOPPED_STATES = ("exited", "dead")


def fleet_label(cfg: FleetConfig) -> str:
    """Which fleet a container belongs to, so a test fleet never lists a developer's containers."""
    return hashlib.sha256(str(cfg.home).encode()).hexdigest()[:12]


def parse_docker_time(value: str) -> float:
    """Docker's RFC 3339 with nanoseconds -> epoch seconds (Python parses at most microseconds)."""
    if not value or value.startswith("0001-"):
        return 0.0
    value = value.rstrip("Z")
    head, _, frac = value.partition(".")
    stamp = datetime.fromisoformat(f"{head}.{(frac + '000000')[:6]}+00:00")
    return stamp.timestamp()


def connect(
    *,
    from_env: Callable[[], Any] | None = None,
    start_script: Path | None = None,
    timeout: float = 60.0,
    sleep: Callable[[float], None] = time.sleep,
) -> Any:
    """A pinged Docker client; starts dockerd with the project script when it is installed but down."""
    import docker  # imported here: the process backend must work where the SDK is unusable

    make = from_env or docker.from_env
    client = docker_running(from_env)
    if client is not None:
        return client
    if shutil.which("dockerd") is None:
        raise BackendUnavailable(
            "Docker is not installed (no dockerd on PATH): install it with `fleetctl deps --with-docker`, "
            "or use the process backend (--backend process)"
        )
    start_script = start_script or resources.script("start-dockerd.sh")
    if not start_script.exists():
        raise BackendUnavailable("the Docker daemon is not running: start dockerd, then retry")
    proc = subprocess.run(
        ["bash", str(start_script)], check=False, capture_output=True, text=True, timeout=timeout
    )
    if proc.returncode != 0:
        raise BackendUnavailable(f"starting dockerd with {start_script.name} failed:\n{proc.stderr.strip()}")
    deadline = time.monotonic() + timeout
    while True:
        try:
            client = make()
            client.ping()
            return client
        except docker.errors.DockerException as exc:
            if time.monotonic() >= deadline:
                raise BackendUnavailable(f"dockerd did not answer within {timeout:.0f}s: {exc}") from None
        sleep(0.2)


def _no_local_socket() -> bool:
    """No daemon socket where the SDK would look: asking would only leak the SDK's probe socket."""
    host = os.environ.get("DOCKER_HOST", "")
    if host and not host.startswith("unix://"):
        return False
    return not os.path.exists(host.removeprefix("unix://") or "/var/run/docker.sock")


def docker_running(from_env: Callable[[], Any] | None = None) -> Any | None:
    """A client if a daemon already answers, else None; `down` must not start dockerd just to find nothing."""
    try:
        import docker
    except ImportError:
        return None
    if from_env is None and _no_local_socket():
        return None
    try:
        client = (from_env or docker.from_env)()
        client.ping()
        return client
    except docker.errors.DockerException:  # socket absent or daemon down: no containers to stop
        return None


class DockerRuntime(Backend):
    """What the docker and swarm backends share: the client (passed in), the image, and the memory and
    logs of the containers on this node."""

    def __init__(self, cfg: FleetConfig, client: Any):
        self.cfg = cfg
        self.client = client

    def artifact(self) -> str:
        """The image's ID: a rebuilt `ocr-fleet:latest` has a new one, so its containers show as stale."""
        try:
            return str(self.client.images.get(self.cfg.image).id)
        except Exception:  # noqa: BLE001 - a missing image is preflight's to report
            return ""

    def preflight(self) -> None:
        self.ensure_image()

    def ensure_image(self) -> None:
        """Fail with the fix in the message rather than build for minutes inside a scale command."""
        import docker

        try:
            self.client.images.get(self.cfg.image)
        except docker.errors.ImageNotFound:
            raise BackendUnavailable(
                f"image {self.cfg.image} not found: build it with `make image` (scripts/build-image.sh)"
            ) from None

    def _container(self, info: InstanceInfo) -> Any | None:
        import docker

        try:
            return self.client.containers.get(info.container_id or f"ocr-fleet-{info.id}")
        except docker.errors.NotFound:
            return None

    def _pids(self, container: Any) -> list[int]:
        top = container.top(ps_args="-eo pid")
        return [int(row[0]) for row in top.get("Processes") or []]

    def rss_bytes(self, info: InstanceInfo) -> int | None:
        container = self._container(info)
        if container is None:
            return None
        import docker

        try:
            pids = self._pids(container)
        except docker.errors.APIError:  # `top` fails on an exiting container; use the cgroup figure
            pids = []
        total = 0
        for pid in pids:
            try:
                total += psutil.Process(pid).memory_info().rss
            except psutil.Error:
                continue
        if total:
            return total
        stats = container.stats(stream=False)
        usage = stats.get("memory_stats", {}).get("usage")
        return int(usage) if usage is not None else None

    def log_readers(self) -> dict[str, LogReader]:
        """The running containers' logs (a stopped container is removed, and its log with it)."""
        readers: dict[str, LogReader] = {}
        for info in self.instances():
            container = self._container(info)
            if container is not None:
                readers[info.id] = ContainerLogReader(container)
        return readers


class DockerBackend(DockerRuntime, StartsOneByOne):
    """Containers labelled ocr-fleet=1 with host networking, started one by one."""

    name = "docker"

    def _filters(self) -> dict[str, list[str]]:
        return {"label": [f"{LABEL}=1", f"{LABEL}.fleet={fleet_label(self.cfg)}"]}

    def _info(self, container: Any) -> InstanceInfo:
        labels = container.labels
        return InstanceInfo(
            id=labels.get(f"{LABEL}.instance", container.name),
            backend=self.name,
            host=self.cfg.gateway_host,  # host networking: the container binds OCR_HOST
            port=int(labels.get(f"{LABEL}.port", "0")),
            container_id=container.id,
            started_at=parse_docker_time(container.attrs.get("State", {}).get("StartedAt", "")),
            config_hash=labels.get(f"{LABEL}.config-hash", ""),
        )

    def instances(self) -> list[InstanceInfo]:
        found = []
        for container in self.client.containers.list(all=True, filters=self._filters()):
            if container.status in STOPPED_STATES:
                container.remove(force=True)  # a dead leftover, like a stale pid file
                continue
            found.append(self._info(container))
        return sorted(found, key=lambda i: i.port)

    def start(self, spec: InstanceSpec) -> InstanceInfo:
        import docker

        self.ensure_image()
        name = f"ocr-fleet-{spec.id}"
        try:
            old = self.client.containers.get(name)
        except docker.errors.NotFound:
            old = None
        if old is not None:
            if old.status not in STOPPED_STATES:
                raise InstanceFailed(f"container {name} already exists and is {old.status}")
            old.remove(force=True)
        labels = {
            LABEL: "1",
            f"{LABEL}.fleet": fleet_label(self.cfg),
            f"{LABEL}.instance": spec.id,
            f"{LABEL}.port": str(spec.port),
            f"{LABEL}.config-hash": spec.config_hash,
        }
        container = self.client.containers.run(
            self.cfg.image,
            detach=True,
            name=name,
            network_mode="host",
            environment=dict(spec.env),
            labels=labels,
        )
        container.reload()
        return self._info(container)

    def stop(self, info: InstanceInfo, grace: float) -> None:
        import docker

        container = self._container(info)
        if container is None:
            return
        try:
            container.stop(timeout=max(1, round(grace)))  # SIGTERM, SIGKILL after grace
            container.remove(force=True)
        except docker.errors.NotFound:
            pass  # removed concurrently: the goal is reached

    def is_alive(self, info: InstanceInfo) -> bool:
        container = self._container(info)
        if container is None:
            return False
        return bool(container.status == "running")


class ContainerLogReader:
    """A container's output read incrementally: Docker's own timestamps say where the last call stopped."""

    def __init__(self, container: Any) -> None:
        self.container = container
        self.last: float | None = None

    def read_new(self) -> list[str]:
        import docker

        kwargs: dict[str, Any] = {"timestamps": True}
        if self.last is not None:
            kwargs["since"] = self.last
        try:
            raw = self.container.logs(**kwargs).decode(errors="replace")
        except docker.errors.NotFound:
            return []
        lines = []
        for row in raw.splitlines():
            stamp, _, text = row.partition(" ")
            ts = parse_docker_time(stamp)
            if self.last is not None and ts <= self.last:
                continue  # `since` is inclusive: these were returned last time
            self.last = ts
            lines.append(text)
        return lines
