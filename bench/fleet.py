"""Fleet control through the `fleetctl` CLI, as a user would drive it, and a session that undoes itself.

If the bench found the fleet down it brings it up and takes it down at the end; if the user's fleet
was already up (`make up`) it only rescales it and restores the user's instance count afterwards.
"""
from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import procs

CONVERGE_TIMEOUT_S = 300


class FleetCtlError(RuntimeError):
    """A fleetctl command failed; the message carries its stderr tail."""


@dataclass(frozen=True)
class FleetStatus:
    """The parts of `fleetctl status --json` the bench relies on."""

    instances: list[dict[str, Any]]
    gateway: str | None
    gateway_running: bool
    services: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str) -> FleetStatus:
        data = json.loads(text)
        services = data.get("services") or {}
        nginx = services.get("nginx") or {}
        return cls(instances=list(data.get("instances") or []), gateway=data.get("gateway"),
                   gateway_running=bool(nginx.get("running", bool(data.get("instances")))),
                   services=services)

    def service_pid(self, name: str) -> int | None:
        pid = (self.services.get(name) or {}).get("pid")
        return int(pid) if isinstance(pid, int) and pid > 0 else None

    def gateway_port(self) -> int | None:
        try:
            return int((self.gateway or "").rsplit(":", 1)[1].split("/")[0])
        except (IndexError, ValueError):
            return None

    @property
    def ready(self) -> list[dict[str, Any]]:
        return [i for i in self.instances if i.get("healthy") and i.get("in_upstream")]

    def ports(self) -> list[int]:
        return [int(i["port"]) for i in self.instances if i.get("port")]

    def rss(self) -> list[dict[str, Any]]:
        return [{"id": i.get("id"), "rss_mb": i.get("rss_mb")} for i in self.instances]


def default_command() -> list[str]:
    """fleetctl from the bench's own environment, whatever PATH says."""
    return [sys.executable, "-m", "fleetctl"]


@dataclass
class FleetCtl:
    """Runs fleetctl as a subprocess; every call is logged to the bench's work dir."""

    log: Path
    command: Sequence[str] = field(default_factory=default_command)
    env: dict[str, str] | None = None

    def _run(self, *args: str, timeout: float = CONVERGE_TIMEOUT_S + 60, check: bool = True) -> str:
        cmd = [*self.command, *args]
        started = time.monotonic()
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=self.env)
        except subprocess.TimeoutExpired as exc:
            raise FleetCtlError(f"fleetctl {' '.join(args)} did not finish in {timeout:.0f}s") from exc
        except OSError as exc:
            raise FleetCtlError(f"cannot run fleetctl: {exc}") from exc
        with open(self.log, "a", encoding="utf-8") as out:
            out.write(f"$ fleetctl {' '.join(args)}  # exit {proc.returncode}, "
                      f"{time.monotonic() - started:.1f}s\n{proc.stdout}{proc.stderr}\n")
        if check and proc.returncode != 0:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
            raise FleetCtlError(f"fleetctl {' '.join(args)} failed ({proc.returncode}): {' | '.join(tail)}")
        return proc.stdout

    def status(self) -> FleetStatus | None:
        """None when fleetctl cannot report (nothing running yet)."""
        try:
            out = self._run("status", "--json", timeout=60, check=True)
            return FleetStatus.parse(out)
        except (FleetCtlError, ValueError):
            return None

    def up(self, n: int) -> None:
        self._run("up", "-n", str(n), "--timeout", str(CONVERGE_TIMEOUT_S))

    def scale(self, n: int) -> None:
        self._run("scale", str(n), "--timeout", str(CONVERGE_TIMEOUT_S))

    def down(self) -> None:
        self._run("down", timeout=180)


@dataclass
class FleetSession:
    """Scale the fleet for the bench and put it back as it was, also on Ctrl-C or SIGTERM."""

    ctl: FleetCtl
    started_fleet: bool = False
    previous: int | None = None
    entered: bool = False
    note: str = ""

    def __enter__(self) -> FleetSession:
        status = self.ctl.status()
        if status is not None and status.gateway_running:
            self.previous = len(status.instances)
        self.entered = True
        return self

    def scale_to(self, n: int) -> FleetStatus:
        """Converge to n instances and check, through status, that all n are healthy and routed."""
        if self.previous is None and not self.started_fleet:
            self.started_fleet = True  # set first: an interrupted `up` still gets a `down`
            self.ctl.up(n)
        else:
            self.ctl.scale(n)
        deadline = time.monotonic() + 60
        while True:
            status = self.ctl.status()
            if status is not None and len(status.instances) == n and len(status.ready) == n:
                return status
            if time.monotonic() > deadline:
                seen = "no status" if status is None else f"{len(status.ready)}/{len(status.instances)} ready"
                raise FleetCtlError(f"fleet did not settle at {n} instances ({seen})")
            time.sleep(1)

    def restore(self) -> str:
        """Undo what the bench did; returns what was done, for the report."""
        if self.started_fleet:
            self.ctl.down()
            self.started_fleet = False
            return "stopped the fleet the bench had started"
        if self.previous is not None:
            status = self.ctl.status()
            if status is None or len(status.instances) != self.previous:
                self.ctl.scale(self.previous)
            return f"restored the fleet to {self.previous} instance(s)"
        return "nothing to restore"

    def __exit__(self, *exc: object) -> None:
        with procs.shielded():
            self.note = self.restore()
