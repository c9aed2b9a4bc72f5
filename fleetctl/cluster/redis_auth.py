"""A password for the managed Redis in cluster mode, where it listens on the host's address.

Each host has its own Redis (docs/multihost.md), so each host makes its own password when it first
starts Redis in cluster mode and keeps it in FLEET_HOME/redis.pass (mode 600). redis-server reads it
from a config file (`requirepass`), never from its command line, which `ps` shows; the instances get
it inside OCR_REDIS_URL in their environment. A Redis already running without one keeps running as
it is (its instances have no password either); the next start after `fleetctl down` sets it.
One machine's Redis on loopback has none, as before.
"""
from __future__ import annotations

import secrets
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

from fleetctl import procs
from fleetctl.config import FleetConfig


def password_path(cfg: FleetConfig) -> Path:
    return cfg.home / "redis.pass"


def conf_path(cfg: FleetConfig) -> Path:
    return cfg.home / "redis.conf"


def wanted(cfg: FleetConfig) -> bool:
    """A password for our own Redis on a host's address; an external one (FLEET_REDIS_URL) has its own."""
    return cfg.clustered and cfg.managed_redis


def server_args(cfg: FleetConfig) -> list[str]:
    """The config file with `requirepass` (made with the password on first use), to put right after
    the binary: redis-server reads a config file only as its first argument. [] for no password."""
    if not wanted(cfg):
        conf_path(cfg).unlink(missing_ok=True)
        return []
    password = procs.read_secret(password_path(cfg))
    if not password:
        password = secrets.token_urlsafe(32)
        procs.write_secret(password_path(cfg), password + "\n")
    procs.write_secret(conf_path(cfg), f"requirepass {password}\n")
    return [str(conf_path(cfg))]


def url(cfg: FleetConfig) -> str:
    """The Redis URL instances and fleetctl connect with: the password in it where ours has one."""
    password = procs.read_secret(password_path(cfg)) if wanted(cfg) and conf_path(cfg).is_file() else ""
    if not password:
        return cfg.redis_address
    parts = urlsplit(cfg.redis_address)
    return urlunsplit(parts._replace(netloc=f":{quote(password, safe='')}@{parts.netloc}"))


def redact(address: str) -> str:
    """A Redis URL fit to print: any password in it replaced by ***."""
    parts = urlsplit(address)
    if parts.password is None:
        return address
    user = f"{parts.username}:" if parts.username else ":"
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{user}***@{host}"))
