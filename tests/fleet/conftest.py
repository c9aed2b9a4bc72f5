"""Gateway fixtures: a restartable real Consul agent, a real nginx and tiny real HTTP backends.

Names are prefixed (gw_*) so they never shadow the suite-wide fixtures in tests/conftest.py.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from gw_servers import ConsulAgent, EchoServer, Gateway, stop_nginx
from helpers import consul_binary, free_port

from fleetctl import procs
from fleetctl.config import FleetConfig
from fleetctl.gateway import access, upstream
from fleetctl.gateway import nginx as gateway


@pytest.fixture
def gw_cfg(tmp_path: Path) -> FleetConfig:
    """A fleet home in tmp_path with every port free, and the consul binary in $FLEET_HOME/bin."""
    home = tmp_path / "fleet"
    (home / "bin").mkdir(parents=True)
    (home / "bin" / "consul").symlink_to(consul_binary())
    return FleetConfig(home=home, gateway_port=free_port(), consul_port=free_port(), redis_port=free_port())


@pytest.fixture
def gw_consul(gw_cfg: FleetConfig, tmp_path: Path) -> Iterator[ConsulAgent]:
    agent = ConsulAgent(tmp_path / "consul-test", gw_cfg.consul_port)
    agent.start()
    yield agent
    agent.stop()
    agent.close()


@pytest.fixture
def gw_nginx(gw_cfg: FleetConfig) -> Iterator[int]:
    """Our nginx running with the placeholder upstream; yields the master pid."""
    gateway.make_dirs(gw_cfg)
    procs.write_atomic(gateway.nginx_conf_path(gw_cfg), gateway.render_nginx_conf(gw_cfg))
    procs.write_atomic(gateway.upstream_conf_path(gw_cfg), upstream.render_upstream([], gw_cfg))
    procs.write_atomic(access.clients_conf_path(gw_cfg), access.render_clients(gw_cfg, []))
    pid = gateway.start_nginx(gw_cfg)
    yield pid
    stop_nginx(gw_cfg)


@pytest.fixture
def gw_backends() -> Iterator[Callable[[], EchoServer]]:
    """A factory of backends, all closed at the end of the test."""
    made: list[EchoServer] = []

    def make() -> EchoServer:
        made.append(EchoServer())
        return made[-1]

    yield make
    for b in made:
        b.close()


@pytest.fixture
def start_gateway(gw_consul: ConsulAgent, gw_backends: Callable[[], EchoServer]) -> Iterator[
        Callable[[FleetConfig], Gateway]]:
    """Gateways in front of one registered echo backend; all stopped at the end."""
    gw_consul.register(gw_backends())
    made: list[Gateway] = []

    def start(cfg: FleetConfig) -> Gateway:
        made.append(Gateway(cfg, gw_consul))
        return made[-1]

    yield start
    for g in made:
        g.close()
