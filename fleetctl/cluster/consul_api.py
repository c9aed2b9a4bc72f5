"""Thin helpers over py-consul: build a client from the fleet config (with its ACL token), ask for the leader."""
from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import consul
import requests
from consul.callback import CB

from fleetctl import procs
from fleetctl.config import ConfigError, FleetConfig

# What a request to an unreachable or restarting agent raises.
CONSUL_ERRORS: tuple[type[Exception], ...] = (requests.RequestException, consul.ConsulException, ValueError)


def split_address(address: str) -> tuple[str, str, int]:
    """'host:port' or 'http(s)://host:port' -> (scheme, host, port)."""
    parts = urlsplit(address if "//" in address else f"//{address}")
    scheme = parts.scheme or "http"
    host = parts.hostname or "127.0.0.1"
    port = parts.port or (443 if scheme == "https" else 8500)
    return scheme, host, port


def token_path(cfg: FleetConfig) -> Path:
    """The fleet's ACL management token on this host (fleetctl/cluster/acl.py makes or saves it), mode 600."""
    return cfg.home / "consul.token"


def fleet_token(cfg: FleetConfig) -> str:
    """The token fleetctl's requests carry: FLEET_CONSUL_TOKEN, else the saved one, else none (no ACLs)."""
    return cfg.consul_token or procs.read_secret(token_path(cfg))


def kv_prefix(cfg: FleetConfig) -> str:
    """The API keys' folder in Consul's KV: one per fleet (service name), so two fleets on one Consul
    keep their own keys (the gateway reads it, its ACL policy allows exactly that)."""
    return f"ocr-fleet/{cfg.service_name}/keys/"


def check_token(value: str, setting: str = "FLEET_CONSUL_TOKEN") -> str:
    """A token as Consul writes one, a UUID, in lower case (the value itself is never echoed)."""
    try:
        parsed = uuid.UUID(value.strip())
    except ValueError:
        raise ConfigError(f"{setting} is not a Consul token (a UUID like the content of FLEET_HOME/consul.token "
                          "on the first host)") from None
    if str(parsed) != value.strip().lower():
        raise ConfigError(f"{setting} is not a Consul token in its usual form (8-4-4-4-12 hex digits)")
    return value.strip().lower()


def client_at(host: str, port: int, token: str, *, scheme: str = "http", timeout: float = 5.0) -> consul.Consul:
    """A client that sends `token` with every request (none when empty). It goes in the session's
    headers: py-consul sends its own `token` with some calls only (not members, agent/self or the raw
    requests here), and lets CONSUL_HTTP_TOKEN in the environment win over it."""
    client = consul.Consul(host=host, port=port, scheme=scheme, connections_timeout=timeout)
    client.token = token or None
    if token:
        client.http.session.headers["X-Consul-Token"] = token
    return client


def client_for(cfg: FleetConfig, *, timeout: float = 5.0) -> consul.Consul:
    """A client for the fleet's agent (managed or external); `timeout` bounds non-blocking calls."""
    scheme, host, port = split_address(cfg.consul_address)
    return client_at(host, port, fleet_token(cfg), scheme=scheme, timeout=timeout)


def passing_entries(client: consul.Consul, service: str, index: int | None, wait: str,
                    *, stale: bool = False) -> tuple[Any, list[dict[str, Any]]]:
    """`/v1/health/service/<service>?passing`, blocking when `index` is given. A `stale` read is
    answered by the agent's own server (or any server) with no leader, as during an election;
    py-consul's health.service cannot ask for one, so this builds the request itself."""
    params: list[tuple[str, Any]] = [("passing", "1")]
    if index:
        params += [("index", index), ("wait", wait)]
    if stale:
        params.append(("stale", "1"))
    return client.http.get(CB.json(index=True), f"/v1/health/service/{service}", params=params)


def leader(client: consul.Consul) -> str:
    """The raft leader's address, or '' while there is none (an agent still starting)."""
    return str(client.status.leader() or "")


def reachable(client: consul.Consul) -> bool:
    """True when the agent answers and has a leader, i.e. it can serve catalog queries."""
    try:
        return bool(leader(client))
    except CONSUL_ERRORS:
        return False


def close(client: consul.Consul) -> None:
    """Release the client's pooled connections (py-consul has no close of its own for them)."""
    client.http.session.close()
