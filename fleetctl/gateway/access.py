"""Render the gateway's clients.conf: which key hash is which client, and each client's rate limit.

nginx's limit_req zones have fixed rates, so there is one zone per distinct rate; a map per zone
gives the client's name as the zone's key for the clients with that rate and "" (not counted) for
everyone else. With auth off, one zone keyed on the client's address applies FLEET_RATE to /api/.
The sync loop re-renders this file from Consul's KV (keys.py) and reloads nginx when it changes.
"""
from __future__ import annotations

import logging
import math
import re
import threading
from pathlib import Path
from typing import Any

from fleetctl.cluster import consul_api
from fleetctl.config import FleetConfig
from fleetctl.gateway import keys
from fleetctl.gateway import nginx as gateway
from fleetctl.gateway.watch import Watch, duration, run_watch

log = logging.getLogger(__name__)
HEADER = "# Rendered by the fleetctl sync loop from the API keys in Consul; overwritten on every change.\n"


def clients_conf_path(cfg: FleetConfig) -> Path:
    return cfg.nginx_dir / "clients.conf"


def zone_name(rate: str) -> str:
    """"10r/s" -> "fleet_10r_s": a valid, stable zone name per rate."""
    return "fleet_" + rate.replace("/", "_")


def retry_after(rate: str) -> int:
    """Whole seconds until one more request fits the rate (what Retry-After says)."""
    count, unit = re.fullmatch(r"(\d+)r/([sm])", rate).groups()  # type: ignore[union-attr]
    period = 1 if unit == "s" else 60
    return max(1, math.ceil(period / int(count)))


MISSING = (40170, "an API key is required: send Authorization: Bearer KEY or X-API-Key: KEY (FLEET_AUTH is on)")
INVALID = (40171, "the API key is not valid: unknown or revoked (fleetctl keys list)")


def _auth_messages(cfg: FleetConfig) -> list[str]:
    """$fleet_auth_code/$fleet_auth_msg for nginx.conf's JSON 401: no key at all, or a wrong one."""
    source = "$fleet_key_hash" if cfg.auth else "$uri"
    lines = []
    for var, pick in (("$fleet_auth_code", 0), ("$fleet_auth_msg", 1)):
        lines += [f"map {source} {var} {{", f'    "" "{MISSING[pick]}";', f'    default "{INVALID[pick]}";', "}"]
    return lines


def _limit(var: str, rate: str, burst: int, size: str) -> list[str]:
    zone = zone_name(rate)
    return [f"limit_req_zone {var} zone={zone}:{size} rate={rate};",
            f"limit_req zone={zone}{f' burst={burst}' if burst else ''} nodelay;"]  # nginx refuses burst=0


def render_clients(cfg: FleetConfig, api_keys: list[keys.ApiKey]) -> str:
    """clients.conf for these keys (http level): deterministic, so equal inputs render identically."""
    lines = [HEADER.rstrip("\n"), *_auth_messages(cfg)]
    if not cfg.auth:
        lines.append("# FLEET_AUTH is off: no keys; FLEET_RATE limits each client address on /api/.")
        lines += ["map $uri $fleet_client {", '    default "";', "}"]
        lines += ["map $uri $fleet_retry_after {", f"    default {retry_after(cfg.rate) if cfg.rate else 1};", "}"]
        if cfg.rate:
            lines += ["map $uri $fleet_rate_ip {", "    ~^/api/ $binary_remote_addr;", '    default "";', "}"]
            lines += _limit("$fleet_rate_ip", cfg.rate, cfg.rate_burst, "10m")
        return "\n".join(lines) + "\n"
    lines += ["map $fleet_key_hash $fleet_client {", '    default "";']
    lines += [f'    "{k.hash}" "{k.name}";' for k in api_keys]
    lines.append("}")
    by_rate: dict[str, list[str]] = {}
    for k in api_keys:
        rate = k.rate or cfg.rate
        if rate:
            by_rate.setdefault(rate, []).append(k.name)
    lines += ["map $fleet_client $fleet_retry_after {", "    default 1;"]
    lines += [f'    "{name}" {retry_after(rate)};' for rate, names in sorted(by_rate.items()) for name in names]
    lines.append("}")
    for rate, names in sorted(by_rate.items()):
        var = "$" + zone_name(rate)
        lines += [f"map $fleet_client {var} {{", '    default "";']
        lines += [f'    "{name}" $fleet_client;' for name in names]
        lines.append("}")
        lines += _limit(var, rate, cfg.rate_burst, "1m")
    return "\n".join(lines) + "\n"


def apply_clients(cfg: FleetConfig, api_keys: list[keys.ApiKey], reloader: gateway.Reloader) -> bool:
    """Render, compare, write, validate, reload; True if the file changed (the last good one stays on failure)."""
    if not gateway.install_if_changed(clients_conf_path(cfg), render_clients(cfg, api_keys), reloader):
        return False
    reloader.reload()
    return True


def current_keys(cfg: FleetConfig, client: Any) -> list[keys.ApiKey]:
    """The stored keys now, or none while Consul cannot answer (every key is refused until it can)."""
    if not cfg.auth:
        return []
    try:
        return keys.fetch(client, cfg)[1]
    except consul_api.CONSUL_ERRORS as exc:
        log.warning("could not read API keys from Consul (%s): refusing every key until it answers", exc)
        return []


class KeysWatch(Watch[list[keys.ApiKey]]):
    """The API keys in Consul's KV -> clients.conf: a revoked key is gone from nginx one reload later."""

    what = "clients.conf"

    def __init__(self, cfg: FleetConfig, client: Any, reloader: gateway.Reloader) -> None:
        self.cfg = cfg
        self.client = client
        self.reloader = reloader

    def query(self, index: int | None, wait: float) -> tuple[int, list[keys.ApiKey]]:
        return keys.fetch(self.client, self.cfg, index, duration(wait))

    def apply(self, value: list[keys.ApiKey]) -> None:
        if apply_clients(self.cfg, value, self.reloader):
            log.info("API keys: %d in clients.conf, nginx reloaded", len(value))


def run_keys_loop(cfg: FleetConfig, client: Any, stop_event: threading.Event, guard: threading.Lock,
                  reloader: gateway.Reloader, *, query_wait: float = 5.0, backoff_cap: float = 5.0) -> None:
    """Watch the keys in Consul's KV (blocking queries) and keep clients.conf and nginx in step."""
    run_watch(KeysWatch(cfg, client, reloader), stop_event, guard, query_wait=query_wait, backoff_cap=backoff_cap)
