"""The managed autoscaler (`fleetctl up --autoscale MIN:MAX`): the `fleetctl autoscale` loop as a daemon.

Started, restarted when its bounds or FLEET_AUTOSCALE_* change, and stopped first in `down` so it
cannot start the instances being stopped; its row in `status` comes from the state the loop writes.
"""
from __future__ import annotations

import sys

from fleetctl import procs
from fleetctl.autoscale import loop as autoscale
from fleetctl.config import FleetConfig
from fleetctl.daemons import pidfiles as daemons
from fleetctl.daemons import services

ARGV = (sys.executable, "-m", "fleetctl", "autoscale")
STOP_GRACE_S = 60.0  # a scale in progress finishes (drains included) before the loop exits


def _argv(backend: str, lo: int, hi: int) -> list[str]:
    return [*ARGV, "--min", str(lo), "--max", str(hi), "--backend", backend]


def ensure(cfg: FleetConfig, backend: str, lo: int, hi: int) -> int:
    """Start the autoscaler daemon, or restart it when its bounds or FLEET_AUTOSCALE_* changed."""
    argv = _argv(backend, lo, hi)
    env = daemons.fleet_env(cfg)
    own = {k: v for k, v in env.items() if k.startswith("FLEET_AUTOSCALE_")}
    with daemons.lock(cfg):
        pid = daemons.live(cfg, "autoscale")
        if pid is not None:
            if procs.process_matches(pid, (" ".join(argv[3:]),), own):
                return pid
            procs.stop_process(pid, grace=STOP_GRACE_S)
        pid = procs.spawn(argv, log_path=daemons.log_file(cfg, "autoscale"),
                          pid_path=daemons.pid_file(cfg, "autoscale"), env=env)
        daemons.wait_alive_and_ready(cfg, "autoscale", pid,
                                     lambda: autoscale.read_state(cfg).get("pid") == pid, timeout=30)
    return pid


def stop(cfg: FleetConfig) -> bool:
    """Stop the managed autoscaler (first in `down`, so it cannot start instances being stopped)."""
    ran = daemons.stop(cfg, "autoscale", grace=STOP_GRACE_S)
    autoscale.state_path(cfg).unlink(missing_ok=True)
    return ran


def state(cfg: FleetConfig) -> daemons.ServiceState | None:
    """The autoscaler's row for `status` (managed or in a foreground shell): bounds, target, last decision."""
    saved = autoscale.read_state(cfg)
    if not saved:
        return None
    pid = saved.get("pid")
    running = isinstance(pid, int) and procs.process_matches(pid, ("fleetctl", "autoscale"))
    decision = saved.get("last_decision") or {}
    change = saved.get("last_change") or {}
    return daemons.ServiceState(
        "autoscale", True, running=running, pid=pid if running else None, address=saved.get("backend", ""),
        log=str(daemons.log_file(cfg, "autoscale")),
        detail={"min": saved.get("min"), "max": saved.get("max"), "target": saved.get("target"),
                "current": saved.get("current"), "load": saved.get("load"), "cpu": saved.get("cpu"),
                "last_decision": decision.get("line"), "last_decision_time": saved.get("time"),
                "last_change": change.get("line"),
                "last_change_time": change.get("time"), "last_change_error": change.get("error")},
    )


def service_states(cfg: FleetConfig) -> dict[str, daemons.ServiceState]:
    """What `status` shows of the services: the managed daemons, then the autoscaler when one runs."""
    states = services.service_states(cfg)
    auto = state(cfg)
    if auto is not None:
        states["autoscale"] = auto
    return states
