"""What `fleetctl status` shows: per instance runtime + Consul + upstream + /metrics, and the services."""
from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any

from fleetctl.backends.base import Backend
from fleetctl.backends.types import InstanceInfo
from fleetctl.cluster import agent as cluster
from fleetctl.config import FleetConfig, format_value
from fleetctl.fleet import metrics_scrape

MAINTENANCE_CHECK = "_service_maintenance:"


def health_by_id(consul: Any, service: str, node: str | None = None) -> dict[str, str]:
    """Service id -> passing / warning / critical / maintenance, from the Consul health endpoint.

    An unreachable agent yields {} so callers show 'unknown' or keep polling instead of crashing.
    `node` keeps one host's entries: on several hosts, every host has an instance called ocr-8001.
    """
    try:
        _, entries = consul.health.service(service)
    except Exception:  # noqa: BLE001 - connection refused, timeouts, 5xx: all mean "no answer"
        return {}
    result: dict[str, str] = {}
    for entry in entries or []:
        if node is not None and (entry.get("Node") or {}).get("Node") != node:
            continue
        sid = entry.get("Service", {}).get("ID", "")
        checks = entry.get("Checks") or []
        states = [c.get("Status", "critical") for c in checks]
        if any(str(c.get("CheckID", "")).startswith(MAINTENANCE_CHECK) for c in checks):
            result[sid] = "maintenance"
        elif "critical" in states:
            result[sid] = "critical"
        elif "warning" in states:
            result[sid] = "warning"
        else:
            result[sid] = "passing"
    return result


@dataclass(frozen=True)
class InstanceRow:
    """One instance as `status --json` prints it (field names are the documented contract)."""

    id: str
    backend: str
    address: str
    port: int
    healthy: bool
    health: str
    in_upstream: bool
    rss_mb: float | None
    uptime_s: float
    requests: int | None
    cache_hit_ratio: float | None
    node: str | None = None  # the machine, where the runtime places instances (Swarm)


@dataclass(frozen=True)
class FleetStatus:
    instances: list[InstanceRow]
    services: dict[str, dict[str, Any]]
    gateway: str
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "instances": [asdict(r) for r in self.instances],
            "services": self.services,
            "gateway": self.gateway,
            "warnings": self.warnings,
        }


def rss_warnings(rows: Sequence[InstanceRow], limit_mb: float) -> list[str]:
    """Instances using more memory than FLEET_RSS_WARN_MB (master and workers together); 0 turns it off."""
    if limit_mb <= 0:
        return []
    return [f"{r.id}: RSS {r.rss_mb:.0f} MiB is above FLEET_RSS_WARN_MB={format_value(limit_mb)}"
            for r in rows if r.rss_mb is not None and r.rss_mb > limit_mb]


def _row(backend: Backend, info: InstanceInfo, health: Mapping[str, str], members: set[str],
         scrape: Callable[[str], metrics_scrape.InstanceMetrics | None], now: float) -> InstanceRow:
    rss = backend.rss_bytes(info)
    metrics = scrape(info.address)
    state = health.get(info.id, "absent")
    ratio = metrics.cache_hit_ratio if metrics else None
    return InstanceRow(
        id=info.id,
        backend=info.backend,
        address=info.address,
        port=info.port,
        healthy=state == "passing",
        health=state,
        in_upstream=info.address in members,
        rss_mb=None if rss is None else round(rss / 2**20, 1),
        uptime_s=round(info.uptime(now), 1),
        requests=metrics.requests if metrics else None,
        cache_hit_ratio=None if ratio is None else round(ratio, 3),
        node=info.node,
    )


def collect(
    cfg: FleetConfig,
    backends: Sequence[Backend],
    consul: Any,
    *,
    members: Callable[[FleetConfig], set[str]],
    services: Callable[[FleetConfig], Mapping[str, Any]],
    scrape: Callable[[str], metrics_scrape.InstanceMetrics | None] = metrics_scrape.fetch,
) -> FleetStatus:
    """Ask every source once (runtime, Consul, rendered upstream, each /metrics in parallel)."""
    pairs = [(b, info) for b in backends for info in b.instances()]
    health = health_by_id(consul, cfg.service_name, cluster.node_name(cfg))
    upstream = members(cfg)
    now = time.time()
    with ThreadPoolExecutor(max_workers=max(1, min(8, len(pairs)))) as pool:
        rows = list(pool.map(lambda pair: _row(pair[0], pair[1], health, upstream, scrape, now), pairs))
    svc = {name: (s.to_dict() if hasattr(s, "to_dict") else dict(s)) for name, s in services(cfg).items()}
    rows = sorted(rows, key=lambda r: r.port)
    return FleetStatus(instances=rows, services=svc, gateway=cfg.gateway_url,
                       warnings=rss_warnings(rows, cfg.rss_warn_mb))


def _fmt(value: object, spec: str = "") -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return format(value, spec)


def _uptime(seconds: float) -> str:
    s = int(seconds)
    if s < 120:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{(s % 3600) // 60:02d}m"


SUMMARY_KEYS = ("pid", "address", "security", "reloads", "last_error")


def _service_summary(state: Mapping[str, Any]) -> str:
    """The few service facts worth a glance; `status --json` has all of them (log paths, ...)."""
    parts = [] if state.get("managed", True) else ["external"]
    parts += [f"{k}={state[k]}" for k in SUMMARY_KEYS if state.get(k) not in (None, "", [], {})]
    return " ".join(parts)


def _service_status(state: Mapping[str, Any]) -> str:
    for key in ("status", "state"):
        if isinstance(state.get(key), str):
            return str(state[key])
    if "running" in state:
        return "running" if state["running"] else "stopped"
    return "?"


def render_table(status: FleetStatus) -> str:
    """Plain aligned columns; one row per instance, then one per managed service."""
    head = ("ID", "BACKEND", "NODE", "ADDRESS", "CONSUL", "UPSTREAM", "RSS MiB", "UPTIME", "REQUESTS", "CACHE HIT")
    rows = [head]
    for r in status.instances:
        ratio = None if r.cache_hit_ratio is None else f"{r.cache_hit_ratio:.0%}"
        rows.append((r.id, r.backend, r.node or "-", r.address, r.health, _fmt(r.in_upstream), _fmt(r.rss_mb, ".1f"),
                     _uptime(r.uptime_s), _fmt(r.requests), _fmt(ratio)))
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows]
    if not status.instances:
        lines.append("(no instances; `fleetctl up` or `fleetctl scale N`)")
    lines.append("")
    svc_rows = [("SERVICE", "STATUS", "DETAILS")]
    svc_rows += [(name, _service_status(s), _service_summary(s)) for name, s in status.services.items()]
    sw = [max(len(row[i]) for row in svc_rows) for i in range(3)]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, sw, strict=True)).rstrip() for row in svc_rows]
    lines.append(f"\ngateway: {status.gateway}")
    auto = status.services.get("autoscale")
    if auto:
        lines += autoscale_lines(auto)
    return "\n".join(lines)


def autoscale_lines(auto: Mapping[str, Any]) -> list[str]:
    """The autoscaler's target and its last decision (and last change, which may be older)."""
    state = "" if auto.get("running") else " (not running)"
    lines = [f"autoscale{state}: target {auto.get('target')} instance(s) within {auto.get('min')}..{auto.get('max')}, "
             f"load {_fmt(auto.get('load'))} job(s), CPU {_fmt(auto.get('cpu'))} core(s)",
             f"  last decision: {auto.get('last_decision')}"]
    if auto.get("last_change"):
        when = time.strftime("%H:%M:%S", time.localtime(float(auto.get("last_change_time") or 0)))
        error = f" (failed: {auto['last_change_error']})" if auto.get("last_change_error") else ""
        lines.append(f"  last change at {when}: {auto['last_change']}{error}")
    return lines
