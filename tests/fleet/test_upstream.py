"""The Consul -> upstream.conf -> nginx loop, against a real Consul agent, real nginx and real backends."""
from __future__ import annotations

import io
import json
import random
import re
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import requests
from gw_servers import ConsulAgent, EchoServer, rendered_members
from helpers import wait_for
from inproc import RAW, AppServer, FakeEngine, drop_log_handler, log_to, png

from fleetctl.config import FleetConfig
from fleetctl.gateway import access, upstream
from fleetctl.gateway import nginx as gateway
from fleetctl.gateway.nginx import NginxReloader, TemplateError, ValidationError
from fleetctl.gateway.upstream import Member


def _get(cfg: FleetConfig, path: str = "/api/ocr", **kw: object) -> requests.Response:
    return requests.get(f"{cfg.gateway_url}{path}", timeout=5, **kw)  # type: ignore[arg-type]


def _served_by(cfg: FleetConfig) -> int | None:
    resp = _get(cfg)
    return int(resp.json()["port"]) if resp.status_code == 200 else None


@contextmanager
def _loop(cfg: FleetConfig, agent: ConsulAgent) -> Iterator[threading.Thread]:
    """run_sync_loop in a thread, as `fleetctl sync` runs it, stopped at the end."""
    stop = threading.Event()
    thread = threading.Thread(
        target=upstream.run_sync_loop, args=(cfg, agent.client, stop),
        kwargs={"query_wait": 1.0, "backoff_cap": 1.0}, daemon=True,
    )
    thread.start()
    try:
        wait_for(lambda: upstream.read_state(cfg).get("synced_at"), 10, "the loop's first sync")
        yield thread
    finally:
        stop.set()
        thread.join(timeout=10)
        assert not thread.is_alive(), "the sync loop did not stop"


# --- pure rendering ---------------------------------------------------------------------------

def test_render_is_sorted_deterministic_and_deduplicated(gw_cfg: FleetConfig) -> None:
    members = [Member(f"ocr-{p}", "127.0.0.1", p) for p in (8003, 8001, 8010, 8002)]
    members.append(Member("dup", "127.0.0.1", 8001))
    first = upstream.render_upstream(members, gw_cfg)
    for _ in range(5):
        random.shuffle(members)
        assert upstream.render_upstream(members, gw_cfg) == first
    servers = [line.split()[1] for line in first.splitlines() if line.strip().startswith("server ")]
    assert servers == ["127.0.0.1:8001", "127.0.0.1:8002", "127.0.0.1:8003", "127.0.0.1:8010"]
    assert "least_conn;" in first and "zone ocr_backend 64k;" in first and "keepalive 32;" in first
    assert f"server 127.0.0.1:8001 {upstream.SERVER_PARAMS};" in first
    assert "default 4;" in first


def test_empty_registry_renders_a_valid_placeholder(gw_cfg: FleetConfig) -> None:
    text = upstream.render_upstream([], gw_cfg)
    assert "default 0;" in text
    servers = [line for line in text.splitlines() if line.strip().startswith("server ")]
    assert len(servers) == 1 and " down;" in servers[0]
    gateway.make_dirs(gw_cfg)
    gateway.upstream_conf_path(gw_cfg).write_text(text)
    assert rendered_members(gw_cfg) == set()  # the placeholder is no member
    gateway.nginx_conf_path(gw_cfg).write_text(gateway.render_nginx_conf(gw_cfg))
    access.clients_conf_path(gw_cfg).write_text(access.render_clients(gw_cfg, []))
    NginxReloader(gw_cfg).validate()  # nginx -t accepts it: no "no servers are inside upstream"


def test_unknown_placeholder_is_a_template_error(gw_cfg: FleetConfig) -> None:
    (gw_cfg.nginx_dir / "templates").mkdir(parents=True)
    (gw_cfg.nginx_dir / "templates" / "upstream.conf.tmpl").write_text("upstream x { {{ nope }} }\n")
    with pytest.raises(TemplateError, match="nope"):
        upstream.render_upstream([], gw_cfg)


def test_nginx_conf_keeps_every_path_in_our_prefix(gw_cfg: FleetConfig) -> None:
    text = gateway.render_nginx_conf(gw_cfg)
    directives = "\n".join(x.split("#")[0] for x in text.splitlines())
    paths = re.findall(r'"(/[^"]*)"', directives)
    assert len(paths) == 11 and all(p.startswith(f"{gw_cfg.home}/") for p in paths), paths
    for directive in ("client_body_temp_path", "proxy_temp_path", "fastcgi_temp_path",
                      "uwsgi_temp_path", "scgi_temp_path", "pid ", "error_log", "access_log"):
        line = next(x for x in text.splitlines() if x.strip().startswith(directive))
        assert str(gw_cfg.home) in line, line
    assert "worker_processes 1;" in text
    assert "client_max_body_size 20480k;" in text  # OCR_MAX_UPLOAD_MB=20, in whole KiB


# --- against real servers ----------------------------------------------------------------------

def test_sync_proxies_to_passing_instances_and_503s_when_none(
    gw_cfg: FleetConfig, gw_consul: ConsulAgent, gw_nginx: int, gw_backends: Callable[[], EchoServer]
) -> None:
    reloader = NginxReloader(gw_cfg)
    # Nothing registered: the placeholder stays, nothing to reload.
    assert upstream.sync_once(gw_cfg, gw_consul.client, reloader) is False
    assert upstream.reload_count(gw_cfg) == 0

    a = gw_backends()
    sid = gw_consul.register(a)
    assert upstream.sync_once(gw_cfg, gw_consul.client, reloader) is True
    # Recorded as served only after the reload switched the workers; the file says the same.
    assert upstream.upstream_members(gw_cfg) == rendered_members(gw_cfg) == {a.address}
    assert upstream.reload_count(gw_cfg) == 1

    resp = _get(gw_cfg, headers={"X-Request-ID": "req-123"})
    assert resp.status_code == 200 and resp.json()["port"] == a.port
    assert resp.json()["request_id"] == "req-123"  # passed to the instance
    assert resp.headers["X-Request-ID"] == "req-123"  # and back, once
    generated = _get(gw_cfg)
    generated_id = generated.json()["request_id"]  # nginx's $request_id when the client sent none
    assert generated_id and generated.headers["X-Request-ID"] == generated_id
    body = b"\x89PNG" + b"x" * 300_000
    posted = requests.post(f"{gw_cfg.gateway_url}/api/ocr", data=body, timeout=5)
    assert posted.status_code == 200 and posted.json()["body_bytes"] == len(body)

    # Same set again: no write, no reload.
    assert upstream.sync_once(gw_cfg, gw_consul.client, reloader) is False
    assert upstream.reload_count(gw_cfg) == 1

    gw_consul.deregister(sid)
    assert upstream.sync_once(gw_cfg, gw_consul.client, reloader) is True
    assert upstream.reload_count(gw_cfg) == 2
    resp = _get(gw_cfg)
    assert resp.status_code == 503
    assert resp.headers["Content-Type"] == "application/json"
    assert resp.headers["Retry-After"] == "1"
    assert resp.json() == {"code": 50301, "msg": "no OCR instance is available", "data": []}
    assert gateway.master_pid(gw_cfg) == gw_nginx  # reloads, never restarts


def test_gateway_json_errors_for_413_and_502(
    gw_cfg: FleetConfig, gw_consul: ConsulAgent, gw_nginx: int, gw_backends: Callable[[], EchoServer]
) -> None:
    too_big = b"x" * (int(gw_cfg.max_upload_mb * 1024 * 1024) + 1)
    resp = requests.post(f"{gw_cfg.gateway_url}/api/ocr", data=too_big, timeout=10)
    assert resp.status_code == 413
    assert resp.headers["Content-Type"] == "application/json"
    assert resp.json()["code"] == 41301 and resp.json()["data"] == []

    gone = gw_backends()
    gw_consul.register(gone)
    upstream.sync_once(gw_cfg, gw_consul.client, NginxReloader(gw_cfg))
    gone.close()  # registered and in the upstream, but refusing connections
    resp = _get(gw_cfg)
    assert resp.status_code == 502
    assert resp.headers["Content-Type"] == "application/json"
    assert resp.json()["code"] == 50201


def test_queue_full_503_is_retried_elsewhere_and_never_locks_instances_out(
    gw_cfg: FleetConfig, gw_consul: ConsulAgent, gw_nginx: int, tmp_path: Path
) -> None:
    """Real app servers (fake engine, OCR_MAX_QUEUE=0) whose queues we fill by holding their engines."""
    gates = {name: threading.Event() for name in ("full", "free")}
    servers = {name: AppServer(tmp_path / name, FakeEngine(gate=gate), max_queue=0) for name, gate in gates.items()}
    full, free = servers["full"], servers["free"]
    held: list[threading.Thread] = []
    seeds = iter(range(1000))

    def post(url: str) -> requests.Response:
        return requests.post(f"{url}/api/ocr", data=png(next(seeds)), headers={**RAW, "Cache-Control": "no-cache"},
                             timeout=60)

    def fill(server: AppServer) -> None:
        """One request held in the engine: with OCR_MAX_QUEUE=0 every further OCR job gets 503."""
        held.append(threading.Thread(target=post, args=(server.url,)))
        held[-1].start()
        wait_for(lambda: server.engine.running == 1, 10, f"{server.instance_id} to be busy")

    try:
        for server in servers.values():
            gw_consul.register(server)
        upstream.sync_once(gw_cfg, gw_consul.client, NginxReloader(gw_cfg))
        gates["free"].set()
        fill(full)
        served = [post(gw_cfg.gateway_url) for _ in range(10)]
        assert {r.status_code for r in served} == {200}
        assert {r.headers["X-Instance"] for r in served} == {free.instance_id}  # every 503 retried on the other

        gates["free"].clear()
        fill(free)  # overload: every instance says its queue is full
        busy = [post(gw_cfg.gateway_url) for _ in range(10)]
        assert {r.status_code for r in busy} == {503}
        assert {r.json()["code"] for r in busy} == {50302}  # the app's own 503 reaches the client
        for gate in gates.values():
            gate.set()
        for thread in held:
            thread.join(30)
        # Recovered instances serve at once: the burst of 503s did not mark them failed.
        assert {post(gw_cfg.gateway_url).headers["X-Instance"] for _ in range(10)} == {
            full.instance_id, free.instance_id}
    finally:
        for gate in gates.values():
            gate.set()
        for server in servers.values():
            server.close()


def test_request_id_is_the_same_in_the_client_nginx_and_instance_logs(
    gw_cfg: FleetConfig, gw_consul: ConsulAgent, gw_nginx: int, tmp_path: Path
) -> None:
    """The gateway's X-Request-ID reaches the app, is echoed once, and both access logs carry it."""
    app_log = io.StringIO()
    server = AppServer(tmp_path / "app", FakeEngine(), log_format="json")
    log_to(app_log)
    try:
        gw_consul.register(server)
        upstream.sync_once(gw_cfg, gw_consul.client, NginxReloader(gw_cfg))
        sent = requests.post(f"{gw_cfg.gateway_url}/api/ocr", data=png(1), headers={**RAW, "X-Request-ID": "abc"},
                             timeout=30)
        made = requests.post(f"{gw_cfg.gateway_url}/api/ocr", data=png(2), headers=RAW, timeout=30)
    finally:
        server.close()
        drop_log_handler()
    assert sent.status_code == made.status_code == 200
    assert sent.headers["X-Request-ID"] == "abc"  # one header: nginx hides the app's copy and sets its own
    generated = made.headers["X-Request-ID"]
    assert re.fullmatch(r"[0-9a-f]{32}", generated)
    app_ids = [json.loads(line).get("request_id") for line in app_log.getvalue().splitlines()]
    gateway_ids = [json.loads(line)["request_id"] for line in gateway.access_log_path(gw_cfg).read_text().splitlines()]
    for rid in ("abc", generated):
        assert rid in app_ids and rid in gateway_ids


def test_loop_follows_consul_and_debounces_a_burst(
    gw_cfg: FleetConfig, gw_consul: ConsulAgent, gw_nginx: int, gw_backends: Callable[[], EchoServer]
) -> None:
    servers = [gw_backends() for _ in range(3)]
    with _loop(gw_cfg, gw_consul):
        before = upstream.reload_count(gw_cfg)
        ids = [gw_consul.register(s) for s in servers]  # three changes within min_wait
        want = {s.address for s in servers}
        wait_for(lambda: upstream.reload_count(gw_cfg) > before, 10, "a reload")
        assert upstream.upstream_members(gw_cfg) == want
        assert upstream.reload_count(gw_cfg) == before + 1, "a burst must cause one reload"
        seen = {_served_by(gw_cfg) for _ in range(12)}
        assert seen == {s.port for s in servers}  # least_conn spreads sequential requests

        gw_consul.deregister(ids[0])
        wait_for(lambda: upstream.reload_count(gw_cfg) > before + 1, 10, "a second reload")
        assert upstream.upstream_members(gw_cfg) == want - {servers[0].address}
        assert upstream.reload_count(gw_cfg) == before + 2
        assert servers[0].port not in {_served_by(gw_cfg) for _ in range(6)}
        state = upstream.read_state(gw_cfg)
        assert state["backends"] == sorted(want - {servers[0].address}) and state["last_error"] is None


def test_invalid_template_keeps_the_last_good_config(
    gw_cfg: FleetConfig, gw_consul: ConsulAgent, gw_nginx: int, gw_backends: Callable[[], EchoServer]
) -> None:
    reloader = NginxReloader(gw_cfg)
    a, b = gw_backends(), gw_backends()
    gw_consul.register(a)
    assert upstream.sync_once(gw_cfg, gw_consul.client, reloader)
    good = gateway.upstream_conf_path(gw_cfg).read_text()

    # An operator's template with a directive nginx does not know.
    override = gw_cfg.nginx_dir / "templates" / "upstream.conf.tmpl"
    override.parent.mkdir(parents=True)
    override.write_text(gateway.template_text(gw_cfg, "upstream.conf.tmpl").replace(
        "least_conn;", "least_conn;\n    no_such_directive on;"))
    gw_consul.register(b)
    with pytest.raises(ValidationError, match="no_such_directive"):
        upstream.sync_once(gw_cfg, gw_consul.client, reloader)
    assert gateway.upstream_conf_path(gw_cfg).read_text() == good
    assert upstream.reload_count(gw_cfg) == 1
    assert "no_such_directive" in upstream.read_state(gw_cfg)["last_error"]
    assert {_served_by(gw_cfg) for _ in range(4)} == {a.port}  # still serving the old upstream

    # The loop survives the same failure and applies the change once the template is fixed.
    with _loop_tolerating_failure(gw_cfg, gw_consul):
        assert gateway.upstream_conf_path(gw_cfg).read_text() == good
        override.unlink()
        wait_for(lambda: upstream.reload_count(gw_cfg) == 2, 10, "the fixed template to be applied")
        assert upstream.upstream_members(gw_cfg) == {a.address, b.address}
    assert {_served_by(gw_cfg) for _ in range(8)} == {a.port, b.port}


@contextmanager
def _loop_tolerating_failure(cfg: FleetConfig, agent: ConsulAgent) -> Iterator[None]:
    """Like _loop, but the first render fails, so wait for the recorded error instead."""
    stop = threading.Event()
    thread = threading.Thread(target=upstream.run_sync_loop, args=(cfg, agent.client, stop),
                              kwargs={"query_wait": 0.5}, daemon=True)
    before = upstream.read_state(cfg).get("last_error_at")
    thread.start()
    try:
        wait_for(lambda: upstream.read_state(cfg).get("last_error_at") != before, 10,
                 "the loop's failed render")
        yield
    finally:
        stop.set()
        thread.join(timeout=10)
        assert not thread.is_alive()


def test_consul_outage_keeps_serving_then_recovers(
    gw_cfg: FleetConfig, gw_consul: ConsulAgent, gw_nginx: int, gw_backends: Callable[[], EchoServer]
) -> None:
    a, b = gw_backends(), gw_backends()
    gw_consul.register(a)
    with _loop(gw_cfg, gw_consul) as thread:
        wait_for(lambda: upstream.upstream_members(gw_cfg) == {a.address}, 10, "a in the upstream")
        reloads = upstream.reload_count(gw_cfg)

        gw_consul.stop()
        wait_for(lambda: upstream.read_state(gw_cfg).get("consul_ok") is False, 10,
                 "the loop to see the outage")
        assert thread.is_alive()
        assert upstream.upstream_members(gw_cfg) == {a.address}  # last good upstream kept
        assert {_served_by(gw_cfg) for _ in range(4)} == {a.port}  # and the gateway keeps serving

        # A restarted dev agent has lost every registration; instances re-register.
        gw_consul.start()
        gw_consul.register(a)
        gw_consul.register(b)
        # (Depending on when the retry lands, the loop may first see the empty registry.)
        wait_for(lambda: upstream.read_state(gw_cfg).get("backends") == sorted([a.address, b.address]),
                 15, "the loop to recover and serve a and b")
        assert upstream.read_state(gw_cfg)["consul_ok"] is True
        assert upstream.reload_count(gw_cfg) > reloads
        assert {_served_by(gw_cfg) for _ in range(8)} == {a.port, b.port}
