"""API keys: create, list, revoke. Only a key's SHA-1 is kept, in Consul's KV, which every gateway watches.

A key is 256 random bits, so a plain (unsalted) SHA-1 of it cannot be reversed or guessed; SHA-1 is
what nginx's Lua module computes natively (`ngx.sha1_bin`), so the gateway checks a key without a
round trip to anything (docs/gateway.md explains the choice).
"""
from __future__ import annotations

import hashlib
import json
import re
import secrets
import time
from dataclasses import asdict, dataclass
from typing import Any

from fleetctl.cluster import consul_api
from fleetctl.config import RATE_PATTERN, FleetConfig
from fleetctl.errors import FleetError

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}")
KEY_PREFIX = "ocr_"


class ApiKeyError(FleetError):
    """A key could not be created, found or revoked; the message says which and why."""


@dataclass(frozen=True, order=True)
class ApiKey:
    """What is stored for one key: never the key itself."""

    name: str
    hash: str
    rate: str = ""  # "" -> FLEET_RATE
    created: float = 0.0

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)


def key_hash(secret: str) -> str:
    """The hex SHA-1 the gateway computes from the header (see nginx/auth-server.conf.tmpl)."""
    return hashlib.sha1(secret.encode("utf-8")).hexdigest()  # noqa: S324 - a 256-bit random secret


def check_name(name: str) -> str:
    if not NAME.fullmatch(name):
        raise ApiKeyError(f"key name {name!r} must be 1-64 letters, digits, '_', '.' or '-', starting with "
                          f"a letter or digit")
    return name


def check_rate(rate: str) -> str:
    if rate and not re.fullmatch(RATE_PATTERN, rate):
        raise ApiKeyError(f"--rate {rate!r} is not a rate like 10r/s or 600r/m")
    return rate


def _parse(entry: dict[str, Any]) -> ApiKey | None:
    """A KV entry -> ApiKey; None for anything malformed (it grants nothing)."""
    try:
        data = json.loads(entry.get("Value") or b"")
        key = ApiKey(name=str(data["name"]), hash=str(data["hash"]), rate=str(data.get("rate") or ""),
                     created=float(data.get("created") or 0))
    except (ValueError, KeyError, TypeError):
        return None
    if not NAME.fullmatch(key.name) or not re.fullmatch(r"[0-9a-f]{40}", key.hash):
        return None
    if key.rate and not re.fullmatch(RATE_PATTERN, key.rate):
        return None
    return key


def create(client: Any, cfg: FleetConfig, name: str, rate: str = "") -> tuple[ApiKey, str]:
    """Store a new key's hash; returns it with the secret, which is shown once and never stored."""
    check_name(name)
    check_rate(rate)
    secret = KEY_PREFIX + secrets.token_urlsafe(32)
    key = ApiKey(name=name, hash=key_hash(secret), rate=rate, created=round(time.time(), 3))
    # cas=0: only if no such key exists, so a create never silently replaces a live key.
    if not client.kv.put(consul_api.kv_prefix(cfg) + name, key.to_json(), cas=0):
        raise ApiKeyError(f"a key named {name!r} exists: revoke it first (fleetctl keys revoke {name})")
    return key, secret


def fetch(client: Any, cfg: FleetConfig, index: int | None = None, wait: str | None = None
          ) -> tuple[int, list[ApiKey]]:
    """Every stored key, sorted; a blocking query when `index` is given (returns on a change or `wait`)."""
    new_index, entries = client.kv.get(consul_api.kv_prefix(cfg), recurse=True, index=index, wait=wait)
    keys = [k for k in (_parse(e) for e in entries or []) if k is not None]
    return int(new_index or 0), sorted(keys)


def revoke(client: Any, cfg: FleetConfig, name: str) -> None:
    """Delete the key's hash; every gateway drops it at its next watch wake-up (well under 5 s)."""
    check_name(name)
    path = consul_api.kv_prefix(cfg) + name
    _, entry = client.kv.get(path)
    if entry is None:
        raise ApiKeyError(f"no key named {name!r} (fleetctl keys list)")
    client.kv.delete(path)
