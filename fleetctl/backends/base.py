"""The one small interface every instance backend implements, and the values it trades in.

Either the runtime places instances itself (Swarm: it implements `schedule`), or it runs what it is
told one instance at a time (`StartsOneByOne`: host processes, containers) and fleetctl places them.
"""
from __future__ import annotations

import abc
import collections
from collections.abc import Callable, Sequence

from fleetctl.backends.types import InstanceInfo, InstanceSpec, Plan, Scheduled
from fleetctl.config import FleetConfig
from fleetctl.logs import LogReader


class Backend(abc.ABC):
    """Runs instances somewhere (host processes, containers); fleet logic only talks to this."""

    name: str = "abstract"
    cfg: FleetConfig

    @abc.abstractmethod
    def instances(self) -> list[InstanceInfo]:
        """Live instances of this fleet, found by asking the runtime; cleans up dead leftovers."""

    @abc.abstractmethod
    def schedule(self, p: Plan, specs: Sequence[InstanceSpec], report: Callable[[str], None]) -> Scheduled:
        """Start what `p` starts (`specs`, one per Start) and return at once (readiness is the caller's
        business), saying which instances to wait for and who stops the plan's removals."""

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

    def plan(self, desired: int, actual: Sequence[InstanceInfo], cfg_hash: str, busy: set[int]) -> Plan | None:
        """A runtime that places instances itself predicts what it will do; None: fleetctl's own planner."""
        return None

    def remove_all(self, grace: float, report: Callable[[str], None]) -> int | None:
        """`down` in one step for a runtime that owns its instances as a group; None: one by one."""
        return None

    def preflight(self) -> None:  # noqa: B027 - optional hook, most backends need nothing
        """Fail before anything starts if the backend cannot start instances (e.g. image missing)."""

    def stop_orphans(self, grace: float, report: Callable[[str], None]) -> int:
        """Stop instances of this fleet that `instances()` cannot see any more (lost state); returns how many.

        Most runtimes find everything by label, so by default there is nothing to do.
        """
        return 0

    def log_tail(self, info: InstanceInfo, lines: int = 20) -> str:
        """Last lines of the instance's log, for error messages."""
        reader = self.log_readers().get(info.id)
        return "\n".join(collections.deque(reader.read_new(), maxlen=lines)) if reader is not None else "(no log)"


class StartsOneByOne(Backend):
    """A runtime that runs what it is told (host processes, containers): fleetctl places every instance,
    and drains and stops the plan's removals itself, instance by instance."""

    @abc.abstractmethod
    def start(self, spec: InstanceSpec) -> InstanceInfo:
        """Start one instance and return at once (readiness is the caller's business)."""

    def schedule(self, p: Plan, specs: Sequence[InstanceSpec], report: Callable[[str], None]) -> Scheduled:
        started = []
        for spec in specs:
            info = self.start(spec)
            report(f"{info.id}: started on {info.address} ({info.where})")
            started.append(info)
        return Scheduled(started=started, drain=[s.instance for s in p.stop])
