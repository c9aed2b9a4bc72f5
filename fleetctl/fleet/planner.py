"""Scaling as a pure plan: desired count and what runs now in, start/stop/keep actions out.

Like docker compose's convergence plan: instances whose config hash is stale are
replaced, extra ones are removed newest-port-first, and missing ones get the next
free ports. Nothing here touches a process, so every case is unit-testable.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from fleetctl.backends.base import FleetError, InstanceInfo, instance_id


class PlanError(FleetError):
    """The request cannot be planned (negative count, no ports left)."""


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


def _seniority(info: InstanceInfo) -> tuple[int, float, str]:
    """Lowest port, then oldest, survives longest; the sort key is total so plans are deterministic."""
    return (info.port, info.started_at, info.id)


def plan(
    desired: int,
    actual: Sequence[InstanceInfo],
    cfg_hash: str,
    *,
    base_port: int = 8001,
    busy_ports: Iterable[int] = (),
    make_id: Callable[[int], str] = instance_id,
) -> Plan:
    """Compute the convergence plan; `busy_ports` are ports something else already holds."""
    if desired < 0:
        raise PlanError(f"desired instance count must be at least 0, got {desired}")
    fresh = sorted((i for i in actual if i.config_hash == cfg_hash), key=_seniority)
    stale = sorted((i for i in actual if i.config_hash != cfg_hash), key=_seniority)
    keep = fresh[:desired]
    # Highest ports / newest go first, so the survivors are the long-lived low ports.
    extra = sorted(fresh[desired:], key=_seniority, reverse=True)
    stops = [Stop(i, "scale down") for i in extra] + [Stop(i, "stale config") for i in stale]

    missing = desired - len(keep)
    taken = {i.port for i in actual} | set(busy_ports)
    taken_ids = {i.id for i in actual}
    starts: list[Start] = []
    port = base_port
    while len(starts) < missing:
        if port > 65535:
            raise PlanError(f"no free port left above {base_port} for {missing} new instance(s)")
        if port not in taken and make_id(port) not in taken_ids:
            reason = "replace stale config" if len(starts) < len(stale) else "scale up"
            starts.append(Start(make_id(port), port, reason))
        port += 1
    return Plan(desired=desired, start=tuple(starts), stop=tuple(stops), keep=tuple(keep), config_hash=cfg_hash)
