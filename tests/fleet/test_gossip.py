"""Gossip encryption in cluster mode: the key's checks, who makes it, and a join asked of real agents."""
from __future__ import annotations

import base64
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import Proc, start_consul

from fleetctl.cluster import gossip
from fleetctl.config import ConfigError, FleetConfig

KEY = base64.b64encode(bytes(range(32))).decode()
HOSTILE_KEYS = ("", "not base64!", "AAAA", base64.b64encode(b"x" * 31).decode(), base64.b64encode(b"x" * 64).decode(),
                KEY + "\n-dev", "$(id)", "x" * 5000, "\x00")


def cfg_for(tmp_path: Path, port: int = 8500, **kw: object) -> FleetConfig:
    return FleetConfig(home=tmp_path / "home", consul_port=port, advertise="127.0.0.1", **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", [k for k in HOSTILE_KEYS if k.strip()])
def test_hostile_key_names_the_setting_and_never_echoes_it(bad: str) -> None:
    with pytest.raises(ConfigError, match="FLEET_CONSUL_ENCRYPT") as err:
        gossip.check_key(bad)
    assert bad.strip() not in str(err.value)


def test_first_host_makes_a_key_once_readable_only_by_its_owner(tmp_path: Path) -> None:
    cfg, data = cfg_for(tmp_path), tmp_path / "consul"
    key = gossip.resolve(cfg, data, [])
    assert key is not None and len(base64.b64decode(key)) == 32
    assert gossip.resolve(cfg, data, []) == key  # kept: the agent's next start uses the same
    args = gossip.agent_args(cfg, key)
    assert args == ["-config-file", str(gossip.config_path(cfg))] and key not in " ".join(args)  # not in `ps`
    for path in (gossip.key_path(cfg), gossip.config_path(cfg)):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert gossip.encrypted(cfg)


def test_an_agent_that_already_gossips_in_clear_is_not_cut_off(tmp_path: Path) -> None:
    cfg, data = cfg_for(tmp_path), tmp_path / "consul"
    (data / "serf").mkdir(parents=True)  # a fleet from before encryption: its agent has state, no key
    assert gossip.resolve(cfg, data, []) is None
    assert gossip.agent_args(cfg, None) == [] and not gossip.encrypted(cfg)
    assert gossip.resolve(cfg_for(tmp_path, consul_encrypt=KEY), data, []) == KEY  # unless given one


@pytest.fixture(scope="module")
def agents(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Proc, Proc]]:
    """Two real agents to join: one encrypting its gossip, one in clear."""
    tmp = tmp_path_factory.mktemp("gossip")
    enc = start_consul(tmp / "enc", extra=("-encrypt", KEY))
    clear = start_consul(tmp / "clear")
    yield enc, clear
    enc.stop()
    clear.stop()


def test_a_join_asks_the_fleet_before_its_agent_starts(tmp_path: Path, agents: tuple[Proc, Proc]) -> None:
    enc, clear = agents
    enc_port, clear_port = int(str(enc.extra["port"])), int(str(clear.extra["port"]))
    data = tmp_path / "consul"
    assert gossip.fleet_encrypts(cfg_for(tmp_path, enc_port), ["127.0.0.1"]) is True
    assert gossip.fleet_encrypts(cfg_for(tmp_path, clear_port), ["127.0.0.1"]) is False

    with pytest.raises(ConfigError, match="encrypts its gossip: set FLEET_CONSUL_ENCRYPT"):
        gossip.resolve(cfg_for(tmp_path, enc_port), data, ["127.0.0.1"])
    assert not gossip.key_path(cfg_for(tmp_path)).exists()
    with pytest.raises(ConfigError, match="gossips in clear: unset FLEET_CONSUL_ENCRYPT"):
        gossip.resolve(cfg_for(tmp_path, clear_port, consul_encrypt=KEY), data, ["127.0.0.1"])
    assert gossip.resolve(cfg_for(tmp_path, clear_port), data, ["127.0.0.1"]) is None

    given = cfg_for(tmp_path, enc_port, consul_encrypt=KEY)
    assert gossip.resolve(given, data, ["127.0.0.1"]) == KEY
    # Saved: `up` again on this host needs the setting no more.
    assert gossip.resolve(cfg_for(tmp_path, enc_port), data, ["127.0.0.1"]) == KEY
