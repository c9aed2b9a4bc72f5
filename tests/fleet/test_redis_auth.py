"""The managed Redis's password in cluster mode: made once per host, read from a config file, given to
instances in their Redis URL, and never printed; one machine's Redis stays without one."""
from __future__ import annotations

import stat
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
import redis
from helpers import free_port

from fleetctl.backends.environment import instance_env
from fleetctl.cluster import redis_auth
from fleetctl.config import FleetConfig
from fleetctl.daemons import pidfiles as daemons
from fleetctl.daemons import services


def test_one_machine_has_no_password(tmp_path: Path) -> None:
    cfg = FleetConfig(home=tmp_path)
    assert redis_auth.server_args(cfg) == [] and redis_auth.url(cfg) == cfg.redis_address
    assert not redis_auth.password_path(cfg).exists()
    external = FleetConfig(home=tmp_path, advertise="127.0.0.2", redis_url="redis://10.0.0.1:6379/0")
    assert redis_auth.server_args(external) == [] and redis_auth.url(external) == "redis://10.0.0.1:6379/0"


@pytest.mark.parametrize(("given", "shown"), [
    ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
    ("redis://:s3cret@10.0.0.1:6379/0", "redis://:***@10.0.0.1:6379/0"),
    ("redis://user:s3cret@10.0.0.1/0", "redis://user:***@10.0.0.1/0"),
    ("rediss://:p%40ss@host:1/2?x=1", "rediss://:***@host:1/2?x=1"),
])
def test_urls_are_printed_without_their_password(given: str, shown: str) -> None:
    assert redis_auth.redact(given) == shown


@pytest.fixture(scope="module")
def host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FleetConfig]:
    """A cluster host's own Redis, started as `fleetctl up --advertise` starts it."""
    cfg = FleetConfig(home=tmp_path_factory.mktemp("redis-auth"), advertise="127.0.0.2", redis_port=free_port())
    cfg.log_dir.mkdir(parents=True)
    cfg.run_dir.mkdir(parents=True)
    pid = services.start_redis(cfg)
    try:
        yield cfg
    finally:
        daemons.stop(cfg, "redis", grace=5)
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE


def test_a_cluster_hosts_redis_refuses_a_client_without_the_password(host: FleetConfig) -> None:
    password = redis_auth.password_path(host).read_text().strip()
    assert len(password) >= 32
    for path in (redis_auth.password_path(host), redis_auth.conf_path(host)):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    with redis.Redis.from_url(host.redis_address, socket_timeout=2) as anonymous, \
            pytest.raises(redis.AuthenticationError):
        anonymous.set("x", "1")
    with redis.Redis.from_url(redis_auth.url(host), socket_timeout=2) as allowed:
        assert allowed.set("x", "1") and allowed.get("x") == b"1"
    # Instances get it in their environment; the command line and `status` never show it.
    assert instance_env(host, "ocr-1", 1)["OCR_REDIS_URL"] == redis_auth.url(host)
    pid = daemons.live(host, "redis")
    assert pid is not None and password not in " ".join(psutil.Process(pid).cmdline())
    shown = services.service_states(host)["redis"]
    assert shown.running and password not in str(shown.to_dict()) and shown.detail == {"security": "password"}


def test_the_password_is_kept_across_restarts(host: FleetConfig) -> None:
    before = redis_auth.url(host)
    assert redis_auth.server_args(host) == [str(redis_auth.conf_path(host))]
    assert redis_auth.url(host) == before
