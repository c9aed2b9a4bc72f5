"""Cluster mode without a cluster: address checks, the agent's command line per role, saved flags,
and a join refused before any agent starts (against a real single-machine dev agent)."""
from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from click.testing import CliRunner
from helpers import Proc, consul_binary, free_port, start_consul

from fleetctl.cli.main import main
from fleetctl.cluster import agent as cluster
from fleetctl.cluster import consul_api
from fleetctl.config import ConfigError, FleetConfig
from fleetctl.daemons import pidfiles as daemons

HOSTILE_ADDRESSES = ("::1", "fe80::1",
    "", " ", "host1", "0.0.0.0", "::", "224.0.0.1", "10.0.0.300", "10.0.0.1:8301", "10.0.0.1; rm -rf /",
    "$(id)", "10.0.0.1\n-dev", "-dev", "10.0.0.1 -server", "x" * 5000, "10.0.0.1/24", "\x00",
)


def cfg_for(tmp_path: Path, **kw: object) -> FleetConfig:
    return FleetConfig(home=tmp_path / "home", **kw)  # type: ignore[arg-type]


def test_single_machine_is_not_clustered_and_listens_on_loopback(tmp_path: Path) -> None:
    cfg = cfg_for(tmp_path)
    assert not cfg.clustered
    assert cfg.gateway_url == "http://127.0.0.1:8080" and cfg.consul_address == "127.0.0.1:8500"


def test_advertised_host_puts_every_service_on_its_address(tmp_path: Path) -> None:
    cfg = cluster.validate(cfg_for(tmp_path, advertise="10.0.0.2", join="10.0.0.1"))
    assert cfg.clustered
    assert (cfg.gateway_url, cfg.consul_address, cfg.redis_address) == (
        "http://10.0.0.2:8080", "10.0.0.2:8500", "redis://10.0.0.2:6379/0")


@pytest.mark.parametrize("bad", [a for a in HOSTILE_ADDRESSES if a.strip()])
def test_hostile_advertise_names_the_setting(tmp_path: Path, bad: str) -> None:
    with pytest.raises(ConfigError, match="FLEET_ADVERTISE"):
        cluster.validate(cfg_for(tmp_path, advertise=bad))


@pytest.mark.parametrize("bad", [a for a in HOSTILE_ADDRESSES if a.strip()])
def test_hostile_join_names_the_setting(tmp_path: Path, bad: str) -> None:
    with pytest.raises(ConfigError, match="FLEET_JOIN"):
        cluster.validate(cfg_for(tmp_path, advertise="10.0.0.2", join=f"10.0.0.1,{bad}"))


def test_join_list_is_bounded_and_deduplicated(tmp_path: Path) -> None:
    cfg = cluster.validate(cfg_for(tmp_path, advertise="10.0.0.9", join=" 10.0.0.1 ,,10.0.0.1, 10.0.0.2"))
    assert cfg.join == "10.0.0.1,10.0.0.2"
    with pytest.raises(ConfigError, match="at most 16"):
        cluster.validate(cfg_for(tmp_path, advertise="10.0.0.9", join=",".join(["10.0.0.1"] * 10000)))


def test_join_needs_advertise_and_never_names_itself(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="needs FLEET_ADVERTISE"):
        cluster.validate(cfg_for(tmp_path, join="10.0.0.1"))
    with pytest.raises(ConfigError, match="names this host itself"):
        cluster.validate(cfg_for(tmp_path, advertise="10.0.0.1", join="10.0.0.2, 10.0.0.1"))


def test_first_host_bootstraps_a_real_server_not_dev(tmp_path: Path) -> None:
    cfg = cfg_for(tmp_path, advertise="10.0.0.1")
    assert cluster.is_server(cfg, tmp_path / "data")
    argv = cluster.agent_argv(cfg, "consul", tmp_path / "data", server=True)
    assert "-dev" not in argv and "-retry-join" not in argv
    assert argv[argv.index("-bootstrap-expect") + 1] == "1"
    for flag in ("-bind", "-advertise", "-client"):
        assert argv[argv.index(flag) + 1] == "10.0.0.1"
    assert argv[argv.index("-serf-lan-port") + 1] == "8301" and argv[argv.index("-server-port") + 1] == "8300"


def test_joining_server_never_bootstraps_and_a_client_is_no_server(tmp_path: Path) -> None:
    cfg = cfg_for(tmp_path, advertise="10.0.0.3", join="10.0.0.1,10.0.0.2", serf_port=7301)
    server = cluster.agent_argv(cfg, "consul", tmp_path, server=True)
    assert "-server" in server and "-bootstrap-expect" not in server
    joins = [server[i + 1] for i, a in enumerate(server) if a == "-retry-join"]
    assert joins == ["10.0.0.1:7301", "10.0.0.2:7301"]
    assert "-server" not in cluster.agent_argv(cfg, "consul", tmp_path, server=False)


def test_role_from_raft_state_or_from_the_cluster(tmp_path: Path) -> None:
    # Nobody answers at the join address: a client (a second bootstrapping server would split the fleet).
    cfg = cfg_for(tmp_path, advertise="127.0.0.2", join="127.0.0.1", consul_port=free_port())
    assert cluster.server_count(cfg, timeout=0.5) is None
    assert not cluster.is_server(cfg, tmp_path / "data")
    (tmp_path / "data" / "raft").mkdir(parents=True)  # it was a server: it stays one
    assert cluster.is_server(cfg, tmp_path / "data")


def test_saved_flags_sit_under_the_environment(tmp_path: Path) -> None:
    cfg = cluster.validate(cfg_for(tmp_path, advertise="10.0.0.2", join="10.0.0.1"))
    cluster.save(cfg)
    plain = cfg_for(tmp_path)
    assert cluster.apply_saved(plain, {}).advertise == "10.0.0.2"
    assert cluster.apply_saved(plain, {"FLEET_JOIN": "x"}).join == ""  # the environment's own value wins
    (tmp_path / "home" / "cluster.json").write_text('{"advertise": "0.0.0.0"}')
    with pytest.raises(ConfigError, match="FLEET_ADVERTISE"):
        cluster.apply_saved(plain, {})
    for junk in ("[1, 2]", "not json", '{"advertise": 5}'):
        (tmp_path / "home" / "cluster.json").write_text(junk)
        assert cluster.apply_saved(plain, {}).advertise == ""


@pytest.mark.parametrize("args", [["--advertise", "nowhere"], ["--advertise", "0.0.0.0"],
                                  ["--join", "10.0.0.1"], ["--advertise", "10.0.0.2", "--join", "10.0.0.2"]])
def test_up_rejects_bad_cluster_flags_before_starting_anything(tmp_path: Path, args: list[str]) -> None:
    env = {"FLEET_HOME": str(tmp_path / "home"), "FLEET_ADVERTISE": "", "FLEET_JOIN": ""}
    result = CliRunner().invoke(main, ["up", "--no-install", *args], env=env)
    assert result.exit_code == 2, result.output
    assert "FLEET_ADVERTISE" in result.output or "FLEET_JOIN" in result.output
    assert not (tmp_path / "home" / "run").exists()


def test_bad_environment_is_a_usage_error(tmp_path: Path) -> None:
    env = {"FLEET_HOME": str(tmp_path / "home"), "FLEET_ADVERTISE": "not-an-ip"}
    result = CliRunner().invoke(main, ["status"], env=env)
    assert result.exit_code == 2 and "FLEET_ADVERTISE" in result.output


class _Health:
    """The catalog's answer for one service id on two hosts (pure data: health_by_id only reads it)."""

    def service(self, _name: str) -> tuple[int, list[dict[str, object]]]:
        return 1, [
            {"Node": {"Node": "fleet-10.0.0.1"}, "Service": {"ID": "ocr-8001"},
             "Checks": [{"CheckID": "serfHealth", "Status": "critical"}]},
            {"Node": {"Node": "fleet-10.0.0.2"}, "Service": {"ID": "ocr-8001"},
             "Checks": [{"CheckID": "service:ocr-8001", "Status": "passing"}]},
        ]


class _Catalog:
    health = _Health()


def test_each_host_reads_its_own_instance_of_a_shared_id(tmp_path: Path) -> None:
    from fleetctl.fleet.status import health_by_id

    second = cfg_for(tmp_path, advertise="10.0.0.2")
    assert health_by_id(_Catalog(), "ocr", cluster.node_name(second)) == {"ocr-8001": "passing"}
    assert cluster.node_name(cfg_for(tmp_path)) is None


# --- a join host that cannot be joined ---------------------------------------------------------

@pytest.fixture(scope="module")
def dev_agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proc]:
    """A real Consul agent as a single-machine fleet runs it: `-dev`, on 127.0.0.1."""
    agent = start_consul(tmp_path_factory.mktemp("dev-agent"))
    yield agent
    agent.stop()


def test_up_join_of_a_single_machine_fleet_fails_at_once_naming_advertise(tmp_path: Path, dev_agent: Proc) -> None:
    """`up --join ADDR` where ADDR runs the default (`-dev`, which no host can join) stops before this
    host's agent starts, with what to do, instead of a minute of Consul's retry log."""
    home = tmp_path / "home"
    (home / "bin").mkdir(parents=True)
    (home / "bin" / "consul").symlink_to(consul_binary())  # --no-install: found, nothing fetched
    env = {"FLEET_HOME": str(home), "FLEET_CONSUL_PORT": str(dev_agent.extra["port"]),
           "FLEET_GATEWAY_PORT": str(free_port()), "FLEET_REDIS_PORT": str(free_port()),
           "FLEET_CONSUL_SERF_PORT": str(free_port()), "FLEET_CONSUL_SERVER_PORT": str(free_port()),
           "FLEET_ADVERTISE": "", "FLEET_JOIN": "", "FLEET_CONSUL_TOKEN": "", "FLEET_CONSUL_ENCRYPT": "",
           "FLEET_CONSUL_ADDR": "", "FLEET_REDIS_URL": ""}
    t0 = time.monotonic()
    result = CliRunner().invoke(main, ["up", "-n", "0", "--no-install", "--advertise", "127.0.0.9",
                                       "--join", "127.0.0.1"], env=env)
    elapsed = time.monotonic() - t0
    assert result.exit_code == 1, result.output
    assert result.output == ("Error: 127.0.0.1 runs the single-machine fleet (a Consul -dev agent on 127.0.0.1), "
                             "which no host can join: start that host with `fleetctl up --advertise 127.0.0.1` "
                             "(after `fleetctl down` there), then join it\n")
    assert elapsed < 10, f"took {elapsed:.1f}s"
    cfg = cfg_for(tmp_path)
    assert daemons.live(cfg, "consul") is None and not (home / "run" / "consul.pid").exists()
    assert not [p for p in psutil.process_iter(["cmdline"]) if str(home) in " ".join(p.info["cmdline"] or ())]


def test_a_join_nobody_answers_fails_unless_the_agent_can_rejoin_from_its_state(tmp_path: Path) -> None:
    cfg, data = cfg_for(tmp_path, advertise="127.0.0.9", join="127.0.0.1", consul_port=free_port()), tmp_path / "c"
    with pytest.raises(ConfigError, match=f"no Consul agent answers at 127.0.0.1:{cfg.consul_port}: start that "
                                          r"host with `fleetctl up --advertise 127.0.0.1` first"):
        cluster.check_join(cfg, ["127.0.0.1"], data)
    (data / "serf").mkdir(parents=True)  # it joined before: its snapshot knows the other hosts
    cluster.check_join(cfg, ["127.0.0.1"], data)


def test_a_dev_agent_is_told_apart_and_a_silent_second_host_does_not_hide_it(tmp_path: Path, dev_agent: Proc) -> None:
    """Refused only when nobody in the join list is joinable: a real agent answering (test_acl, and
    test_multihost's hosts) lets the join go on; here one host is -dev and the other answers nothing."""
    cfg = cfg_for(tmp_path, advertise="127.0.0.9", consul_port=int(str(dev_agent.extra["port"])))
    client = consul_api.client_at("127.0.0.1", cfg.consul_port, "")
    try:
        assert cluster.dev_agent(client) is True
    finally:
        consul_api.close(client)
    with pytest.raises(ConfigError, match="127.0.0.1 runs the single-machine fleet"):
        cluster.check_join(cfg, ["127.0.0.2", "127.0.0.1"], tmp_path / "c")  # nothing listens on .2
