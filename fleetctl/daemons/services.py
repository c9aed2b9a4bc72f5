"""The fleet's supporting daemons: a Consul agent, Redis, the nginx gateway and the sync loop.

The agent is `-dev` on a single machine, and a real server or client when the host is one of
several (FLEET_ADVERTISE; fleetctl/cluster/agent.py); every service then listens on that address.

Each is found as fleetctl/daemons/pidfiles.py finds our daemons (pid file checked against the live process),
so a stale pid file never passes for a running service.
External Consul/Redis (FLEET_CONSUL_ADDR / FLEET_REDIS_URL) are used as given, never started.
"""
from __future__ import annotations

import signal
import sys

import psutil
import redis

from fleetctl import procs
from fleetctl.cluster import acl, consul_api, gossip, redis_auth
from fleetctl.cluster import agent as cluster
from fleetctl.config import FleetConfig
from fleetctl.daemons import pidfiles as daemons
from fleetctl.daemons.pidfiles import ServiceError, ServiceState
from fleetctl.errors import GatewayError
from fleetctl.gateway import nginx as gateway
from fleetctl.gateway import upstream
from fleetctl.gateway.nginx import NginxReloader

SYNC_ARGV = (sys.executable, "-m", "fleetctl", "sync")
REDIS_MAXMEMORY = "256mb"


# Re-exported: callers catch services.ServiceError and read ServiceState rows.
__all__ = ["ServiceError", "ServiceState", "ensure_services", "service_states", "stop_services"]


# --- readiness probes --------------------------------------------------------------------------

def _consul_ready(cfg: FleetConfig) -> bool:
    client = consul_api.client_for(cfg, timeout=1.0)
    try:
        return consul_api.reachable(client)
    finally:
        consul_api.close(client)


def _redis_ready(cfg: FleetConfig) -> bool:
    client = redis.Redis.from_url(redis_auth.url(cfg), socket_timeout=1.0, socket_connect_timeout=1.0)
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
    if cfg.clustered and cfg.join:
        # First: a join host no agent can join is a clear error now, not a minute of retry log.
        cluster.check_join(cfg, cluster.join_addresses(cfg), data_dir)
    server = cfg.clustered and cluster.is_server(cfg, data_dir)
    acl_on = False
    if cfg.clustered:
        # Before the agent, so a missing token or key is a clear error; the token first, because the
        # join host tells whether it encrypts only to a token it knows.
        join = cluster.join_addresses(cfg)
        token = acl.resolve(cfg, data_dir, join)
        key = gossip.resolve(cfg, data_dir, join)
        acl_on = token is not None
        argv = (cluster.agent_argv(cfg, binary, data_dir, server=server) + gossip.agent_args(cfg, key)
                + acl.agent_args(cfg, token, server=server))
    else:
        acl.agent_args(cfg, None, server=False)  # no ACLs on one machine, whatever a cluster left behind
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
        argv, log_path=daemons.log_file(cfg, "consul"), pid_path=daemons.pid_file(cfg, "consul")
    )
    # A joining agent is ready once it knows the cluster's leader (and takes the fleet's token), a
    # server once it also votes.
    daemons.wait_alive_and_ready(cfg, "consul", pid,
                                 lambda: _consul_ready(cfg) and (not acl_on or acl.ready(cfg))
                                 and (not server or cluster.is_voter(cfg)),
                                 timeout=60 if cfg.join else 30)
    return pid


def start_redis(cfg: FleetConfig) -> int:
    binary = procs.find_binary("redis-server", cfg.home)
    if binary is None:
        raise ServiceError("redis-server not found (run `fleetctl deps`)")
    (cfg.home / "redis").mkdir(parents=True, exist_ok=True)
    argv = [
        # A config file with the password in cluster mode (first, as redis-server wants it), never argv.
        binary, *redis_auth.server_args(cfg),
        "--port", str(cfg.redis_port), "--bind", cfg.gateway_host, "--save", "", "--appendonly", "no",
        "--daemonize", "no", "--dir", str(cfg.home / "redis"),
        "--maxmemory", REDIS_MAXMEMORY, "--maxmemory-policy", "allkeys-lru",
        # Keep argv visible: it is how we recognise our own redis later.
        "--set-proc-title", "no",
    ]
    pid = procs.spawn(argv, log_path=daemons.log_file(cfg, "redis"), pid_path=daemons.pid_file(cfg, "redis"))
    daemons.wait_alive_and_ready(cfg, "redis", pid, lambda: _redis_ready(cfg), timeout=15)
    return pid


def sync_env(cfg: FleetConfig) -> dict[str, str]:
    """The loop only reads: with ACLs its token may read the catalog and the API keys, nothing more
    (fleetctl/cluster/acl.py), and it gets no gossip key."""
    env = daemons.fleet_env(cfg)
    env.pop(gossip.SETTING, None)
    token = acl.role_token(cfg, "gateway")
    if token:
        env[acl.SETTING] = token
    else:
        env.pop(acl.SETTING, None)
    return env


def _start_sync(cfg: FleetConfig) -> int:
    pid = procs.spawn(
        SYNC_ARGV, log_path=daemons.log_file(cfg, "sync"), pid_path=daemons.pid_file(cfg, "sync"),
        env=sync_env(cfg)
    )
    daemons.wait_alive_and_ready(cfg, "sync", pid, lambda: _sync_ready(cfg, pid), timeout=30)
    return pid


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
    from fleetctl.gateway import access

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


# Settings the sync loop renders from (and its token): a loop started with other values is replaced.
SYNC_SETTINGS = ("FLEET_AUTH", "FLEET_RATE", "FLEET_RATE_BURST", acl.SETTING)


def _stale_sync(cfg: FleetConfig) -> bool:
    """True when our sync loop runs with other front-door settings than `cfg` (stopped here, then restarted)."""
    pid = daemons.live(cfg, "sync")
    if pid is None:
        return False
    env = sync_env(cfg)
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
    pid = daemons.live(cfg, "consul") if cfg.managed_consul else None
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
    with daemons.lock(cfg):
        _refuse_address_change(cfg)
        if cfg.managed_consul:
            started["consul"] = daemons.live(cfg, "consul") is None
            if started["consul"]:
                _start_consul(cfg)
            if acl.enabled(cfg):
                acl.ensure_role_tokens(cfg)
        if cfg.managed_redis:
            started["redis"] = daemons.live(cfg, "redis") is None
            if started["redis"]:
                start_redis(cfg)
        started["nginx"] = _ensure_nginx(cfg)[1]
        _stale_sync(cfg)
        started["sync"] = daemons.live(cfg, "sync") is None
        if started["sync"]:
            _start_sync(cfg)
    states = service_states(cfg)
    for name, was_started in started.items():
        states[name].started = was_started
    return states


def _security(cfg: FleetConfig, name: str) -> dict[str, str]:
    """What guards a clustered host's own Consul or Redis on its address ("none": a fleet from before
    ACLs, the gossip key or the password); one machine's listen on loopback only and show nothing."""
    if not cfg.clustered:
        return {}
    if name == "consul" and cfg.managed_consul:
        on = [word for word, yes in (("acl", acl.enabled(cfg)), ("gossip-key", gossip.encrypted(cfg))) if yes]
    elif name == "redis" and cfg.managed_redis:
        on = ["password"] if redis_auth.url(cfg) != cfg.redis_address else []
    else:
        return {}
    return {"security": "+".join(on) or "none"}


def service_states(cfg: FleetConfig) -> dict[str, ServiceState]:
    """Each service as the runtime sees it now: alive-and-ours for managed, reachable for external."""
    states: dict[str, ServiceState] = {}
    consul_pid = daemons.live(cfg, "consul") if cfg.managed_consul else None
    states["consul"] = ServiceState(
        "consul", cfg.managed_consul,
        running=(consul_pid is not None or not cfg.managed_consul) and _consul_ready(cfg),
        pid=consul_pid, address=cfg.consul_address,
        log=str(daemons.log_file(cfg, "consul")) if cfg.managed_consul else None, detail=_security(cfg, "consul"),
    )
    redis_pid = daemons.live(cfg, "redis") if cfg.managed_redis else None
    states["redis"] = ServiceState(
        "redis", cfg.managed_redis,
        running=(redis_pid is not None or not cfg.managed_redis) and _redis_ready(cfg),
        pid=redis_pid, address=redis_auth.redact(cfg.redis_address),
        log=str(daemons.log_file(cfg, "redis")) if cfg.managed_redis else None, detail=_security(cfg, "redis"),
    )
    nginx_pid = gateway.master_pid(cfg)
    states["nginx"] = ServiceState(
        "nginx", True, running=nginx_pid is not None, pid=nginx_pid, address=cfg.gateway_url,
        log=str(gateway.error_log_path(cfg)),
        detail={"access_log": str(gateway.access_log_path(cfg)), "config": str(gateway.nginx_conf_path(cfg)),
                **gateway.front_door_state(cfg)},
    )
    sync_pid = daemons.live(cfg, "sync")
    state = upstream.read_state(cfg)
    states["sync"] = ServiceState(
        "sync", True, running=sync_pid is not None, pid=sync_pid, address=cfg.consul_address,
        log=str(daemons.log_file(cfg, "sync")),
        detail={
            "reloads": int(state.get("reloads", 0)),
            "last_reload": state.get("last_reload"),
            "last_error": state.get("last_error"),
            "consul_ok": state.get("consul_ok"),
            "backends": sorted(upstream.upstream_members(cfg)),
        },
    )
    return states


def stop_services(cfg: FleetConfig, *, grace: float = 10.0) -> None:
    """Stop sync, nginx, redis and consul (managed ones only), leaving no process of ours behind.

    The autoscaler sits above these (autoscale/daemon.py): `down` stops it first."""
    names = ["sync", "nginx"]
    names += ["redis"] if cfg.managed_redis else []
    names += ["consul"] if cfg.managed_consul else []
    with daemons.lock(cfg):
        for name in names:
            # nginx: SIGQUIT is a graceful shutdown that lets in-flight requests finish.
            daemons.stop(cfg, name, sig=signal.SIGQUIT if name == "nginx" else signal.SIGTERM, grace=grace)
