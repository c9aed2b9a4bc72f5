"""Shared fixtures: real Consul, Redis and OCR instances on free loopback ports (no mocks)."""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import Proc, start_consul, start_instance, start_redis


@pytest.fixture(scope="session")
def session_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("servers")


@pytest.fixture(scope="session")
def consul_agent(session_dir: Path) -> Iterator[Proc]:
    proc = start_consul(session_dir / "consul")
    yield proc
    proc.stop()


@pytest.fixture(scope="session")
def redis_server(session_dir: Path) -> Iterator[Proc]:
    proc = start_redis(session_dir / "redis")
    yield proc
    proc.stop()


@pytest.fixture(scope="session")
def instance(session_dir: Path, consul_agent: Proc, redis_server: Proc) -> Iterator[Proc]:
    """One real instance (gunicorn, 2 workers, JSON logs) registered in Consul and caching in Redis."""
    proc = start_instance(session_dir / "instance", consul_addr=str(consul_agent.extra["addr"]),
                          redis_url=str(redis_server.extra["url"]),
                          extra_env={"OCR_WORKERS": "2", "OCR_LOG_FORMAT": "json"})
    yield proc
    proc.stop()
