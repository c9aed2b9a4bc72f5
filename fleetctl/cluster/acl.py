"""Consul ACLs for a fleet of several hosts: deny by default, one management token, and small tokens.

Cluster mode puts Consul's HTTP API on the host's address, where anyone on the network could
deregister instances, register a rogue backend that every gateway would proxy to, or rewrite the API
keys. So the first host makes a management token (a UUID) when its agent is new, keeps it in
FLEET_HOME/consul.token (mode 600), and starts its agent with ACLs on and `default_policy = "deny"`;
a host that joins is given the token in FLEET_CONSUL_TOKEN, exactly as gossip.py does with its key.
The token reaches Consul through a config file, never the command line.

fleetctl itself uses the management token. With it, each `up` makes (or keeps) two small tokens:
the instances' (register the fleet's service and its checks, nothing else) and the gateway sync
loop's (read the service's health, the nodes, and the API keys' KV folder). A fleet whose agents ran
without ACLs before this version keeps doing so: a token made for one host would cut it off.
"""
from __future__ import annotations

import json
import logging
import uuid
from pathlib import Path
from typing import Any

import consul
from consul.callback import CB

from fleetctl import procs
from fleetctl.cluster import agent as cluster
from fleetctl.cluster import consul_api
from fleetctl.config import ConfigError, FleetConfig

log = logging.getLogger(__name__)

SETTING = "FLEET_CONSUL_TOKEN"
ROLES = ("instance", "gateway")


def config_path(cfg: FleetConfig) -> Path:
    return cfg.home / "consul-acl.json"


def role_token_path(cfg: FleetConfig, role: str) -> Path:
    return cfg.home / f"consul-{role}.token"


def fleet_acls(cfg: FleetConfig, join: list[str], *, timeout: float = 3.0) -> bool | None:
    """Whether the first join host that answers enforces ACLs; None if none answers. Asked without a
    token: an agent without ACLs answers 401 "ACL support disabled", one with them 403."""
    def enforces(client: consul.Consul) -> bool:
        try:
            client.acl.token.read_self()
        except consul.ACLDisabled:
            return False
        except consul.ACLPermissionDenied:
            return True
        return True

    return cluster.ask_join_hosts(cfg, join, enforces, timeout=timeout)


def accepted(cfg: FleetConfig, join: list[str], token: str, *, timeout: float = 3.0) -> bool | None:
    """Whether the first join host that answers knows `token`; None if none answers."""
    def knows(client: consul.Consul) -> bool:
        try:
            client.acl.token.read_self()
        except consul.ACLPermissionDenied:
            return False
        return True

    return cluster.ask_join_hosts(cfg, join, knows, timeout=timeout, token=token)


def resolve(cfg: FleetConfig, data_dir: Path, join: list[str]) -> str | None:
    """The management token this host's agent runs with (saved for the next start), or None for no ACLs."""
    given = consul_api.check_token(cfg.consul_token) if cfg.consul_token else ""
    secret = cluster.FleetSecret(SETTING, consul_api.token_path(cfg), "its management token", "has Consul ACLs",
                                 "runs Consul without ACLs", make=lambda: str(uuid.uuid4()))

    def verify(token: str) -> None:
        if accepted(cfg, join, token) is False:
            raise ConfigError(f"the fleet at {','.join(join)} does not know the token in {SETTING} (or FLEET_HOME/"
                              "consul.token): it must be the content of FLEET_HOME/consul.token on the first host")

    return cluster.resolve_secret(secret, given, data_dir, join, lambda: fleet_acls(cfg, join), verify)


def agent_args(cfg: FleetConfig, token: str | None, *, server: bool) -> list[str]:
    """`-config-file` turning ACLs on (deny by default), or nothing for an agent without them.

    The agent's own token (to register its node and sync its services) is the management token:
    the host keeps that one anyway. `master` bootstraps ACLs on the servers (Consul 1.8's name)."""
    if token is None:
        config_path(cfg).unlink(missing_ok=True)
        return []
    tokens = {"agent": token, **({"master": token} if server else {})}
    acl = {"enabled": True, "default_policy": "deny", "down_policy": "extend-cache",
           "enable_token_persistence": True, "tokens": tokens}
    procs.write_secret(config_path(cfg), json.dumps({"acl": acl}) + "\n")
    return ["-config-file", str(config_path(cfg))]


def enabled(cfg: FleetConfig) -> bool:
    """Whether this host's own agent was started with ACLs (for `up`'s hint and the small tokens)."""
    return cfg.clustered and cfg.managed_consul and config_path(cfg).is_file()


# --- the small tokens: what the instances and the sync loop may do ----------------------------

def rules(cfg: FleetConfig, role: str) -> str:
    """The policy of `role`, in Consul's HCL. Instances register and deregister the fleet's service
    (its checks come with it) and read their own registrations; the gateway's sync loop reads the
    service's health (which needs the nodes too), the LAN members, and the API keys' KV folder."""
    service = json.dumps(cfg.service_name)
    if role == "instance":
        return f'service {service} {{ policy = "write" }}'
    return (f'service {service} {{ policy = "read" }} node_prefix "" {{ policy = "read" }} '
            f'key_prefix {json.dumps(consul_api.kv_prefix(cfg))} {{ policy = "read" }}')


def policy_name(cfg: FleetConfig, role: str) -> str:
    return f"ocr-fleet-{cfg.service_name}-{role}"


def _acl_api(client: consul.Consul, path: str, body: str | None = None) -> Any:
    """GET (or PUT `body` to) /v1/acl/<path>: py-consul's ACL helpers differ between its releases,
    these endpoints do not (Consul 1.4 and later)."""
    if body is None:
        return client.http.get(CB.json(), f"/v1/acl/{path}")
    return client.http.put(CB.json(), f"/v1/acl/{path}", data=body)


def _ensure_policy(client: consul.Consul, name: str, text: str) -> str:
    """The id of policy `name`, made or brought up to date with `text` (idempotent)."""
    def find() -> str | None:
        return next((str(p["ID"]) for p in _acl_api(client, "policies") or [] if p.get("Name") == name), None)

    body = json.dumps({"Name": name, "Rules": text, "Description": "made by fleetctl (fleetctl/cluster/acl.py)"})
    policy_id = find()
    if policy_id is not None:
        _acl_api(client, f"policy/{policy_id}", body)
        return policy_id
    try:
        return str(_acl_api(client, "policy", body)["ID"])
    except consul.ConsulException:  # another host made it in the meantime
        policy_id = find()
        if policy_id is None:
            raise
        return policy_id


def _read_self(cfg: FleetConfig, token: str) -> dict[str, Any] | None:
    """The token as this host's agent knows it; None when unknown (or ACLs are not up yet)."""
    client = consul_api.client_at(*consul_api.split_address(cfg.consul_address)[1:], token, timeout=2.0)
    try:
        return dict(client.acl.token.read_self() or {})
    except consul_api.CONSUL_ERRORS:
        return None
    finally:
        consul_api.close(client)


def ready(cfg: FleetConfig) -> bool:
    """Whether this host's agent takes the management token: ACLs are bootstrapped, and a joined
    agent has learnt that its servers enforce them (until then it answers in "legacy mode")."""
    return _read_self(cfg, consul_api.fleet_token(cfg)) is not None


def _has_policy(cfg: FleetConfig, token: str, policy_id: str) -> bool:
    mine = _read_self(cfg, token) or {}
    return any(p.get("ID") == policy_id for p in mine.get("Policies") or [])


def ensure_role_tokens(cfg: FleetConfig) -> dict[str, str]:
    """The instances' and the sync loop's tokens on this host, made with the management token when
    missing or no longer known (a token deleted to rotate it), and saved in FLEET_HOME (mode 600)."""
    client = consul_api.client_for(cfg)
    made: dict[str, str] = {}
    try:
        for role in ROLES:
            policy_id = _ensure_policy(client, policy_name(cfg, role), rules(cfg, role))
            path = role_token_path(cfg, role)
            token = procs.read_secret(path)
            if not token or not _has_policy(cfg, token, policy_id):
                body = json.dumps({"Description": f"{policy_name(cfg, role)} on {cluster.node_name(cfg)}",
                                   "Policies": [{"ID": policy_id}]})
                token = str(_acl_api(client, "token", body)["SecretID"])
                procs.write_secret(path, token + "\n")
                log.info("made the %s ACL token of this host", role)
            made[role] = token
    finally:
        consul_api.close(client)
    return made


def role_token(cfg: FleetConfig, role: str) -> str:
    """The token `role` runs with: its own small one where fleetctl made it, else the fleet's (an
    external agent given FLEET_CONSUL_TOKEN), else none (no ACLs)."""
    if role in ROLES and enabled(cfg):
        return procs.read_secret(role_token_path(cfg, role)) or consul_api.fleet_token(cfg)
    return consul_api.fleet_token(cfg)
