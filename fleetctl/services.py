"""The fleet's supporting daemons: a Consul agent, Redis, the nginx gateway and the sync loop.

The agent is `-dev` on a single machine, and a real server or client when the host is one of
several (FLEET_ADVERTISE; fleetctl/cluster.py); every service then listens on that address.

Each is found by its pid file checked against the live process (command line, and the
environment for the sync loop), so a stale pid file never passes for a running service.
External Consul/Redis (FLEET_CONSUL_ADDR / FLEET_REDIS_URL) are used as given, never started.
"""
from __future__ import annotations

import contextlib
import os
import signal
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import psutil
import redis

from fleetctl import cluster, consul_api, gateway, gossip, procs, upstream
from fleetctl.config import FleetConfig, format_value
from fleetctl.gateway import GatewayError, NginxReloader

SERVICES = ("consul", "redis", "nginx", "sync")
SYNC_ARGV = (sys.executable, "-m", "fleetctl", "sync")
AUTOSCALE_ARGV = (sys.executable, "-m", "fleetctl", "autoscale")
AUTOSCALE_STOP_GRACE_S = 60.0  # a scale in progress finishes (drains included) before the loop exits
REDIS_MAXMEMORY = "256mb"


class ServiceError(procs.ProcessError):
    """A managed service did not start or become ready; the message carries its log tail.

    A ProcessError, so the CLI's single error translation already turns it into exit code 1.
    """


@dataclass
class ServiceState:
    """What `fleetctl status` shows for one service."""

    name: str
    managed: bool
    running: bool
    pid: int | None = None
    address: str = ""
    log: str | None = None
    started: bool = False  # started by this call (ensure_services); False when it was already up
    detail: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.update(data.pop("detail"))
        return data


# --- paths and process signatures -------------------------------------------------------------

def _pid_file(cfg: FleetConfig, name: str) -> Path:
    return gateway.pid_path(cfg) if name == "nginx" else cfg.run_dir / f"{name}.pid"


def _log_file(cfg: FleetConfig, name: str) -> Path:
    return gateway.error_log_path(cfg) if name == "nginx" else cfg.log_dir / f"{name}.log"


def log_files(cfg: FleetConfig) -> dict[str, Path]:
    """The services' logs by the source name `fleetctl logs` shows: the gateway's JSON access log,
    then nginx's error log, Consul, Redis and the sync loop (external services log elsewhere)."""
    files = {"gateway": gateway.access_log_path(cfg), "nginx": gateway.error_log_path(cfg)}
    if cfg.managed_consul:
        files["consul"] = _log_file(cfg, "consul")
    if cfg.managed_redis:
        files["redis"] = _log_file(cfg, "redis")
    files["sync"] = _log_file(cfg, "sync")
    files["autoscale"] = _log_file(cfg, "autoscale")
    return files


def _signature(cfg: FleetConfig, name: str) -> tuple[tuple[str, ...], dict[str, str] | None]:
    """What the command line (and environment) of our own copy of `name` must contain."""
    if name == "consul":
        return ("consul", "agent", str(cfg.home / "consul")), None
    if name == "redis":
        return ("redis-server", str(cfg.home / "redis")), None
    if name == "nginx":
        return ("nginx", str(gateway.nginx_conf_path(cfg))), None
    if name == "autoscale":
        return ("fleetctl", "autoscale", "--min"), {"FLEET_HOME": str(cfg.home)}
    return ("fleetctl", "sync"), {"FLEET_HOME": str(cfg.home)}


def _live(cfg: FleetConfig, name: str) -> int | None:
    parts, env = _signature(cfg, name)
    return procs.live_pid(_pid_file(cfg, name), parts, env)


def _sweep(cfg: FleetConfig, name: str) -> list[int]:
    """Our processes of `name` even when their pid file is gone (so stop leaves nothing behind)."""
    parts, env = _signature(cfg, name)
    found = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        joined = " ".join(proc.info["cmdline"] or ())
        if all(p in joined for p in parts) and procs.process_matches(proc.info["pid"], parts, env):
            if proc.info["pid"] != os.getpid():
                found.append(int(proc.info["pid"]))
    return found


def _lock(cfg: FleetConfig) -> contextlib.AbstractContextManager[None]:
    """Serialise concurrent `up`/`down` so two callers never start the same daemon twice."""
    return procs.file_lock(cfg.run_dir / "services.lock")


def fleet_env(cfg: FleetConfig) -> dict[str, str]:
    """The environment that makes `config.load()` in a child rebuild this same config."""
    env = dict(os.environ)
    env["FLEET_HOME"] = str(cfg.home)
    for name, value, _instance in cfg.settings():
        if value is None or value == "":
            env.pop(name, None)
        else:
            env[name] = format_value(value)
    return env


# --- readiness probes --------------------------------------------------------------------------

def _consul_ready(cfg: FleetConfig) -> bool:
    client = consul_api.client_for(cfg, timeout=1.0)
    try:
        return consul_api.reachable(client)
    finally:
        consul_api.close(client)


def _redis_ready(cfg: FleetConfig) -> bool:
    client = redis.Redis.from_url(cfg.redis_address, socket_timeout=1.0, socket_connect_timeout=1.0)
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False
    finally:
        client.close()


def _sync_ready(cfg: FleetConfig, pid: int) -> bool:
    """The loop writes its pid once it has rendered upstream.conf from Consul for the first time."""
    return upstream.read_state(cfg).get("pid") == pid and gateway.upstream_conf_path(cfg).is_file()


# --- starting each service ---------------------------------------------------------------------

def _start_consul(cfg: FleetConfig) -> int:
    binary = procs.find_binary("consul", cfg.home)
    if binary is None:
        raise ServiceError("consul not found in $FLEET_HOME/bin or on PATH (run `fleetctl deps`)")
    data_dir = cfg.home / "consul"
    data_dir.mkdir(parents=True, exist_ok=True)
    server = cfg.clustered and cluster.is_server(cfg, data_dir)
    if cfg.clustered:
        key = gossip.resolve(cfg, data_dir, cluster.join_addresses(cfg))  # before the agent: a clear error
        argv = cluster.agent_argv(cfg, binary, data_dir, server=server) + gossip.agent_args(cfg, key)
    else:
        # Only the HTTP port is public; the raft/serf ports are picked free so a test agent
        # and a developer's fleet can run side by side.
        argv = [
            binary, "agent", "-dev", "-data-dir", str(data_dir), "-node", "ocr-fleet",
            "-disable-host-node-id", "-bind", "127.0.0.1", "-client", "127.0.0.1",
            "-http-port", str(cfg.consul_port), "-dns-port", "-1", "-grpc-port", "-1",
            "-serf-wan-port", "-1", "-serf-lan-port", str(procs.free_port()),
            "-server-port", str(procs.free_port()), "-log-level", "warn",
        ]
    pid = procs.spawn(
        argv, log_path=_log_file(cfg, "consul"), pid_path=_pid_file(cfg, "consul")
    )
    # A joining agent is ready once it knows the cluster's leader, a server once it also votes.
    _wait_alive_and_ready(cfg, "consul", pid, lambda: _consul_ready(cfg) and (not server or cluster.is_voter(cfg)),
                          timeout=60 if cfg.join else 30)
    return pid


def _start_redis(cfg: FleetConfig) -> int:
    binary = procs.find_binary("redis-server", cfg.home)
    if binary is None:
        raise ServiceError("redis-server not found (run `fleetctl deps`)")
    (cfg.home / "redis").mkdir(parents=True, exist_ok=True)
    argv = [
        binary, "--port", str(cfg.redis_port), "--bind", cfg.gateway_host, "--save", "",
        "--appendonly", "no", "--daemonize", "no", "--dir", str(cfg.home / "redis"),
        "--maxmemory", REDIS_MAXMEMORY, "--maxmemory-policy", "allkeys-lru",
        # Keep argv visible: it is how we recognise our own redis later.
        "--set-proc-title", "no",
    ]
    pid = procs.spawn(argv, log_path=_log_file(cfg, "redis"), pid_path=_pid_file(cfg, "redis"))
    _wait_alive_and_ready(cfg, "redis", pid, lambda: _redis_ready(cfg), timeout=15)
    return pid


def _start_sync(cfg: FleetConfig) -> int:
    pid = procs.spawn(
        SYNC_ARGV, log_path=_log_file(cfg, "sync"), pid_path=_pid_file(cfg, "sync"),
        env=fleet_env(cfg)
    )
    _wait_alive_and_ready(cfg, "sync", pid, lambda: _sync_ready(cfg, pid), timeout=30)
    return pid


def _wait_alive_and_ready(
    cfg: FleetConfig, name: str, pid: int, ready: Callable[[], bool], timeout: float
) -> None:
    """Poll readiness, failing fast (with the log) if the process dies first."""
    parts, env = _signature(cfg, name)

    def check() -> bool:
        if not procs.process_matches(pid, parts, env):
            raise ServiceError(f"{name} exited during start-up:\n{procs.log_tail(_log_file(cfg, name))}")
        return bool(ready())

    try:
        procs.wait_for(check, timeout=timeout, what=f"{name} to become ready", fatal=(ServiceError,))
    except procs.ProcessError as exc:
        procs.stop_process(pid, grace=5)
        tail = procs.log_tail(_log_file(cfg, name))
        raise ServiceError(f"{exc}; last lines of {_log_file(cfg, name)}:\n{tail}") from None


def _ensure_nginx(cfg: FleetConfig) -> tuple[int, bool]:
    """Write nginx.conf (and a first upstream.conf), validate, then start or reload on change."""
    gateway.make_dirs(cfg)
    conf = gateway.nginx_conf_path(cfg)
    new = gateway.render_nginx_conf(cfg)
    old = conf.read_text(encoding="utf-8") if conf.is_file() else None
    if not gateway.upstream_conf_path(cfg).is_file():
        # nginx.conf includes it; the placeholder answers JSON 503 until sync fills it in.
        procs.write_atomic(gateway.upstream_conf_path(cfg), upstream.render_upstream([], cfg))
    reloader = NginxReloader(cfg)
    clients_changed = _write_clients(cfg)
    if new != old:
        try:
            gateway.install_validated(conf, new, old, reloader)
        except GatewayError as exc:
            raise ServiceError(f"rendered nginx.conf is invalid, kept the previous one: {exc}") from None
    elif clients_changed:
        reloader.validate()
    pid = gateway.master_pid(cfg)
    if pid is not None:
        if new != old or clients_changed:
            reloader.reload()
        return pid, False
    try:
        return gateway.start_nginx(cfg), True
    except GatewayError as exc:
        raise ServiceError(str(exc)) from None


def _write_clients(cfg: FleetConfig) -> bool:
    """clients.conf (keys and rate limits) as nginx.conf now expects it; the sync loop keeps it current."""
    from fleetctl import access

    client = consul_api.client_for(cfg, timeout=2.0)
    try:
        new = access.render_clients(cfg, access.current_keys(cfg, client))
    finally:
        consul_api.close(client)
    path = access.clients_conf_path(cfg)
    if path.is_file() and path.read_text(encoding="utf-8") == new:
        return False
    procs.write_atomic(path, new)
    return True


# Settings the sync loop renders from: a loop started with other values is replaced, not kept.
SYNC_SETTINGS = ("FLEET_AUTH", "FLEET_RATE", "FLEET_RATE_BURST")


def _stale_sync(cfg: FleetConfig) -> bool:
    """True when our sync loop runs with other front-door settings than `cfg` (stopped here, then restarted)."""
    pid = _live(cfg, "sync")
    if pid is None:
        return False
    env = fleet_env(cfg)
    try:
        running = psutil.Process(pid).environ()
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False
    if all(running.get(name) == env.get(name) for name in SYNC_SETTINGS):
        return False
    procs.stop_process(pid, grace=10)
    return True


def _refuse_address_change(cfg: FleetConfig) -> None:
    """Our running agent listens where it was started; switching between one machine and cluster
    mode (or to another address) under running instances would strand them, so ask for `down` first."""
    pid = _live(cfg, "consul") if cfg.managed_consul else None
    if pid is None:
        return
    try:
        argv = psutil.Process(pid).cmdline()
    except psutil.Error:
        return
    bound = argv[argv.index("-bind") + 1] if "-bind" in argv[:-1] else cfg.gateway_host
    if bound != cfg.gateway_host:
        raise ServiceError(
            f"the fleet in {cfg.home} runs on {bound}, not {cfg.gateway_host} (FLEET_ADVERTISE): "
            f"run `fleetctl down` first, then `fleetctl up` again"
        )


# --- public API --------------------------------------------------------------------------------

def ensure_services(cfg: FleetConfig) -> dict[str, ServiceState]:
    """Start whatever managed service is not running and wait until each is ready; idempotent."""
    for d in (cfg.run_dir, cfg.log_dir):
        d.mkdir(parents=True, exist_ok=True)
    started: dict[str, bool] = {}
    with _lock(cfg):
        _refuse_address_change(cfg)
        if cfg.managed_consul:
            started["consul"] = _live(cfg, "consul") is None
            if started["consul"]:
                _start_consul(cfg)
        if cfg.managed_redis:
            started["redis"] = _live(cfg, "redis") is None
            if started["redis"]:
                _start_redis(cfg)
        started["nginx"] = _ensure_nginx(cfg)[1]
        _stale_sync(cfg)
        started["sync"] = _live(cfg, "sync") is None
        if started["sync"]:
            _start_sync(cfg)
    states = service_states(cfg)
    for name, was_started in started.items():
        states[name].started = was_started
    return states


def service_states(cfg: FleetConfig) -> dict[str, ServiceState]:
    """Each service as the runtime sees it now: alive-and-ours for managed, reachable for external."""
    states: dict[str, ServiceState] = {}
    consul_pid = _live(cfg, "consul") if cfg.managed_consul else None
    states["consul"] = ServiceState(
        "consul", cfg.managed_consul,
        running=(consul_pid is not None or not cfg.managed_consul) and _consul_ready(cfg),
        pid=consul_pid, address=cfg.consul_address,
        log=str(_log_file(cfg, "consul")) if cfg.managed_consul else None,
    )
    redis_pid = _live(cfg, "redis") if cfg.managed_redis else None
    states["redis"] = ServiceState(
        "redis", cfg.managed_redis,
        running=(redis_pid is not None or not cfg.managed_redis) and _redis_ready(cfg),
        pid=redis_pid, address=cfg.redis_address,
        log=str(_log_file(cfg, "redis")) if cfg.managed_redis else None,
    )
    nginx_pid = gateway.master_pid(cfg)
    states["nginx"] = ServiceState(
        "nginx", True, running=nginx_pid is not None, pid=nginx_pid, address=cfg.gateway_url,
        log=str(gateway.error_log_path(cfg)),
        detail={"access_log": str(gateway.access_log_path(cfg)), "config": str(gateway.nginx_conf_path(cfg)),
                **gateway.front_door_state(cfg)},
    )
    sync_pid = _live(cfg, "sync")
    state = upstream.read_state(cfg)
    states["sync"] = ServiceState(
        "sync", True, running=sync_pid is not None, pid=sync_pid, address=cfg.consul_address,
        log=str(_log_file(cfg, "sync")),
        detail={
            "reloads": int(state.get("reloads", 0)),
            "last_reload": state.get("last_reload"),
            "last_error": state.get("last_error"),
            "consul_ok": state.get("consul_ok"),
            "backends": sorted(upstream.upstream_members(cfg)),
        },
    )
    auto = autoscaler_state(cfg)
    if auto is not None:
        states["autoscale"] = auto
    return states


# --- the managed autoscaler (`up --autoscale MIN:MAX`) -----------------------------------------

def _autoscale_argv(backend: str, lo: int, hi: int) -> list[str]:
    return [*AUTOSCALE_ARGV, "--min", str(lo), "--max", str(hi), "--backend", backend]


def ensure_autoscaler(cfg: FleetConfig, backend: str, lo: int, hi: int) -> int:
    """Start the autoscaler daemon, or restart it when its bounds or FLEET_AUTOSCALE_* changed."""
    from fleetctl import autoscale

    argv = _autoscale_argv(backend, lo, hi)
    env = fleet_env(cfg)
    own = {k: v for k, v in env.items() if k.startswith("FLEET_AUTOSCALE_")}
    with _lock(cfg):
        pid = _live(cfg, "autoscale")
        if pid is not None:
            if procs.process_matches(pid, (" ".join(argv[3:]),), own):
                return pid
            procs.stop_process(pid, grace=AUTOSCALE_STOP_GRACE_S)
        pid = procs.spawn(argv, log_path=_log_file(cfg, "autoscale"), pid_path=_pid_file(cfg, "autoscale"),
                          env=env)
        _wait_alive_and_ready(cfg, "autoscale", pid, lambda: autoscale.read_state(cfg).get("pid") == pid,
                              timeout=30)
    return pid


def stop_autoscaler(cfg: FleetConfig) -> bool:
    """Stop the managed autoscaler (first in `down`, so it cannot start instances being stopped)."""
    from fleetctl import autoscale

    pids = set(_sweep(cfg, "autoscale"))
    live = _live(cfg, "autoscale")
    if live is not None:
        pids.add(live)
    for pid in sorted(pids):
        procs.stop_process(pid, grace=AUTOSCALE_STOP_GRACE_S)
    _pid_file(cfg, "autoscale").unlink(missing_ok=True)
    autoscale.state_path(cfg).unlink(missing_ok=True)
    return bool(pids)


def autoscaler_state(cfg: FleetConfig) -> ServiceState | None:
    """The autoscaler's row for `status` (managed or in a foreground shell): bounds, target, last decision."""
    from fleetctl import autoscale

    state = autoscale.read_state(cfg)
    if not state:
        return None
    pid = state.get("pid")
    running = isinstance(pid, int) and procs.process_matches(pid, ("fleetctl", "autoscale"))
    decision = state.get("last_decision") or {}
    change = state.get("last_change") or {}
    return ServiceState(
        "autoscale", True, running=running, pid=pid if running else None, address=state.get("backend", ""),
        log=str(_log_file(cfg, "autoscale")),
        detail={"min": state.get("min"), "max": state.get("max"), "target": state.get("target"),
                "current": state.get("current"), "load": state.get("load"), "cpu": state.get("cpu"),
                "last_decision": decision.get("line"), "last_decision_time": state.get("time"),
                "last_change": change.get("line"),
                "last_change_time": change.get("time"), "last_change_error": change.get("error")},
    )


def stop_services(cfg: FleetConfig, *, grace: float = 10.0) -> None:
    """Stop sync, nginx, redis and consul (managed ones only), leaving no process of ours behind."""
    stop_autoscaler(cfg)
    names = ["sync", "nginx"]
    names += ["redis"] if cfg.managed_redis else []
    names += ["consul"] if cfg.managed_consul else []
    with _lock(cfg):
        for name in names:
            pids = set(_sweep(cfg, name))
            live = _live(cfg, name)
            if live is not None:
                pids.add(live)
            # nginx: SIGQUIT is a graceful shutdown that lets in-flight requests finish.
            sig = signal.SIGQUIT if name == "nginx" else signal.SIGTERM
            for pid in sorted(pids):
                procs.stop_process(pid, sig=sig, grace=grace)
            _pid_file(cfg, name).unlink(missing_ok=True)
