"""Whether a fleet runs in this FLEET_HOME, and what to tell a user whose home runs none.

A fleet is found by its home: `scale`, `status`, `logs` and `down` read the pid files there. A
command pointed at a home where nothing runs (another FLEET_HOME, another user) must say so, naming
`fleetctl up`, instead of starting instances that no gateway would ever serve and waiting for them.
What runs is asked of the process table (pid files checked against live processes), never a server.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Collection
from pathlib import Path

from fleetctl.config import FleetConfig
from fleetctl.daemons import pidfiles as daemons
from fleetctl.errors import FleetError
from fleetctl.gateway import nginx as gateway

# What this host's instances join. `up` starts both in every mode: one machine, an external Consul or
# Redis (FLEET_CONSUL_ADDR / FLEET_REDIS_URL), and each host of several (docs/multihost.md), so a
# home without them has no gateway to put an instance in, whatever else runs.
GATEWAY = ("nginx", "sync")
DAEMONS = ("consul", "redis", "nginx", "sync", "autoscale")
OLD_MAKE_HOME = ".fleet"  # where `make up` kept the fleet before it used fleetctl's default home


class NoFleet(FleetError):
    """No fleet, or no gateway, runs in this FLEET_HOME (exit code 1, like any FleetError)."""


def running(cfg: FleetConfig) -> list[str]:
    """This home's own daemons that are alive now, in DAEMONS order (external services are not ours)."""
    return [name for name in DAEMONS
            if (gateway.master_pid(cfg) if name == "nginx" else daemons.live(cfg, name)) is not None]


def old_make_home(cfg: FleetConfig, cwd: Path) -> Path | None:
    """The checkout's .fleet when an older `make up` left a fleet running there, else None."""
    home = (cwd / OLD_MAKE_HOME).absolute()
    if home == cfg.home or not (home / "run").is_dir():
        return None
    return home if running(dataclasses.replace(cfg, home=home)) else None


def no_fleet_message(cfg: FleetConfig, cwd: Path | None = None) -> str:
    """Where we looked and what to run; names a fleet an older `make up` left in `cwd`/.fleet."""
    message = f"no fleet runs in {cfg.home} (FLEET_HOME): start one with `fleetctl up`"
    old = old_make_home(cfg, cwd) if cwd is not None else None
    if old is not None:
        message += (f"; a fleet an older `make up` started runs in {old}: "
                    f"`FLEET_HOME={old} fleetctl down` stops it")
    return message


def gateway_missing(alive: Collection[str]) -> list[str]:
    """The gateway's daemons not among `alive` (what `running` returned)."""
    return [name for name in GATEWAY if name not in alive]


def gateway_message(cfg: FleetConfig, missing: Collection[str]) -> str:
    return (f"the gateway of the fleet in {cfg.home} is not running ({' and '.join(missing)} stopped): "
            f"`fleetctl up` starts it again")


def require_gateway(cfg: FleetConfig, alive: Collection[str], cwd: Path | None = None) -> None:
    """Refuse to start instances no gateway would serve: they would register, never join an upstream,
    and `scale` would wait for them until its timeout."""
    if not alive:
        raise NoFleet(no_fleet_message(cfg, cwd))
    missing = gateway_missing(alive)
    if missing:
        raise NoFleet(gateway_message(cfg, missing))


def has_logs(cfg: FleetConfig) -> bool:
    """Whether a fleet ever ran here: the logs of a stopped one are kept, and worth reading."""
    return cfg.log_dir.is_dir() and any(path.is_file() for path in cfg.log_dir.iterdir())
