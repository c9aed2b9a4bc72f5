"""Several hosts, one fleet: the Consul agent's command line in cluster mode, and the saved cluster flags.

A host is clustered when it has an address the others reach (FLEET_ADVERTISE). It then runs a real
agent instead of `-dev`: the first host a server that bootstraps alone (`-bootstrap-expect 1`), each
joining host a server while the cluster has fewer than FLEET_CONSUL_SERVERS, else a client. Joining
servers never bootstrap: the leader adds them to raft, so there is never a second cluster.

Gossip and raft are tuned for a LAN (docs/multihost.md): gossip reports a dead node within about a
second, and the sync loop drops its instances from every gateway then (down_nodes), without waiting
for a raft leader to mark its serfHealth critical in the catalog.
"""
from __future__ import annotations

import ipaddress
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import consul
import requests
from consul.callback import CB

from fleetctl import procs
from fleetctl.cluster import consul_api
from fleetctl.config import ConfigError, FleetConfig

T = TypeVar("T")

# Lifeguard's suspicion timeout is suspicion_mult * probe_interval at our sizes: 3 * 200ms.
AGENT_HCL = (
    'performance { raft_multiplier = 1 } '
    'gossip_lan { probe_interval = "200ms" probe_timeout = "100ms" suspicion_mult = 3 } '
    "autopilot { server_stabilization_time = \"3s\" } "  # a joined server votes after 3 s, not 10
    "leave_on_terminate = true rejoin_after_leave = true "  # `down` leaves; `up` rejoins from the snapshot
    "disable_update_check = true"
)
SAVED = ("advertise", "join")
SERF_ALIVE = 1  # serf's member status: 1 alive, 2 leaving, 3 left, 4 failed
MAX_JOIN = 16  # a few hosts to find the cluster by; one -retry-join each


def check_address(value: str, setting: str) -> str:
    """An IPv4 address other hosts can dial: Consul's -advertise takes no names or wildcards, and the
    URLs and nginx `listen` lines built from it have no brackets for IPv6."""
    try:
        addr = ipaddress.IPv4Address(value.strip())
    except ValueError:
        raise ConfigError(f"{setting}={value[:80]!r} is not an IPv4 address") from None
    if addr.is_unspecified or addr.is_multicast:
        raise ConfigError(f"{setting}={value!r} is not an address other hosts can reach")
    return str(addr)


def join_addresses(cfg: FleetConfig) -> list[str]:
    """FLEET_JOIN as a list of checked addresses (comma-separated, blanks and repeats ignored)."""
    parts = [part for part in cfg.join.split(",") if part.strip()]
    if len(parts) > MAX_JOIN:
        raise ConfigError(f"FLEET_JOIN lists {len(parts)} hosts; at most {MAX_JOIN} (any one in the fleet will do)")
    return list(dict.fromkeys(check_address(part, "FLEET_JOIN") for part in parts))


def validate(cfg: FleetConfig) -> FleetConfig:
    """Fail fast, naming the setting, on an address Consul or nginx would reject later."""
    if cfg.consul_token:  # a bad one fails here, naming the setting, not in a request header later
        cfg = cfg.replace(consul_token=consul_api.check_token(cfg.consul_token))
    if cfg.join and not cfg.advertise:
        raise ConfigError("FLEET_JOIN needs FLEET_ADVERTISE (--advertise): this host's own address")
    if not cfg.advertise:
        return cfg
    advertise, join = check_address(cfg.advertise, "FLEET_ADVERTISE"), join_addresses(cfg)
    if advertise in join:
        raise ConfigError(f"FLEET_JOIN={cfg.join!r} names this host itself (FLEET_ADVERTISE)")
    return cfg.replace(advertise=advertise, join=",".join(join))


# --- which role, and the agent's command line ------------------------------------------------

def ask_join_hosts(cfg: FleetConfig, join: list[str], question: Callable[[consul.Consul], T],
                   *, timeout: float = 3.0, token: str = "") -> T | None:
    """The first answer a join host's agent gives to `question` (asked with `token`); None if none answers."""
    for host in join:
        client = consul_api.client_at(host, cfg.consul_port, token, timeout=timeout)
        try:
            return question(client)
        except (requests.RequestException, consul.ConsulException, ValueError, AttributeError):
            continue
        finally:
            client.http.session.close()
    return None


def dev_agent(client: consul.Consul) -> bool:
    """Whether this agent is the single-machine default, `consul agent -dev`: on loopback, its gossip on
    a random port, so no host can join it. One that refuses an anonymous look (ACLs) is a real one."""
    try:
        info = client.agent.self()
    except consul.ACLPermissionDenied:
        return False
    return bool((info.get("DebugConfig") or {}).get("DevMode"))


def check_join(cfg: FleetConfig, join: list[str], data_dir: Path) -> None:
    """Fail before this host's agent starts, when it could only retry the join into its log: every join
    host that answers runs the single-machine default, or none answers a host that never joined (with
    state in `data_dir` it may rejoin from its snapshot, so it is left to try)."""
    token = consul_api.fleet_token(cfg)
    answers = {host: ask_join_hosts(cfg, [host], dev_agent, token=token) for host in join}
    if False in answers.values():
        return  # a real agent answers: -retry-join finds the fleet through it
    dev = [host for host, is_dev in answers.items() if is_dev]
    if dev:
        raise ConfigError(
            f"{dev[0]} runs the single-machine fleet (a Consul -dev agent on 127.0.0.1), which no host can "
            f"join: start that host with `fleetctl up --advertise {dev[0]}` (after `fleetctl down` there), "
            f"then join it")
    if not (data_dir / "serf").is_dir():
        where = ", ".join(f"{host}:{cfg.consul_port}" for host in join)
        raise ConfigError(
            f"no Consul agent answers at {where}: start that host with `fleetctl up --advertise {join[0]}` "
            f"first (a fleet started without --advertise listens on 127.0.0.1 only), then join it")


@dataclass(frozen=True)
class FleetSecret:
    """A secret every host of the fleet shares (the gossip key, the ACL token): the first host makes
    it, a joining host is given it in `setting`, and each keeps it at `path` (mode 600)."""

    setting: str
    path: Path
    what: str  # "its key", for the error: "set FLEET_CONSUL_ENCRYPT to its key"
    has_it: str  # "encrypts its gossip": what the fleet does with it
    lacks_it: str  # "gossips in clear"
    make: Callable[[], str]


def resolve_secret(secret: FleetSecret, given: str, data_dir: Path, join: list[str],
                   fleet_has_it: Callable[[], bool | None],
                   verify: Callable[[str], None] = lambda _value: None) -> str | None:
    """The value this host's agent runs with (saved for the next start), or None to run without.

    A joining host follows the fleet (asked before its agent starts, so a missing setting is a clear
    error, not a join that retries forever); `verify` may refuse a value the fleet does not know.
    An agent that already runs without it keeps doing so: a value made now would cut it off."""
    saved = procs.read_secret(secret.path)
    if join:
        where, has_it = ",".join(join), fleet_has_it()
        if has_it and not (given or saved):
            raise ConfigError(f"the fleet at {where} {secret.has_it}: set {secret.setting} to {secret.what} "
                              f"(the content of FLEET_HOME/{secret.path.name} on the first host)")
        if has_it is False and given:
            raise ConfigError(f"the fleet at {where} {secret.lacks_it}: unset {secret.setting} to join it")
        if has_it is False:
            return None
        if has_it:
            verify(given or saved)
    value = given or saved
    if not value and (join or (data_dir / "serf").is_dir()):
        return None
    value = value or secret.make()
    if value != saved:
        procs.write_secret(secret.path, value + "\n")
    return value


def server_count(cfg: FleetConfig, *, timeout: float = 3.0) -> int | None:
    """Raft peers as the first reachable join host's agent sees them; None if none answers."""
    return ask_join_hosts(cfg, join_addresses(cfg), lambda c: len(c.status.peers() or []), timeout=timeout)


def is_server(cfg: FleetConfig, data_dir: Path) -> bool:
    """A server if it was one (raft state on disk), if it is the first host, or while servers are few."""
    if (data_dir / "raft").is_dir() or not cfg.join:
        return True
    count = server_count(cfg)
    return count is not None and count < cfg.consul_servers


def is_voter(cfg: FleetConfig) -> bool:
    """Whether this host's server votes in raft. Autopilot promotes a joined server only after it
    has been stable for a while (3 s here, checked every 10 s). Until then, losing another server
    can cost the quorum, so `up` waits for the vote."""
    client = consul_api.client_at(cfg.advertise, cfg.consul_port, consul_api.fleet_token(cfg), timeout=2.0)
    try:
        config = client.http.get(CB.json(), "/v1/operator/raft/configuration")
    except (requests.RequestException, consul.ConsulException, ValueError):
        return False
    finally:
        client.http.session.close()
    return any(s.get("Node") == node_name(cfg) and s.get("Voter") for s in (config or {}).get("Servers", []))


def node_name(cfg: FleetConfig) -> str | None:
    """This host's Consul node in cluster mode (None on one machine, where every entry is ours)."""
    return f"fleet-{cfg.advertise}" if cfg.clustered else None


def agent_argv(cfg: FleetConfig, binary: str, data_dir: Path, *, server: bool) -> list[str]:
    """`consul agent` for one clustered host: every listener on its address, fixed well-known ports."""
    addr = cfg.advertise
    argv = [
        binary, "agent", "-data-dir", str(data_dir), "-node", str(node_name(cfg)), "-disable-host-node-id",
        "-bind", addr, "-advertise", addr, "-client", addr,
        "-http-port", str(cfg.consul_port), "-dns-port", "-1", "-grpc-port", "-1",
        "-serf-lan-port", str(cfg.serf_port), "-serf-wan-port", "-1", "-server-port", str(cfg.raft_port),
        "-log-level", "warn", "-hcl", AGENT_HCL,
    ]
    if server:
        argv += ["-server"] + ([] if cfg.join else ["-bootstrap-expect", "1"])
    for host in join_addresses(cfg):
        argv += ["-retry-join", f"{host}:{cfg.serf_port}", "-retry-interval", "2s"]
    return argv


def down_nodes(client: consul.Consul) -> set[str]:
    """Nodes the LAN gossip has seen fail (or leave): known about a second after a host dies, even
    while the servers elect a new leader. Empty when the agent cannot say (the catalog decides)."""
    try:
        members = client.agent.members()
    except (requests.RequestException, consul.ConsulException, ValueError):
        return set()
    return {str(m.get("Name")) for m in members or [] if m.get("Status") != SERF_ALIVE}


# --- the flags `up` was given, for the commands that follow on this host ---------------------

def _saved_path(cfg: FleetConfig) -> Path:
    return cfg.home / "cluster.json"


def save(cfg: FleetConfig) -> None:
    """Remember --advertise/--join so `status`, `scale` and `down` on this host find its agent."""
    if not cfg.clustered:
        return
    procs.write_json(_saved_path(cfg), {name: getattr(cfg, name) for name in SAVED})


def apply_saved(cfg: FleetConfig, env: Mapping[str, str]) -> FleetConfig:
    """The file layer under the environment: saved values for settings the environment leaves unset."""
    data = procs.read_json(_saved_path(cfg))
    names = {"advertise": "FLEET_ADVERTISE", "join": "FLEET_JOIN"}
    given = {k: str(data[k]) for k in SAVED if isinstance(data.get(k), str) and not env.get(names[k])}
    return validate(cfg.replace(**given))

