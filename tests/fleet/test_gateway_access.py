"""The gateway's front door against real nginx (with its Lua module) and a real Consul: API keys,
the 401/429 JSON shapes, rate limits per key and per address, and HTTPS with a self-signed pair."""
from __future__ import annotations

import dataclasses
import json
import re
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
import requests
from click.testing import CliRunner
from gw_servers import ConsulAgent, Gateway, wait_steady
from helpers import free_port, wait_for

from fleetctl import procs
from fleetctl.cli.main import AppContext, main
from fleetctl.cluster import consul_api
from fleetctl.config import FleetConfig
from fleetctl.gateway import access, keys, tls
from fleetctl.gateway import nginx as gateway

MISSING = {"code": 40170, "msg": access.MISSING[1], "data": []}
INVALID = {"code": 40171, "msg": access.INVALID[1], "data": []}


def second_home(cfg: FleetConfig, tmp_path: Path) -> FleetConfig:
    """Another gateway host: its own home and port, the same Consul."""
    return dataclasses.replace(cfg, home=tmp_path / "fleet-b", gateway_port=free_port())


def cli(cfg: FleetConfig, *args: str) -> str:
    result = CliRunner().invoke(main, list(args), obj=AppContext(cfg))
    assert result.exit_code == 0, result.output
    return result.stdout


def test_keys_work_on_every_gateway_and_revoked_ones_stop_within_5s(
    gw_cfg: FleetConfig, gw_consul: ConsulAgent, start_gateway: Callable[[FleetConfig], Gateway],
    tmp_path: Path,
) -> None:
    cfg = gw_cfg.replace(auth=1)
    a, b = start_gateway(cfg), start_gateway(second_home(cfg, tmp_path))
    out = cli(cfg, "keys", "create", "alice")
    secret = out.splitlines()[-1]
    assert secret.startswith(keys.KEY_PREFIX) and len(secret) > 40
    stored = gw_consul.client.kv.get(consul_api.kv_prefix(cfg) + "alice")[1]["Value"].decode()
    assert secret not in stored and keys.key_hash(secret) in stored  # the hash only
    assert "alice" in cli(cfg, "keys", "list") and secret not in cli(cfg, "keys", "list", "--json")

    for g in (a, b):
        for headers in ({"Authorization": f"Bearer {secret}"}, {"X-API-Key": secret}):
            resp = wait_for(lambda g=g, h=headers: (r := requests.get(g.url(), headers=h, timeout=5))
                            .status_code == 200 and r, 10, f"the key on {g.cfg.gateway_url}")
            assert isinstance(resp, requests.Response)
            echo = resp.json()
            # The instance learns the client's name, never the key.
            assert echo["client"] == "alice" and echo["authorization"] is None and echo["api_key"] is None

    cli(cfg, "keys", "revoke", "alice")
    for g in (a, b):
        wait_steady(lambda g=g: requests.get(g.url(), headers={"X-API-Key": secret}, timeout=5).status_code == 401,
                    5, f"the revoked key refused on {g.cfg.gateway_url}")
    resp = requests.get(b.url(), headers={"X-API-Key": secret}, timeout=5)
    assert resp.json() == INVALID and resp.headers["Content-Type"] == "application/json"
    assert "alice" not in cli(cfg, "keys", "list")


def test_401_shapes_and_hostile_key_headers(
    gw_cfg: FleetConfig, start_gateway: Callable[[FleetConfig], Gateway]
) -> None:
    g = start_gateway(gw_cfg.replace(auth=1))
    resp = requests.post(g.url(), data=b"x" * 1000, timeout=5)
    assert resp.status_code == 401 and resp.json() == MISSING
    assert resp.headers["Content-Type"] == "application/json"
    assert resp.headers["WWW-Authenticate"].startswith("Bearer") and resp.headers["X-Request-ID"]
    hostile = [
        {"Authorization": "Bearer"}, {"Authorization": "Bearer "}, {"Authorization": "Basic YTpi"},
        {"Authorization": "Bearer a b"},
        {"X-API-Key": ""}, {"X-API-Key": "ocr_" + "A" * 43}, {"X-API-Key": "\"}; drop"},
        {"X-API-Key": "ü€".encode().decode("latin-1")}, {"X-API-Key": "x" * 7000},
        {"Authorization": f"Bearer {keys.key_hash('x')}"},  # a stored hash is not a key
    ]
    for headers in hostile:
        resp = requests.get(g.url("/api/anything?x=1"), headers=headers, timeout=5)
        assert resp.status_code == 401, headers
        assert resp.json()["code"] in (40170, 40171), headers
    resp = requests.get(g.url(), headers={"Authorization": "Bearer " + "k" * 10_000}, timeout=5)
    assert resp.status_code == 400 and resp.json()["code"] == 40070  # nginx's header limit, in JSON too
    # Outside /api/ nothing changes; /metrics is not public.
    assert requests.get(g.url("/nginx-health"), timeout=5).status_code == 200
    resp = requests.get(g.url("/metrics"), timeout=5)
    assert resp.status_code == 404 and resp.json()["code"] == 40470


def test_bad_names_and_rates_are_refused(gw_cfg: FleetConfig, gw_consul: ConsulAgent) -> None:
    for args in (["bad name"], ["-x"], ["a" * 65], ["ok", "--rate", "10r/h"], ["ok", "--rate", "0r/s"],
                 ["ok", "--rate", "ten"]):
        result = CliRunner().invoke(main, ["keys", "create", *args], obj=AppContext(gw_cfg))
        assert result.exit_code != 0 and "Traceback" not in result.output, args
    cli(gw_cfg, "keys", "create", "dup")
    result = CliRunner().invoke(main, ["keys", "create", "dup"], obj=AppContext(gw_cfg))
    assert result.exit_code == 1 and "exists" in result.output
    result = CliRunner().invoke(main, ["keys", "revoke", "nobody"], obj=AppContext(gw_cfg))
    assert result.exit_code == 1 and "no key named 'nobody'" in result.output


def _until_429(url: str, headers: dict[str, str]) -> requests.Response:
    for _ in range(50):
        resp = requests.get(url, headers=headers, timeout=5)
        if resp.status_code != 200:
            return resp
    raise AssertionError("never limited")


def test_rate_limit_per_key_gives_json_429_with_retry_after(
    gw_cfg: FleetConfig, start_gateway: Callable[[FleetConfig], Gateway]
) -> None:
    cfg = gw_cfg.replace(auth=1, rate_burst=2)
    g = start_gateway(cfg)
    slow = cli(cfg, "keys", "create", "slow", "--rate", "2r/m").splitlines()[-1]
    free = cli(cfg, "keys", "create", "free").splitlines()[-1]  # no --rate, no FLEET_RATE: unlimited
    wait_steady(lambda: requests.get(g.url(), headers={"X-API-Key": free}, timeout=5).status_code == 200, 10,
                "both new keys")  # created last, so the slow one is in nginx too
    resp = _until_429(g.url(), {"X-API-Key": slow})
    assert resp.status_code == 429 and resp.headers["Content-Type"] == "application/json"
    assert resp.headers["Retry-After"] == "30"  # 2r/m: one more request fits every 30 s
    assert resp.json()["code"] == 42970 and "FLEET_RATE" in resp.json()["msg"]
    # Another key is not held back by this one's limit.
    assert all(requests.get(g.url(), headers={"X-API-Key": free}, timeout=5).status_code == 200
               for _ in range(20))


def test_rate_limit_per_address_when_auth_is_off(
    gw_cfg: FleetConfig, start_gateway: Callable[[FleetConfig], Gateway]
) -> None:
    g = start_gateway(gw_cfg.replace(rate="1r/m", rate_burst=0))
    assert requests.get(g.url(), timeout=5).status_code == 200
    resp = requests.get(g.url(), timeout=5)
    assert resp.status_code == 429 and resp.json()["code"] == 42970
    assert resp.headers["Retry-After"] == "60"
    assert requests.get(g.url("/nginx-health"), timeout=5).status_code == 200  # only /api/ counts


def test_default_gateway_is_open_plain_http(gw_cfg: FleetConfig) -> None:
    """`make up` without flags: no Lua module, no key check, no limit, no TLS listener."""
    text = gateway.render_nginx_conf(gw_cfg)
    assert "load_module" not in text and "set_by_lua" not in text and " ssl;" not in text
    clients = access.render_clients(gw_cfg, [])
    assert "limit_req_zone" not in clients


def test_https_with_a_self_signed_pair(
    gw_cfg: FleetConfig, start_gateway: Callable[[FleetConfig], Gateway]
) -> None:
    cfg = gw_cfg.replace(auth=1, tls=1, gateway_tls_port=free_port())
    g = start_gateway(cfg)
    cert, key = tls.self_signed_paths(cfg)
    assert cert.is_file() and key.stat().st_mode & 0o077 == 0
    secret = cli(cfg, "keys", "create", "tls-client").splitlines()[-1]
    url = f"{cfg.gateway_tls_url}/api/ocr"
    wait_steady(lambda: requests.get(url, headers={"X-API-Key": secret}, verify=str(cert), timeout=5).ok, 10,
                "the key over HTTPS")
    curl = subprocess.run(["curl", "-sS", "--cacert", str(cert), "-H", f"X-API-Key: {secret}", url],
                          capture_output=True, text=True, timeout=30, check=False)
    assert curl.returncode == 0 and '"client": "tls-client"' in curl.stdout, curl.stderr
    curl = subprocess.run(["curl", "-sS", "--cacert", str(cert), url],
                          capture_output=True, text=True, timeout=30, check=False)
    assert '"code": 40170' in curl.stdout
    assert requests.get(g.url(), headers={"X-API-Key": secret}, timeout=5).ok  # plain HTTP stays
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(url, timeout=5)  # not trusted without the CA


def test_https_only_and_configured_pair(gw_cfg: FleetConfig, tmp_path: Path,
                                        start_gateway: Callable[[FleetConfig], Gateway]) -> None:
    cert, key = tmp_path / "own.crt", tmp_path / "own.key"
    tls.make_self_signed(cert, key, "127.0.0.1")
    cfg = gw_cfg.replace(tls=1, gateway_http=0, gateway_tls_port=free_port(),
                         tls_cert=str(cert), tls_key=str(key))
    start_gateway(cfg)
    assert requests.get(f"{cfg.gateway_tls_url}/api/ocr", verify=str(cert), timeout=5).ok
    assert not procs.port_open(cfg.gateway_host, cfg.gateway_port)
    with pytest.raises(gateway.GatewayError, match="FLEET_TLS_KEY"):
        gateway.render_nginx_conf(dataclasses.replace(cfg, tls_key=""))
    with pytest.raises(gateway.GatewayError, match="FLEET_GATEWAY_HTTP=0"):
        gateway.render_nginx_conf(dataclasses.replace(cfg, tls=0))


@pytest.mark.parametrize(("variable", "value", "message"), [
    ("FLEET_RATE", "10r/h", "FLEET_RATE='10r/h' is not a rate"),
    ("FLEET_RATE", "0r/s", "FLEET_RATE='0r/s' is not a rate"),
    ("FLEET_AUTH", "yes", "FLEET_AUTH='yes' is not a whole number"),
    ("FLEET_AUTH", "2", "FLEET_AUTH=2 must be between 0 and 1"),
    ("FLEET_RATE_BURST", "-1", "FLEET_RATE_BURST=-1 must be between 0"),
    ("FLEET_GATEWAY_TLS_PORT", "70000", "FLEET_GATEWAY_TLS_PORT=70000 must be between 1 and 65535"),
])
def test_front_door_settings_are_checked_by_name(variable: str, value: str, message: str) -> None:
    from fleetctl.config import ConfigError, load

    with pytest.raises(ConfigError, match=re.escape(message)):
        load({"FLEET_HOME": "/nonexistent", variable: value})


def test_malformed_key_entries_grant_nothing_and_never_break_nginx(
    gw_cfg: FleetConfig, gw_consul: ConsulAgent, start_gateway: Callable[[FleetConfig], Gateway]
) -> None:
    """Whatever else lands under the keys' KV prefix is skipped; the real key still works."""
    cfg = gw_cfg.replace(auth=1)
    g = start_gateway(cfg)
    prefix = consul_api.kv_prefix(cfg)
    h = keys.key_hash("ocr_hostile")
    for name, value in {
        "garbage": b"\x00\xff not json", "list": b"[1, 2]", "empty": b"",
        "inject": json.dumps({"name": 'x"; } map $a $b { default 1', "hash": h}).encode(),
        "badhash": b'{"name": "badhash", "hash": "zz"}',
        "badrate": json.dumps({"name": "badrate", "hash": h, "rate": "1r/s; allow all"}).encode(),
    }.items():
        gw_consul.client.kv.put(prefix + name, value)
    secret = cli(cfg, "keys", "create", "real").splitlines()[-1]
    wait_steady(lambda: requests.get(g.url(), headers={"X-API-Key": secret}, timeout=5).ok, 10, "the real key")
    assert [k.name for k in keys.fetch(gw_consul.client, cfg)[1]] == ["real"]
    assert requests.get(g.url(), headers={"X-API-Key": "ocr_hostile"}, timeout=5).status_code == 401
    assert "inject" not in access.clients_conf_path(cfg).read_text() and "allow all" not in \
        access.clients_conf_path(cfg).read_text()
