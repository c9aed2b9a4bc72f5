"""Scaling as a pure plan: desired count and what runs now in, start/stop/keep actions out.

Like docker compose's convergence plan: instances whose config hash is stale are
replaced, extra ones are removed newest-port-first, and missing ones get the next
free ports. Nothing here touches a process, so every case is unit-testable.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

from fleetctl.backends.types import InstanceInfo, Plan, Start, Stop, instance_id
from fleetctl.errors import FleetError


class PlanError(FleetError):
    """The request cannot be planned (negative count, no ports left)."""








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
