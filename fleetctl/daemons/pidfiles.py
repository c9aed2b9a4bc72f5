"""Our own daemons on this host, found and stopped by name: pid and log files, process signatures.

Each daemon (the Consul agent, Redis, nginx, the sync loop, the autoscaler) is recognised by its pid
file checked against the live process (command line, and the environment for our Python loops), so a
stale pid file never passes for a running daemon. Starting them is the job of services.py and
autoscale_daemon.py.
"""
from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import psutil

from fleetctl import procs
from fleetctl.config import FleetConfig, format_value
from fleetctl.gateway import nginx as gateway


class ServiceError(procs.ProcessError):
    """A managed service did not start or become ready; the message carries its log tail.

    A ProcessError, so the CLI's single error translation already turns it into exit code 1.
    """


@dataclass
class ServiceState:
    """What `fleetctl status` shows for one service."""

    name: str
    managed: bool
    running: bool
    pid: int | None = None
    address: str = ""
    log: str | None = None
    started: bool = False  # started by this call (ensure_services); False when it was already up
    detail: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.update(data.pop("detail"))
        return data


def pid_file(cfg: FleetConfig, name: str) -> Path:
    return gateway.pid_path(cfg) if name == "nginx" else cfg.run_dir / f"{name}.pid"


def log_file(cfg: FleetConfig, name: str) -> Path:
    return gateway.error_log_path(cfg) if name == "nginx" else cfg.log_dir / f"{name}.log"


def log_files(cfg: FleetConfig) -> dict[str, Path]:
    """The services' logs by the source name `fleetctl logs` shows: the gateway's JSON access log,
    then nginx's error log, Consul, Redis and the sync loop (external services log elsewhere)."""
    files = {"gateway": gateway.access_log_path(cfg), "nginx": gateway.error_log_path(cfg)}
    if cfg.managed_consul:
        files["consul"] = log_file(cfg, "consul")
    if cfg.managed_redis:
        files["redis"] = log_file(cfg, "redis")
    files["sync"] = log_file(cfg, "sync")
    files["autoscale"] = log_file(cfg, "autoscale")
    return files


def signature(cfg: FleetConfig, name: str) -> tuple[tuple[str, ...], dict[str, str] | None]:
    """What the command line (and environment) of our own copy of `name` must contain."""
    if name == "consul":
        return ("consul", "agent", str(cfg.home / "consul")), None
    if name == "redis":
        return ("redis-server", str(cfg.home / "redis")), None
    if name == "nginx":
        return ("nginx", str(gateway.nginx_conf_path(cfg))), None
    if name == "autoscale":
        return ("fleetctl", "autoscale", "--min"), {"FLEET_HOME": str(cfg.home)}
    return ("fleetctl", "sync"), {"FLEET_HOME": str(cfg.home)}


def live(cfg: FleetConfig, name: str) -> int | None:
    """The pid of our running `name`, or None (a stale pid file included)."""
    parts, env = signature(cfg, name)
    return procs.live_pid(pid_file(cfg, name), parts, env)


def sweep(cfg: FleetConfig, name: str) -> list[int]:
    """Our processes of `name` even when their pid file is gone (so stop leaves nothing behind)."""
    parts, env = signature(cfg, name)
    found = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        joined = " ".join(proc.info["cmdline"] or ())
        if all(p in joined for p in parts) and procs.process_matches(proc.info["pid"], parts, env):
            if proc.info["pid"] != os.getpid():
                found.append(int(proc.info["pid"]))
    return found


def stop(cfg: FleetConfig, name: str, *, sig: int = signal.SIGTERM, grace: float = 10.0) -> bool:
    """Stop every copy of our `name` (pid file or not) and forget its pid file; True if one ran."""
    pids = set(sweep(cfg, name))
    pid = live(cfg, name)
    if pid is not None:
        pids.add(pid)
    for each in sorted(pids):
        procs.stop_process(each, sig=sig, grace=grace)
    pid_file(cfg, name).unlink(missing_ok=True)
    return bool(pids)


def lock(cfg: FleetConfig) -> contextlib.AbstractContextManager[None]:
    """Serialise concurrent `up`/`down` so two callers never start the same daemon twice."""
    return procs.file_lock(cfg.run_dir / "services.lock")


def fleet_env(cfg: FleetConfig) -> dict[str, str]:
    """The environment that makes `config.load()` in a child rebuild this same config."""
    env = dict(os.environ)
    env["FLEET_HOME"] = str(cfg.home)
    for name, value, _instance in cfg.settings():
        if value is None or value == "":
            env.pop(name, None)
        else:
            env[name] = format_value(value)
    return env


def wait_alive_and_ready(
    cfg: FleetConfig, name: str, pid: int, ready: Callable[[], bool], timeout: float
) -> None:
    """Poll readiness, failing fast (with the log) if the process dies first."""
    parts, env = signature(cfg, name)

    def check() -> bool:
        if not procs.process_matches(pid, parts, env):
            if procs.exec_pending(pid):  # spawned a moment ago: its command line is not there yet
                return False
            raise ServiceError(f"{name} exited during start-up:\n{procs.log_tail(log_file(cfg, name))}")
        return bool(ready())

    try:
        procs.wait_for(check, timeout=timeout, what=f"{name} to become ready", fatal=(ServiceError,))
    except procs.ProcessError as exc:
        procs.stop_process(pid, grace=5)
        tail = procs.log_tail(log_file(cfg, name))
        raise ServiceError(f"{exc}; last lines of {log_file(cfg, name)}:\n{tail}") from None
