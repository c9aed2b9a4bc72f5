"""Backends against the real runtime: gunicorn process groups found from pid files and the process table.

Instances here run without Consul and Redis (both disabled by empty OCR_* values) so only the
backend is under test; the full fleet is in test_fleet_integration.py.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
import requests
from helpers import free_port, wait_for

from fleetctl.backends import make_backend
from fleetctl.backends.docker import fleet_label, parse_docker_time
from fleetctl.backends.environment import config_hash, instance_env
from fleetctl.backends.process import SIDECAR_KIND, ProcessBackend
from fleetctl.backends.types import InstanceInfo, InstanceSpec
from fleetctl.config import FleetConfig
from fleetctl.fleet.metrics_scrape import fetch
from fleetctl.fleet.orchestrate import busy_ports, port_free
from fleetctl.procs import group_members


def healthy(port: int) -> bool:
    try:
        return requests.get(f"http://127.0.0.1:{port}/health", timeout=1).ok
    except requests.RequestException:
        return False


@pytest.fixture
def cfg(tmp_path: Path) -> FleetConfig:
    return FleetConfig(home=tmp_path / "home", base_port=free_port())


def spec_for(cfg: FleetConfig, port: int, iid: str | None = None) -> InstanceSpec:
    iid = iid or f"ocr-{port}"
    env = instance_env(cfg, iid, port)
    # Only the backend is under test: no registry, no cache, no warm-up, fast drain.
    env.update(OCR_CONSUL_ADDR="", OCR_REDIS_URL="", OCR_WARMUP="0", OCR_DRAIN_SECONDS="0")
    return InstanceSpec(id=iid, port=port, config_hash=config_hash(cfg, "process"), env=env)


@pytest.fixture
def backend(cfg: FleetConfig) -> Iterator[ProcessBackend]:
    b = ProcessBackend(cfg)
    yield b
    for info in b.instances():
        b.stop(info, grace=5)
    b.stop_orphans(5, lambda _msg: None)


@pytest.fixture
def running(backend: ProcessBackend, cfg: FleetConfig) -> InstanceInfo:
    port = free_port()
    info = backend.start(spec_for(cfg, port))
    wait_for(lambda: healthy(port), 60, f"instance on {port} to answer /health")
    return info


def test_start_list_and_inspect_a_real_instance(backend: ProcessBackend, running: InstanceInfo,
                                                 cfg: FleetConfig) -> None:
    [found] = backend.instances()
    assert (found.id, found.port, found.pid) == (running.id, running.port, running.pid)
    assert found.config_hash == config_hash(cfg, "process")
    assert found.backend == "process" and found.address == f"127.0.0.1:{running.port}"
    assert abs(found.started_at - time.time()) < 120
    assert backend.is_alive(found)
    assert running.pid is not None
    assert os.getpgid(running.pid) == running.pid  # its own process group
    members = group_members(running.pid)
    assert len(members) >= 2  # gunicorn master and its worker
    rss = backend.rss_bytes(found)
    assert rss is not None and rss >= sum(p.memory_info().rss for p in members) * 0.9
    log = "\n".join(backend.log_readers()[found.id].read_new())  # a fresh reader: from the start
    assert "Listening at" in log or "Booting worker" in log
    assert "Listening at" in backend.log_tail(found) or "Booting worker" in backend.log_tail(found)
    metrics = fetch(found.address)
    assert metrics is not None and metrics.requests == 0 and metrics.inflight == 0


def test_instance_gets_the_fleet_environment(backend: ProcessBackend, running: InstanceInfo,
                                             cfg: FleetConfig) -> None:
    assert running.pid is not None
    env = psutil.Process(running.pid).environ()
    assert env["OCR_INSTANCE_ID"] == running.id
    assert env["OCR_PORT"] == str(running.port)
    assert env["OCR_RUNTIME_DIR"] == str(cfg.run_dir / running.id)
    assert env["OCR_WORKERS"] == "1" and env["OCR_THREADS"] == "1"
    resp = requests.get(f"http://{running.address}/health", timeout=2)
    assert resp.ok


def test_stop_takes_down_the_whole_group_and_keeps_the_log(backend: ProcessBackend, running: InstanceInfo,
                                                           cfg: FleetConfig) -> None:
    assert running.pid is not None
    pids = [p.pid for p in group_members(running.pid)]
    backend.stop(running, grace=10)
    assert group_members(running.pid) == []
    assert not any(psutil.pid_exists(p) and psutil.Process(p).status() != "zombie" for p in pids)
    assert backend.instances() == []
    assert not (cfg.run_dir / f"{running.id}.pid").exists()
    assert not (cfg.run_dir / f"{running.id}.json").exists()
    assert backend.log_file(running.id).exists()
    assert running.id in backend.log_readers()  # a stopped instance's log is still a source
    assert not backend.is_alive(running)


def test_sigkilled_instance_is_dropped_and_its_files_cleaned(backend: ProcessBackend, running: InstanceInfo,
                                                             cfg: FleetConfig) -> None:
    assert running.pid is not None
    os.killpg(running.pid, signal.SIGKILL)
    wait_for(lambda: backend.instances() == [], 10, "the killed instance to disappear from instances()")
    assert not (cfg.run_dir / f"{running.id}.pid").exists()


def test_lost_pid_file_leaves_an_orphan_that_down_can_find(backend: ProcessBackend, running: InstanceInfo,
                                                           cfg: FleetConfig) -> None:
    (cfg.run_dir / f"{running.id}.pid").unlink()
    assert backend.instances() == []
    assert backend.orphans() == [running.pid]
    assert running.pid is not None
    assert backend.stop_orphans(10, lambda _message: None) == 1
    assert group_members(running.pid) == []
    assert backend.orphans() == []


def _sidecar(cfg: FleetConfig, iid: str, port: int) -> None:
    cfg.run_dir.mkdir(parents=True, exist_ok=True)
    (cfg.run_dir / f"{iid}.json").write_text(json.dumps({"kind": SIDECAR_KIND, "id": iid, "port": port}))


def test_stale_pid_file_of_a_dead_process_is_cleaned(backend: ProcessBackend, cfg: FleetConfig) -> None:
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True)
    _sidecar(cfg, "ocr-9", 9)
    (cfg.run_dir / "ocr-9.pid").write_text(proc.stdout)
    assert backend.instances() == []
    assert not (cfg.run_dir / "ocr-9.pid").exists() and not (cfg.run_dir / "ocr-9.json").exists()


def test_reused_pid_is_not_taken_for_an_instance(backend: ProcessBackend, cfg: FleetConfig) -> None:
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        _sidecar(cfg, "ocr-10", 10)
        (cfg.run_dir / "ocr-10.pid").write_text(f"{sleeper.pid}\n")
        assert backend.instances() == []
        assert sleeper.poll() is None  # not ours, so never signalled
    finally:
        sleeper.kill()
        sleeper.wait()


def test_service_pid_files_in_run_dir_are_left_alone(backend: ProcessBackend, cfg: FleetConfig) -> None:
    cfg.run_dir.mkdir(parents=True)
    (cfg.run_dir / "consul.pid").write_text("1\n")
    (cfg.run_dir / "sync.pid").write_text("999999\n")
    assert backend.instances() == []
    assert (cfg.run_dir / "consul.pid").exists() and (cfg.run_dir / "sync.pid").exists()


def test_second_start_of_the_same_id_is_refused(backend: ProcessBackend, running: InstanceInfo,
                                                cfg: FleetConfig) -> None:
    from fleetctl.backends.types import InstanceFailed

    with pytest.raises(InstanceFailed, match="already running"):
        backend.start(spec_for(cfg, running.port, running.id))


def test_config_hash_tracks_instance_shaping_settings() -> None:
    cfg = FleetConfig()
    h = config_hash(cfg, "process")
    assert h == config_hash(FleetConfig(), "process")
    assert h != config_hash(cfg.replace(workers=2), "process")
    assert h != config_hash(cfg.replace(threads=2), "process")
    assert h == config_hash(cfg.replace(gateway_port=9999, base_port=9000), "process")  # not per instance
    assert h == config_hash(cfg.replace(image="other:tag"), "process")  # image only matters to docker
    assert config_hash(cfg, "docker") != config_hash(cfg.replace(image="other:tag"), "docker")


def test_instance_env_follows_the_contract() -> None:
    cfg = FleetConfig(consul_port=18500, redis_port=16379)
    env = instance_env(cfg, "ocr-8005", 8005)
    assert env["OCR_HOST"] == "127.0.0.1" and env["OCR_PORT"] == "8005"
    assert env["OCR_INSTANCE_ID"] == "ocr-8005"
    assert env["OCR_CONSUL_ADDR"] == "127.0.0.1:18500"
    assert env["OCR_REDIS_URL"] == "redis://127.0.0.1:16379/0"
    assert "OCR_RUNTIME_DIR" not in env  # each backend picks its own (the process backend under run/)


def test_port_probe_sees_a_listener() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = int(sock.getsockname()[1])
        assert not port_free(port)
        assert busy_ports(port, 1, own=()) == {port}
        assert busy_ports(port, 1, own=(port,)) == set()


def test_docker_time_parsing_and_fleet_label(tmp_path: Path) -> None:
    assert parse_docker_time("2024-03-01T12:00:00.123456789Z") == pytest.approx(1709294400.123456)
    assert parse_docker_time("0001-01-01T00:00:00Z") == 0.0
    assert parse_docker_time("") == 0.0
    a, b = FleetConfig(home=tmp_path / "a"), FleetConfig(home=tmp_path / "b")
    assert fleet_label(a) != fleet_label(b) and fleet_label(a) == fleet_label(FleetConfig(home=tmp_path / "a"))


def test_unknown_backend_name_is_a_fleet_error(cfg: FleetConfig) -> None:
    from fleetctl.backends.types import BackendUnavailable

    with pytest.raises(BackendUnavailable, match="unknown backend"):
        make_backend("kubernetes", cfg)


def test_a_new_artifact_is_drift() -> None:
    """A rebuilt image or updated code changes the config hash, so the planner replaces instances."""
    from fleetctl.backends.environment import config_hash
    from fleetctl.backends.process import source_hash
    from fleetctl.config import FleetConfig

    cfg = FleetConfig()
    assert config_hash(cfg, "docker", "sha256:aaa") != config_hash(cfg, "docker", "sha256:bbb")
    assert config_hash(cfg, "process", source_hash()) == config_hash(cfg, "process", source_hash())
    assert len(source_hash()) == 12
