"""Consul ACLs in cluster mode: the token's checks, who makes it, and what each token may do on a real
agent started as fleetctl starts a first host (tokens through a config file, deny by default)."""
from __future__ import annotations

import json
import signal
import stat
import uuid
from collections.abc import Iterator
from pathlib import Path

import consul
import psutil
import pytest
import requests
from helpers import Proc, consul_binary, free_port, spawn, start_consul, wait_for
from test_multihost import Host, environ, make_host

from fleetctl.backends.environment import instance_env
from fleetctl.cluster import acl, consul_api, gossip
from fleetctl.cluster import agent as cluster
from fleetctl.config import ConfigError, FleetConfig
from fleetctl.daemons import services
from fleetctl.gateway import keys, upstream
from ocr_app.config import Settings
from ocr_app.ops.registry import Registration

HOST = "127.0.0.2"  # a simulated host of its own, as in test_multihost.py
TOKEN = "0b6f7c3e-5a1d-4e2f-9c8b-7a6d5e4f3a2b"
HOSTILE_TOKENS = ("not a token", "0b6f7c3e5a1d4e2f9c8b7a6d5e4f3a2b", "{0b6f7c3e-5a1d-4e2f-9c8b-7a6d5e4f3a2b}",
                  TOKEN + "\n-dev", "$(id)", "x" * 5000, "\x00", "urn:uuid:" + TOKEN, TOKEN[:-1])


def cfg_for(home: Path, port: int = 8500, **kw: object) -> FleetConfig:
    return FleetConfig(home=home, consul_port=port, advertise=HOST, **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", HOSTILE_TOKENS)
def test_hostile_token_names_the_setting_and_never_echoes_it(bad: str) -> None:
    with pytest.raises(ConfigError, match="FLEET_CONSUL_TOKEN") as err:
        consul_api.check_token(bad)
    assert bad.strip() not in str(err.value)


@pytest.mark.parametrize("bad", [t for t in HOSTILE_TOKENS if t.strip()])
def test_a_hostile_token_fails_when_the_config_loads(bad: str) -> None:
    """Before any request: a bad FLEET_CONSUL_TOKEN would otherwise reach a request header."""
    with pytest.raises(ConfigError, match="FLEET_CONSUL_TOKEN") as err:
        cluster.apply_saved(FleetConfig(home=Path("/nonexistent"), consul_token=bad), {})
    assert bad.strip() not in str(err.value)


def test_first_host_makes_a_token_once_readable_only_by_its_owner(tmp_path: Path) -> None:
    cfg, data = cfg_for(tmp_path / "home"), tmp_path / "consul"
    token = acl.resolve(cfg, data, [])
    assert token is not None and consul_api.check_token(token) == token
    assert acl.resolve(cfg, data, []) == token  # kept: the agent's next start uses the same
    args = acl.agent_args(cfg, token, server=True)
    assert args == ["-config-file", str(acl.config_path(cfg))] and token not in " ".join(args)  # not in `ps`
    written = json.loads(acl.config_path(cfg).read_text())["acl"]
    assert written["default_policy"] == "deny" and written["tokens"] == {"agent": token, "master": token}
    assert "master" not in json.loads(Path(acl.agent_args(cfg, token, server=False)[1]).read_text())["acl"]["tokens"]
    for path in (consul_api.token_path(cfg), acl.config_path(cfg)):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert acl.enabled(cfg) and consul_api.fleet_token(cfg) == token


def test_an_agent_that_already_runs_without_acls_is_not_cut_off(tmp_path: Path) -> None:
    cfg, data = cfg_for(tmp_path / "home"), tmp_path / "consul"
    (data / "serf").mkdir(parents=True)  # a fleet from before ACLs: its agent has state, no token
    assert acl.resolve(cfg, data, []) is None
    assert acl.agent_args(cfg, None, server=True) == [] and not acl.enabled(cfg)
    assert acl.role_token(cfg, "instance") == ""  # and the instances get none


# --- a real first host with ACLs ------------------------------------------------------------------

@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FleetConfig]:
    """A first host's agent as `fleetctl up --advertise` starts it (a server bootstrapping alone, ACLs
    from a config file), and the small tokens made with its management token."""
    tmp = tmp_path_factory.mktemp("acl")
    cfg = cfg_for(tmp / "home", free_port(), serf_port=free_port(), raft_port=free_port())
    data = cfg.home / "consul"
    data.mkdir(parents=True)
    token = acl.resolve(cfg, data, [])
    argv = cluster.agent_argv(cfg, consul_binary(), data, server=True) + acl.agent_args(cfg, token, server=True)
    agent = spawn(argv, tmp / "consul.log")
    try:
        wait_for(lambda: _self(cfg, token), 60, "the agent's ACLs to bootstrap")
        acl.ensure_role_tokens(cfg)
        yield cfg
    finally:
        agent.signal(signal.SIGKILL)  # a throwaway server: no graceful leave to wait for
        agent.popen.wait(10)


def _self(cfg: FleetConfig, token: str | None) -> bool:
    client = consul_api.client_at(HOST, cfg.consul_port, token or "", timeout=2)
    try:
        return bool(client.acl.token.read_self())
    finally:
        consul_api.close(client)


def client(cfg: FleetConfig, token: str) -> consul.Consul:
    return consul_api.client_at(HOST, cfg.consul_port, token, timeout=5)


def http(cfg: FleetConfig, method: str, path: str, token: str = "", **kw: object) -> requests.Response:
    headers = {"X-Consul-Token": token} if token else {}
    return requests.request(method, f"http://{HOST}:{cfg.consul_port}{path}", headers=headers, timeout=5,
                            **kw)  # type: ignore[arg-type]


def test_anonymous_requests_can_change_nothing_and_see_no_instance(fleet: FleetConfig) -> None:
    instance = acl.role_token(fleet, "instance")
    client(fleet, instance).agent.service.register("ocr", service_id="ocr-anon-test", address="127.0.0.9", port=1)
    service = {"Name": "ocr", "ID": "rogue", "Address": "10.6.6.6", "Port": 80}
    assert http(fleet, "PUT", "/v1/agent/service/register", json=service).status_code == 403
    assert http(fleet, "PUT", "/v1/agent/service/deregister/ocr-anon-test").status_code == 403
    assert http(fleet, "PUT", f"/v1/kv/{consul_api.kv_prefix(fleet)}rogue", data="x").status_code == 403
    mgmt = client(fleet, consul_api.fleet_token(fleet))
    keys.create(mgmt, fleet, "anon-test")
    assert http(fleet, "GET", f"/v1/kv/{consul_api.kv_prefix(fleet)}anon-test").status_code == 403
    assert http(fleet, "GET", f"/v1/kv/{consul_api.kv_prefix(fleet)}?recurse").status_code == 404  # filtered out
    keys.revoke(mgmt, fleet, "anon-test")
    assert http(fleet, "PUT", "/v1/acl/token", json={"Policies": [{"Name": "global-management"}]}).status_code == 403
    # Reads answer, but empty: default deny filters every entry out.
    assert http(fleet, "GET", "/v1/catalog/service/ocr").json() == []
    assert http(fleet, "GET", "/v1/health/service/ocr").json() == []
    assert "ocr" not in http(fleet, "GET", "/v1/catalog/services").json()
    assert "ocr-anon-test" in mgmt.agent.services()
    mgmt.agent.service.deregister("ocr-anon-test")


def test_the_instance_token_registers_only_the_fleets_service(fleet: FleetConfig) -> None:
    token = acl.role_token(fleet, "instance")
    assert token and token != consul_api.fleet_token(fleet)
    mine = client(fleet, token)
    assert mine.agent.service.register("ocr", service_id="ocr-x", address="127.0.0.9", port=2,
                                       check=consul.Check.ttl("30s"))
    assert "ocr-x" in mine.agent.services()
    with pytest.raises(consul.ACLPermissionDenied):
        mine.agent.service.register("billing", service_id="billing-1", address="127.0.0.9", port=3)
    with pytest.raises(consul.ACLPermissionDenied):
        mine.kv.put(consul_api.kv_prefix(fleet) + "rogue", "x")
    with pytest.raises(consul.ACLPermissionDenied):
        mine.acl.token.list()
    assert mine.agent.service.deregister("ocr-x")


def test_the_gateway_token_reads_the_upstream_and_keys_and_writes_nothing(fleet: FleetConfig) -> None:
    mgmt, gw = client(fleet, consul_api.fleet_token(fleet)), client(fleet, acl.role_token(fleet, "gateway"))
    client(fleet, acl.role_token(fleet, "instance")).agent.service.register(
        "ocr", service_id="ocr-gw-test", address="127.0.0.9", port=4)
    try:
        # The sync loop's reads: passing instances, the LAN members, the API keys.
        wait_for(lambda: upstream.passing_members(gw, "ocr", None, "")[1], 10, "the instance passing")
        assert [(b.host, b.port) for b in upstream.passing_members(gw, "ocr", None, "")[1]] == [("127.0.0.9", 4)]
        assert upstream.passing_members(client(fleet, ""), "ocr", None, "")[1] == []
        assert cluster.down_nodes(gw) == set() and gw.agent.members()
        key, secret = keys.create(mgmt, fleet, "acl-test")  # `fleetctl keys create` runs with the management token
        assert [k.name for k in keys.fetch(gw, fleet)[1]] == ["acl-test"]
        for write in (lambda: gw.kv.put(consul_api.kv_prefix(fleet) + "rogue", "x"),
                      lambda: gw.agent.service.register("ocr", service_id="rogue", address="10.6.6.6", port=80),
                      lambda: gw.agent.service.deregister("ocr-gw-test")):
            with pytest.raises(consul.ACLPermissionDenied):
                write()
        keys.revoke(mgmt, fleet, "acl-test")
        assert keys.fetch(gw, fleet)[1] == [] and secret not in json.dumps(key.to_json())
    finally:
        mgmt.agent.service.deregister("ocr-gw-test")


def test_small_tokens_are_kept_and_remade_once_deleted(fleet: FleetConfig) -> None:
    before = {role: acl.role_token(fleet, role) for role in acl.ROLES}
    assert acl.ensure_role_tokens(fleet) == before  # idempotent: `up` again keeps them
    mgmt = client(fleet, consul_api.fleet_token(fleet))
    accessor = client(fleet, before["instance"]).acl.token.read_self()["AccessorID"]
    mgmt.acl.token.delete(accessor)  # rotating: delete the token, `up` makes a new one
    after = acl.ensure_role_tokens(fleet)
    assert after["gateway"] == before["gateway"] and after["instance"] != before["instance"]
    assert _self(fleet, after["instance"])


def test_an_instance_registers_with_its_token_from_the_environment(fleet: FleetConfig) -> None:
    env = {"OCR_CONSUL_ADDR": f"{HOST}:{fleet.consul_port}", "OCR_INSTANCE_ID": "ocr-reg-test",
           "OCR_ADVERTISE_HOST": "127.0.0.9", "OCR_ADVERTISE_PORT": "5"}
    refused = Registration(Settings.from_env(env))
    assert not refused.register()  # no token: Consul says no, and the instance keeps serving
    settings = Settings.from_env({**env, "OCR_CONSUL_TOKEN": acl.role_token(fleet, "instance")})
    assert acl.role_token(fleet, "instance") not in repr(settings)
    reg = Registration(settings)
    assert reg.register() and reg.is_registered()
    assert reg.deregister() and not reg.is_registered()


def test_a_join_needs_the_fleets_token_before_its_agent_starts(fleet: FleetConfig, tmp_path: Path) -> None:
    joiner, data = cfg_for(tmp_path / "home", fleet.consul_port), tmp_path / "consul"
    cluster.check_join(joiner, [HOST], data)  # a real agent, not -dev: even anonymously, it may be joined
    assert acl.fleet_acls(joiner, [HOST]) is True
    with pytest.raises(ConfigError, match="has Consul ACLs: set FLEET_CONSUL_TOKEN"):
        acl.resolve(joiner, data, [HOST])
    assert not consul_api.token_path(joiner).exists()
    with pytest.raises(ConfigError, match="does not know the token in FLEET_CONSUL_TOKEN"):
        acl.resolve(joiner.replace(consul_token=str(uuid.uuid4())), data, [HOST])
    # Without a token the join host will not even say whether it encrypts its gossip.
    assert gossip.fleet_encrypts(joiner, [HOST]) is None
    token = consul_api.fleet_token(fleet)
    assert acl.resolve(joiner.replace(consul_token=token.upper()), data, [HOST]) == token
    assert acl.resolve(joiner, data, [HOST]) == token  # saved: the next `up` needs the setting no more
    assert gossip.fleet_encrypts(joiner, [HOST]) is False  # asked with the saved token


@pytest.fixture(scope="module")
def open_agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proc]:
    agent = start_consul(tmp_path_factory.mktemp("open"))
    yield agent
    agent.stop()


def test_a_fleet_without_acls_is_joined_without_a_token(open_agent: Proc, tmp_path: Path) -> None:
    port = int(str(open_agent.extra["port"]))
    cfg = FleetConfig(home=tmp_path / "home", consul_port=port, advertise="127.0.0.5")
    assert acl.fleet_acls(cfg, ["127.0.0.1"]) is False
    assert acl.resolve(cfg, tmp_path / "consul", ["127.0.0.1"]) is None
    with pytest.raises(ConfigError, match="without ACLs: unset FLEET_CONSUL_TOKEN"):
        acl.resolve(cfg.replace(consul_token=TOKEN), tmp_path / "consul", ["127.0.0.1"])


def test_who_gets_which_token_without_a_managed_cluster(tmp_path: Path) -> None:
    """One machine: nobody sends a token. An external agent given FLEET_CONSUL_TOKEN: fleetctl, the
    sync loop and the instances all send that one (fleetctl makes no small tokens there)."""
    one = FleetConfig(home=tmp_path)
    assert "OCR_CONSUL_TOKEN" not in instance_env(one, "ocr-1", 1) and acl.SETTING not in services.sync_env(one)
    external = FleetConfig(home=tmp_path, consul_addr="10.0.0.1:8500", consul_token=TOKEN)
    assert instance_env(external, "ocr-1", 1)["OCR_CONSUL_TOKEN"] == TOKEN
    assert services.sync_env(external)[acl.SETTING] == TOKEN
    assert consul_api.client_for(external).http.session.headers["X-Consul-Token"] == TOKEN
    assert "X-Consul-Token" not in consul_api.client_for(one).http.session.headers
    assert cluster.validate(external.replace(consul_token=TOKEN.upper())).consul_token == TOKEN


def at(host: Host, token: str) -> consul.Consul:
    return consul_api.client_at(host.addr, host.cfg.consul_port, token, timeout=5)


def test_rotating_the_small_tokens_is_up_again(tmp_path: Path) -> None:
    """A one-host cluster: delete both small tokens in Consul, run `up` again, and the sync loop and
    the instance run with new ones, the instance registered again and back in the upstream."""
    host = make_host(tmp_path, "127.0.0.5")
    try:
        host.run("up", "-n", "1", "--advertise", host.addr)
        wait_for(lambda: host.members() == {host.instance}, 60, "the instance in the upstream")
        shown = json.loads(host.run("status", "--json"))["services"]
        assert (shown["consul"]["security"], shown["redis"]["security"]) == ("acl+gossip-key", "password")
        mgmt = host.consul()
        old = {role: (host.home / f"consul-{role}.token").read_text().strip() for role in acl.ROLES}
        for token in old.values():
            mgmt.acl.token.delete(at(host, token).acl.token.read_self()["AccessorID"])
        host.run("up", "-n", "1")
        new = {role: (host.home / f"consul-{role}.token").read_text().strip() for role in acl.ROLES}
        assert all(new[role] != old[role] for role in acl.ROLES)
        sync = psutil.Process(int((host.home / "run" / "sync.pid").read_text().split()[0]))
        assert sync.environ()[acl.SETTING] == new["gateway"]
        envs = [environ(p) for p in psutil.process_iter()]
        tokens = {e.get("OCR_CONSUL_TOKEN") for e in envs if str(host.home) in e.get("OCR_RUNTIME_DIR", "")}
        assert tokens == {new["instance"]}
        # Replaced new before old, so the new instance has the next port; it registered with its new token.
        mine = set(at(host, new["instance"]).agent.services())
        assert len(mine) == 1, mine
        port = int(mine.pop().rpartition("-")[2])
        wait_for(lambda: host.members() == {f"{host.addr}:{port}"}, 60, "the new instance in the upstream")
    finally:
        host.fleetctl("down").communicate(timeout=120)


def test_a_host_from_before_acls_keeps_running_without_them(tmp_path: Path) -> None:
    """Its agent has state but no token: `up` starts it as before (no ACLs, gossip in clear), so the
    fleet it belongs to is not cut off, and status says nothing guards it."""
    host = make_host(tmp_path, "127.0.0.6")
    (host.home / "consul" / "serf").mkdir(parents=True)
    try:
        host.run("up", "-n", "0", "--advertise", host.addr)
        assert not (host.home / "consul.token").exists() and not acl.enabled(host.cfg)
        kv = f"http://{host.addr}:{host.cfg.consul_port}/v1/kv/ocr-fleet/probe"
        assert requests.put(kv, data="x", timeout=5).status_code == 200
        shown = json.loads(host.run("status", "--json"))["services"]
        assert shown["consul"]["security"] == "none" and shown["redis"]["security"] == "password"
    finally:
        host.fleetctl("down").communicate(timeout=120)
