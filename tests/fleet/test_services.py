"""Managed services for real: Consul dev agent, Redis, nginx and the `fleetctl sync` daemon."""
from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest
import redis
import requests
from gw_servers import ConsulAgent, EchoServer
from helpers import free_port, pid_alive, start_redis, wait_for

from fleetctl import procs
from fleetctl.config import FleetConfig
from fleetctl.daemons import services
from fleetctl.gateway import nginx as gateway
from fleetctl.gateway import upstream


def _ours(home: Path) -> list[psutil.Process]:
    """Every process that mentions this fleet home in its command line or FLEET_HOME."""
    found = []
    for proc in psutil.process_iter(["pid", "cmdline", "status"]):
        if proc.pid == os.getpid() or proc.info["status"] == psutil.STATUS_ZOMBIE:
            continue
        try:
            if str(home) in " ".join(proc.info["cmdline"] or ()) or proc.environ().get("FLEET_HOME") == str(home):
                found.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return found



@pytest.fixture
def managed(gw_cfg: FleetConfig) -> Iterator[FleetConfig]:
    """A config whose services are all managed; stop_services runs even if the test fails."""
    yield gw_cfg
    services.stop_services(gw_cfg, grace=5)


def test_ensure_is_idempotent_serves_and_stop_leaves_nothing(
    managed: FleetConfig, gw_backends: Callable[[], EchoServer]
) -> None:
    cfg = managed
    first = services.ensure_services(cfg)
    assert set(first) == {"consul", "redis", "nginx", "sync"}
    for name, state in first.items():
        assert state.running and state.managed and state.started and state.pid, name
    assert redis.Redis(port=cfg.redis_port).ping()  # one machine: no password, and no Consul ACLs (below)
    made = {p.name for p in cfg.home.iterdir()}
    assert not made & {"consul.token", "consul-acl.json", "redis.pass", "redis.conf", "gossip.key"}, made
    resp = requests.get(f"{cfg.gateway_url}/api/ocr", timeout=5)
    assert resp.status_code == 503 and resp.json()["code"] == 50301  # empty registry, JSON 503

    again = services.ensure_services(cfg)
    for name, state in again.items():
        assert state.running and not state.started, name
        assert state.pid == first[name].pid, f"{name} was restarted"
    # Cluster mode on a running single-machine fleet: refused before anything changes.
    with pytest.raises(services.ServiceError, match="fleetctl down"):
        services.ensure_services(dataclasses.replace(cfg, advertise="127.0.0.2"))

    # The daemon follows the managed agent: a registered instance becomes reachable.
    echo = gw_backends()
    agent = ConsulAgent(cfg.home / "unused", cfg.consul_port)
    try:
        agent.register(echo)
    finally:
        agent.close()
    wait_for(lambda: upstream.read_state(cfg).get("backends") == [echo.address], 15, "sync to add the echo")
    assert requests.get(f"{cfg.gateway_url}/api/ocr", timeout=5).json()["port"] == echo.port
    status = services.service_states(cfg)["sync"].to_dict()
    assert status["running"] and status["reloads"] == 1 and status["backends"] == [echo.address]

    nginx_workers = [c.pid for c in psutil.Process(first["nginx"].pid or 0).children()]
    services.stop_services(cfg, grace=5)
    assert _ours(cfg.home) == []
    assert not any(pid_alive(pid) for pid in [*nginx_workers, *(s.pid or 0 for s in first.values())])
    assert not list(cfg.run_dir.glob("*.pid"))
    assert not any(s.running for s in services.service_states(cfg).values())
    assert "sync loop stopped" in (cfg.log_dir / "sync.log").read_text()  # SIGTERM handled, clean exit


def test_external_consul_and_redis_are_used_not_started(
    gw_cfg: FleetConfig, gw_consul: ConsulAgent, tmp_path: Path
) -> None:
    ext_redis = start_redis(tmp_path / "ext-redis")
    cfg = dataclasses.replace(gw_cfg, consul_addr=gw_consul.addr, redis_url=str(ext_redis.extra["url"]),
                              consul_port=free_port(), redis_port=free_port())
    try:
        states = services.ensure_services(cfg)
        assert not states["consul"].managed and states["consul"].running and states["consul"].pid is None
        assert not states["redis"].managed and states["redis"].running
        assert states["redis"].address == ext_redis.extra["url"]
        assert states["nginx"].running and states["sync"].running
        assert not (cfg.run_dir / "consul.pid").exists() and not (cfg.run_dir / "redis.pid").exists()
        services.stop_services(cfg, grace=5)
        assert ext_redis.alive() and gw_consul.proc is not None and gw_consul.proc.alive()
        assert _ours(cfg.home) == []
    finally:
        services.stop_services(cfg, grace=5)
        ext_redis.stop()

    # An unreachable external service is reported, not started.
    down = dataclasses.replace(cfg, redis_url=f"redis://127.0.0.1:{free_port()}/0")
    assert services.service_states(down)["redis"].running is False


def test_a_stale_pid_file_is_not_trusted(managed: FleetConfig) -> None:
    cfg = managed
    cfg.run_dir.mkdir(parents=True)
    # A live process that is not our redis (this test) and a dead pid.
    (cfg.run_dir / "redis.pid").write_text(f"{os.getpid()}\n")
    (cfg.run_dir / "consul.pid").write_text("999999999\n")
    states = services.service_states(cfg)
    assert not states["redis"].running and states["redis"].pid is None
    assert not states["consul"].running
    started = services.ensure_services(cfg)
    assert started["redis"].started and started["redis"].pid != os.getpid()
    assert started["consul"].started


def test_nginx_config_change_is_applied_by_reload(managed: FleetConfig) -> None:
    cfg = managed
    first = services.ensure_services(cfg)
    bigger = dataclasses.replace(cfg, max_upload_mb=cfg.max_upload_mb + 5.5)  # fractional, like the app's
    again = services.ensure_services(bigger)
    assert again["nginx"].pid == first["nginx"].pid and not again["nginx"].started
    assert "client_max_body_size 26112k;" in gateway.nginx_conf_path(cfg).read_text()
    limit = int(bigger.max_upload_mb * 1024 * 1024)
    resp = requests.post(f"{cfg.gateway_url}/x", data=b"x" * (limit + 1), timeout=10)
    assert resp.status_code == 413 and "25.5 MB limit (OCR_MAX_UPLOAD_MB)" in resp.json()["msg"]


def test_a_daemon_looked_at_the_moment_it_is_spawned_is_not_taken_for_dead(tmp_path: Path) -> None:
    """posix_spawn returns while the kernel still sets up the new program, and /proc/PID/cmdline reads
    empty until it has: on a busy 2-core machine a few starts in a hundred were looked at then, and
    `up` failed with "redis exited during start-up" and an empty log. That first look is "not yet";
    a process that did exit is still told apart."""
    argv, parts = ["/bin/sleep", "61"], ("sleep", "61")
    pids: list[int] = []
    try:
        for _ in range(100):
            pid = procs.spawn(argv, log_path=tmp_path / "sleep.log", pid_path=tmp_path / "sleep.pid")
            pids.append(pid)
            assert procs.process_matches(pid, parts) or procs.exec_pending(pid)
            wait_for(lambda: procs.process_matches(pid, parts), 10, "its command line")  # noqa: B023
            assert not procs.exec_pending(pid)
    finally:
        for pid in pids:
            procs.stop_process(pid, grace=1)
    gone = procs.spawn(["/bin/false"], log_path=tmp_path / "false.log", pid_path=tmp_path / "false.pid")
    wait_for(lambda: psutil.Process(gone).status() == psutil.STATUS_ZOMBIE, 10, "it to exit")
    assert not procs.exec_pending(gone)
    os.waitpid(gone, 0)
    assert not procs.exec_pending(gone)
