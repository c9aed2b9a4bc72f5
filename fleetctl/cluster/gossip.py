"""Gossip encryption for a fleet of several hosts: one AES key that every host's Consul agent shares.

The first host makes the key when its agent is new and keeps it in FLEET_HOME/gossip.key (mode 600);
a host that joins is given it in FLEET_CONSUL_ENCRYPT. Without the key, an agent could neither read
the fleet's gossip nor forge it, so nobody on the network can add a node or mark one dead.
The key reaches Consul through a config file, never the command line, where `ps` would show it.

A joining host asks the join address whether the fleet encrypts its gossip before it starts its
agent, so a missing or unneeded key is a clear error at once, not a join that retries forever.
A fleet started before encryption existed keeps gossiping in clear: its agents already have data
directories, and a key made for one host alone would cut it off from the others.
"""
from __future__ import annotations

import base64
import binascii
import json
import logging
import secrets
from pathlib import Path

import consul

from fleetctl import procs
from fleetctl.cluster import agent as cluster
from fleetctl.cluster import consul_api
from fleetctl.config import ConfigError, FleetConfig

log = logging.getLogger(__name__)

KEY_BYTES = (16, 24, 32)  # AES-128, -192 or -256: what Consul accepts; `consul keygen` makes 32
SETTING = "FLEET_CONSUL_ENCRYPT"


def key_path(cfg: FleetConfig) -> Path:
    return cfg.home / "gossip.key"


def config_path(cfg: FleetConfig) -> Path:
    return cfg.home / "consul-gossip.json"


def check_key(value: str, setting: str = SETTING) -> str:
    """A base64 key of 16, 24 or 32 bytes, as Consul takes it (the value itself is never echoed)."""
    try:
        raw = base64.b64decode(value.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise ConfigError(f"{setting} is not base64 (make one with `consul keygen`)") from None
    if len(raw) not in KEY_BYTES:
        raise ConfigError(f"{setting} decodes to {len(raw)} bytes; Consul takes 16, 24 or 32 (`consul keygen`)")
    return value.strip()


def fleet_encrypts(cfg: FleetConfig, join: list[str], *, timeout: float = 3.0) -> bool | None:
    """Whether the first join host that answers gossips encrypted; None if none answers."""
    def encrypted(client: consul.Consul) -> bool:
        stats = (client.agent.self() or {}).get("Stats", {})
        return str(stats.get("serf_lan", {}).get("encrypted", "false")).lower() == "true"

    return cluster.ask_join_hosts(cfg, join, encrypted, timeout=timeout, token=consul_api.fleet_token(cfg))


def resolve(cfg: FleetConfig, data_dir: Path, join: list[str]) -> str | None:
    """The key this host's agent runs with (saved for the next start), or None to gossip in clear."""
    given = check_key(cfg.consul_encrypt) if cfg.consul_encrypt else ""
    secret = cluster.FleetSecret(SETTING, key_path(cfg), "its key", "encrypts its gossip", "gossips in clear",
                                 make=lambda: base64.b64encode(secrets.token_bytes(32)).decode("ascii"))
    return cluster.resolve_secret(secret, given, data_dir, join, lambda: fleet_encrypts(cfg, join))


def agent_args(cfg: FleetConfig, key: str | None) -> list[str]:
    """`-config-file` holding the key (and checked both ways), or nothing for gossip in clear."""
    if key is None:
        config_path(cfg).unlink(missing_ok=True)
        return []
    text = json.dumps({"encrypt": key, "encrypt_verify_incoming": True, "encrypt_verify_outgoing": True})
    procs.write_secret(config_path(cfg), text + "\n")
    return ["-config-file", str(config_path(cfg))]


def encrypted(cfg: FleetConfig) -> bool:
    """Whether this host's agent was started with a key (for `up`'s hint and `status`)."""
    return config_path(cfg).is_file()
