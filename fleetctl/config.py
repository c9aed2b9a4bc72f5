"""Fleet settings: defaults < FLEET_* environment < command-line flags, validated once."""
from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

BACKENDS = ("process", "docker")


class ConfigError(ValueError):
    """A setting is invalid; the message names it."""


@dataclass(frozen=True)
class FleetConfig:
    """Everything fleetctl needs to find and run the fleet."""

    home: Path = Path(".fleet")
    backend: str = "process"
    consul_addr: str | None = None  # None: run a managed dev agent
    redis_url: str | None = None  # None: run a managed redis-server
    gateway_host: str = "127.0.0.1"
    gateway_port: int = 8080
    consul_port: int = 8500
    redis_port: int = 6379
    base_port: int = 8001
    image: str = "ocr-fleet:latest"
    service_name: str = "ocr"
    workers: int = 1
    threads: int = 1
    max_upload_mb: int = 20

    @property
    def managed_consul(self) -> bool:
        return self.consul_addr is None

    @property
    def managed_redis(self) -> bool:
        return self.redis_url is None

    @property
    def consul_address(self) -> str:
        """host:port of the Consul HTTP API, managed or external."""
        return self.consul_addr or f"127.0.0.1:{self.consul_port}"

    @property
    def redis_address(self) -> str:
        return self.redis_url or f"redis://127.0.0.1:{self.redis_port}/0"

    @property
    def gateway_url(self) -> str:
        return f"http://{self.gateway_host}:{self.gateway_port}"

    @property
    def run_dir(self) -> Path:
        return self.home / "run"

    @property
    def log_dir(self) -> Path:
        return self.home / "logs"

    @property
    def nginx_dir(self) -> Path:
        return self.home / "nginx"

    def replace(self, **changes: Any) -> FleetConfig:
        """A copy with flags applied; None values mean 'not given' and are ignored."""
        given = {k: v for k, v in changes.items() if v is not None}
        return _validate(dataclasses.replace(self, **given))


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a whole number") from None


def _validate(cfg: FleetConfig) -> FleetConfig:
    if cfg.backend not in BACKENDS:
        raise ConfigError(f"backend {cfg.backend!r} is not one of {', '.join(BACKENDS)} (FLEET_BACKEND)")
    for name in ("gateway_port", "consul_port", "redis_port", "base_port"):
        port = getattr(cfg, name)
        if not 1 <= port <= 65535:
            raise ConfigError(f"{name}={port} is not a TCP port")
    for name in ("workers", "threads", "max_upload_mb"):
        if getattr(cfg, name) < 1:
            raise ConfigError(f"{name} must be at least 1")
    return cfg


def default_home(env: Mapping[str, str]) -> Path:
    """One fleet per user, found from any directory: $XDG_STATE_HOME/ocr-fleet, else
    ~/.local/state/ocr-fleet. `make up` sets FLEET_HOME to the checkout's .fleet instead."""
    state = env.get("XDG_STATE_HOME") or str(Path(env.get("HOME") or Path.home()) / ".local" / "state")
    return Path(state) / "ocr-fleet"


def load(env: Mapping[str, str] | None = None) -> FleetConfig:
    """Read FLEET_* settings from the environment over the defaults."""
    env = os.environ if env is None else env
    home = env.get("FLEET_HOME")
    cfg = FleetConfig(
        home=(Path(home) if home else default_home(env)).absolute(),
        backend=env.get("FLEET_BACKEND") or "process",
        consul_addr=env.get("FLEET_CONSUL_ADDR") or None,
        redis_url=env.get("FLEET_REDIS_URL") or None,
        gateway_port=_int(env, "FLEET_GATEWAY_PORT", 8080),
        consul_port=_int(env, "FLEET_CONSUL_PORT", 8500),
        redis_port=_int(env, "FLEET_REDIS_PORT", 6379),
        base_port=_int(env, "FLEET_BASE_PORT", 8001),
        image=env.get("FLEET_IMAGE") or "ocr-fleet:latest",
        service_name=env.get("FLEET_SERVICE_NAME") or "ocr",
        workers=_int(env, "OCR_WORKERS", 1),
        threads=_int(env, "OCR_THREADS", 1),
        max_upload_mb=_int(env, "OCR_MAX_UPLOAD_MB", 20),
    )
    return _validate(cfg)
