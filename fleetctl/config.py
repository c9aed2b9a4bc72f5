"""Fleet settings: defaults < environment < command-line flags, validated once.

FleetConfig's fields are the one table of settings. Each field's metadata names its variable and,
with `instance`, says that instances get it under that name; from the table alone come load(),
`fleet_env` (what fleetctl's own daemons inherit), `instance_env` and the config hash (a changed
instance setting is drift, so `scale` replaces the instances). A new instance setting is one line:

    profile: str = field(default="", metadata={"env": "OCR_PROFILE", "instance": True})

A string left empty is not passed, so the instance keeps its own default.
"""
from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BACKENDS = ("process", "docker", "swarm")
ENGINES = ("rapidocr", "paddleocr")  # OCR_ENGINE (fleetctl/backends/engines.py)
PORT = {"min": 1, "max": 65535}
FLAG = {"min": 0, "max": 1}
# nginx's own rate form, as `limit_req_zone ... rate=` takes it: 10r/s, 600r/m.
RATE_PATTERN = r"[1-9][0-9]{0,5}r/[sm]"
# FLEET_LANGS: language codes, comma-separated (fleetctl/backends/langs.py checks them against the catalog).
LANGS_PATTERN = r" *[A-Za-z_-]{1,12} *(, *[A-Za-z_-]{1,12} *){0,199}"
# What fleetctl's environment may hold that no instance should inherit (py-consul reads the last).
SECRET_SETTINGS = ("FLEET_CONSUL_TOKEN", "FLEET_CONSUL_ENCRYPT", "CONSUL_HTTP_TOKEN")


class ConfigError(ValueError):
    """A setting is invalid; the message names it."""


@dataclass(frozen=True)
class FleetConfig:
    """Everything fleetctl needs to find and run the fleet; field metadata is the settings table."""

    home: Path = Path(".fleet")  # FLEET_HOME: see default_home(); not in the table (a path, resolved)
    backend: str = field(default="process", metadata={"env": "FLEET_BACKEND", "choices": BACKENDS})
    consul_addr: str | None = field(default=None, metadata={"env": "FLEET_CONSUL_ADDR"})  # None: managed
    redis_url: str | None = field(default=None, metadata={"env": "FLEET_REDIS_URL"})  # None: managed
    gateway_port: int = field(default=8080, metadata={"env": "FLEET_GATEWAY_PORT", **PORT})
    consul_port: int = field(default=8500, metadata={"env": "FLEET_CONSUL_PORT", **PORT})
    redis_port: int = field(default=6379, metadata={"env": "FLEET_REDIS_PORT", **PORT})
    base_port: int = field(default=8001, metadata={"env": "FLEET_BASE_PORT", **PORT})
    image: str = field(default="ocr-fleet:latest", metadata={"env": "FLEET_IMAGE"})
    # Swarm: a port window of this many slots per generation (rolling updates alternate two windows).
    swarm_slots: int = field(default=100, metadata={"env": "FLEET_SWARM_SLOTS", "min": 1, "max": 10000})
    service_name: str = field(default="ocr", metadata={"env": "FLEET_SERVICE_NAME"})
    rss_warn_mb: float = field(default=1024.0, metadata={"env": "FLEET_RSS_WARN_MB", "min": 0})
    # `fleetctl autoscale` (fleetctl/autoscale/loop.py): target in-flight jobs per worker, CPU cores per worker
    # below which a fleet counts as idle (0: no CPU guard), and the loop's windows, cooldown and poll (s).
    autoscale_target: float = field(default=2.0, metadata={"env": "FLEET_AUTOSCALE_TARGET", "min": 0.1})
    autoscale_cpu_target: float = field(default=0.8, metadata={"env": "FLEET_AUTOSCALE_CPU_TARGET", "min": 0})
    autoscale_up_window: float = field(default=5.0, metadata={"env": "FLEET_AUTOSCALE_UP_WINDOW", "min": 0})
    autoscale_down_window: float = field(default=300.0, metadata={"env": "FLEET_AUTOSCALE_DOWN_WINDOW", "min": 0})
    autoscale_cooldown: float = field(default=30.0, metadata={"env": "FLEET_AUTOSCALE_COOLDOWN", "min": 0})
    autoscale_poll: float = field(default=2.0, metadata={"env": "FLEET_AUTOSCALE_POLL", "min": 0.2, "max": 60})
    workers: int = field(default=1, metadata={"env": "OCR_WORKERS", "instance": True, "min": 1, "max": 64})
    threads: int = field(default=1, metadata={"env": "OCR_THREADS", "instance": True, "min": 1, "max": 64})
    max_upload_mb: float = field(default=20.0, metadata={"env": "OCR_MAX_UPLOAD_MB", "instance": True,
                                                         "min": 0.001})
    # JSON lines with request ids, which `fleetctl logs` merges with the gateway's (text: for people).
    log_format: str = field(default="json", metadata={"env": "OCR_LOG_FORMAT", "instance": True,
                                                      "choices": ("json", "text")})
    decode_slots: int = field(default=1, metadata={"env": "OCR_DECODE_SLOTS", "instance": True, "min": 1, "max": 64})
    read_ahead_mb: float = field(default=4.0, metadata={"env": "OCR_READ_AHEAD_MB", "instance": True, "min": 0})
    orientation: str = field(default="", metadata={"env": "OCR_ORIENTATION", "instance": True,
                                                   "choices": ("", "auto", "off")})
    line_classifier: str = field(default="", metadata={"env": "OCR_LINE_CLASSIFIER", "instance": True,
                                                       "choices": ("", "auto", "on", "off")})
    # Several hosts (docs/multihost.md): this host's address turns on cluster mode (a real Consul agent,
    # services bound to it); join lists hosts already in the fleet, comma-separated.
    advertise: str = field(default="", metadata={"env": "FLEET_ADVERTISE"})
    join: str = field(default="", metadata={"env": "FLEET_JOIN"})
    # The fleet's gossip key (fleetctl/cluster/gossip.py): the first host makes one, joining hosts are given it.
    consul_encrypt: str = field(default="", metadata={"env": "FLEET_CONSUL_ENCRYPT"})
    # The fleet's Consul ACL management token (fleetctl/cluster/acl.py): the first host makes one, joining hosts
    # are given it; with an external agent (FLEET_CONSUL_ADDR), the token fleetctl and the fleet use.
    consul_token: str = field(default="", metadata={"env": "FLEET_CONSUL_TOKEN"})
    consul_servers: int = field(default=3, metadata={"env": "FLEET_CONSUL_SERVERS", "min": 1, "max": 7})
    serf_port: int = field(default=8301, metadata={"env": "FLEET_CONSUL_SERF_PORT", **PORT})
    raft_port: int = field(default=8300, metadata={"env": "FLEET_CONSUL_SERVER_PORT", **PORT})
    # The gateway's front door (docs/gateway.md): API keys, rate limits, TLS. Off by default.
    auth: int = field(default=0, metadata={"env": "FLEET_AUTH", **FLAG})
    rate: str = field(default="", metadata={"env": "FLEET_RATE", "pattern": RATE_PATTERN,
                                            "hint": "a rate like 10r/s or 600r/m"})  # "": no limit
    rate_burst: int = field(default=20, metadata={"env": "FLEET_RATE_BURST", "min": 0, "max": 100000})
    tls: int = field(default=0, metadata={"env": "FLEET_TLS", **FLAG})
    gateway_tls_port: int = field(default=8443, metadata={"env": "FLEET_GATEWAY_TLS_PORT", **PORT})
    tls_cert: str = field(default="", metadata={"env": "FLEET_TLS_CERT"})  # "": self-signed in FLEET_HOME/tls
    tls_key: str = field(default="", metadata={"env": "FLEET_TLS_KEY"})
    gateway_http: int = field(default=1, metadata={"env": "FLEET_GATEWAY_HTTP", **FLAG})  # 0: HTTPS only
    # Repeated identical uploads answered by nginx itself (docs/gateway.md); entries live OCR_CACHE_TTL.
    gateway_cache: int = field(default=0, metadata={"env": "FLEET_GATEWAY_CACHE", **FLAG})
    gateway_cache_mb: int = field(default=256, metadata={"env": "FLEET_GATEWAY_CACHE_MB", "min": 1})
    # nginx workers: 1 leaves the cores to the OCR engines; more pays off when nginx answers cache hits.
    gateway_workers: int = field(default=1, metadata={"env": "FLEET_GATEWAY_WORKERS", "min": 1, "max": 64})
    cache_ttl: int = field(default=3600, metadata={"env": "OCR_CACHE_TTL", "instance": True, "min": 1})
    # OCR_ENGINE=paddleocr (fleetctl/backends/engines.py): instances run PaddleOCR's pipeline from its own venv.
    engine: str = field(default="rapidocr", metadata={"env": "OCR_ENGINE", "instance": True,
                                                     "choices": ENGINES})
    paddle_venv: str = field(default="", metadata={"env": "FLEET_PADDLE_VENV"})  # "": beside fleetctl's venv
    # The fleet's languages (fleetctl/backends/langs.py): every instance gets the same set as OCR_LANGS.
    langs: str = field(default="", metadata={"env": "FLEET_LANGS", "pattern": LANGS_PATTERN,
                                             "hint": "a comma-separated list of language codes like de,ru,ar"})

    @property
    def managed_consul(self) -> bool:
        return self.consul_addr is None

    @property
    def managed_redis(self) -> bool:
        return self.redis_url is None

    @property
    def clustered(self) -> bool:
        """Whether this host is one of several (FLEET_ADVERTISE set): see fleetctl/cluster/agent.py."""
        return bool(self.advertise)

    @property
    def gateway_host(self) -> str:
        """Where this host's services listen: its advertised address, else loopback only."""
        return self.advertise or "127.0.0.1"

    @property
    def consul_address(self) -> str:
        """host:port of the Consul HTTP API, managed or external."""
        return self.consul_addr or f"{self.gateway_host}:{self.consul_port}"

    @property
    def redis_address(self) -> str:
        return self.redis_url or f"redis://{self.gateway_host}:{self.redis_port}/0"

    @property
    def gateway_url(self) -> str:
        return f"http://{self.gateway_host}:{self.gateway_port}"

    @property
    def gateway_tls_url(self) -> str:
        return f"https://{self.gateway_host}:{self.gateway_tls_port}"

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

    def settings(self) -> Iterator[tuple[str, Any, bool]]:
        """(variable, value, instances get it) for every setting in the table."""
        for f in dataclasses.fields(self):
            if "env" in f.metadata:
                yield f.metadata["env"], getattr(self, f.name), bool(f.metadata.get("instance"))


def format_value(value: Any) -> str:
    """A value as its variable holds it: 20.0 -> "20", so an int-minded reader accepts it too."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def instance_settings(cfg: FleetConfig) -> dict[str, str]:
    """The table's instance settings as variables (empty strings left out: the instance's default)."""
    return {name: format_value(value) for name, value, instance in cfg.settings()
            if instance and value is not None and value != ""}


def default_home(env: Mapping[str, str]) -> Path:
    """One fleet per user, found from any directory: $XDG_STATE_HOME/ocr-fleet, else
    ~/.local/state/ocr-fleet. `make up` uses it too, so a bare `fleetctl` finds the fleet `make` started."""
    state = env.get("XDG_STATE_HOME") or str(Path(env.get("HOME") or Path.home()) / ".local" / "state")
    return Path(state) / "ocr-fleet"


_PARSERS: dict[str, Callable[[str], Any]] = {"int": int, "float": float, "str": str, "str | None": str}


def _parse(name: str, raw: str, type_name: str) -> Any:
    if type_name == "str | None":
        return raw or None  # empty: not set, the managed default
    try:
        return _PARSERS[type_name](raw.strip() if type_name != "str" else raw)
    except ValueError:
        kind = "whole number" if type_name == "int" else "number"
        raise ConfigError(f"{name}={raw!r} is not a {kind}") from None


def _validate(cfg: FleetConfig) -> FleetConfig:
    for f in dataclasses.fields(cfg):
        meta, value = f.metadata, getattr(cfg, f.name)
        if "env" not in meta:
            continue
        if "choices" in meta and value not in meta["choices"]:
            raise ConfigError(f"{meta['env']}={value!r} is not one of {', '.join(meta['choices'])}")
        if "pattern" in meta and value and not re.fullmatch(meta["pattern"], value):
            raise ConfigError(f"{meta['env']}={value[:80]!r} is not {meta['hint']}")
        lo, hi = meta.get("min"), meta.get("max")
        if lo is not None and value < lo or hi is not None and value > hi:
            bounds = f"between {lo} and {hi}" if hi is not None else f"at least {lo}"
            raise ConfigError(f"{meta['env']}={format_value(value)} must be {bounds}")
    return cfg


def load(env: Mapping[str, str] | None = None) -> FleetConfig:
    """Read the table's variables from the environment over the defaults (an empty one counts as unset)."""
    env = os.environ if env is None else env
    home = env.get("FLEET_HOME")
    values: dict[str, Any] = {"home": (Path(home) if home else default_home(env)).absolute()}
    for f in dataclasses.fields(FleetConfig):
        name = f.metadata.get("env")
        if name and env.get(name):
            values[f.name] = _parse(name, env[name], str(f.type))
    return _validate(FleetConfig(**values))
