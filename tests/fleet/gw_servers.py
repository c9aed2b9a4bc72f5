"""Real servers for the gateway tests: a restartable Consul agent and tiny HTTP echo backends."""
from __future__ import annotations

import hashlib
import json
import re
import signal
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Protocol
from urllib.parse import parse_qs, urlsplit

import consul
import requests
from helpers import Proc, consul_binary, free_port, spawn, wait_for

from fleetctl import procs
from fleetctl.config import FleetConfig
from fleetctl.daemons import pidfiles
from fleetctl.gateway import access, upstream
from fleetctl.gateway import nginx as gateway
from fleetctl.gateway.nginx import NginxReloader


class HasPort(Protocol):
    """A backend on 127.0.0.1: an EchoServer here, or the app itself (tests/inproc.py AppServer)."""

    port: int


class ConsulAgent:
    """A Consul dev agent on a fixed HTTP port that a test can stop and start again."""

    def __init__(self, workdir: Path, port: int) -> None:
        self.workdir = workdir
        self.port = port
        self.proc: Proc | None = None
        self.client = consul.Consul(host="127.0.0.1", port=port, connections_timeout=5)

    @property
    def addr(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        self.proc = spawn(
            [consul_binary(), "agent", "-dev", "-bind", "127.0.0.1", "-client", "127.0.0.1",
             "-http-port", str(self.port), "-dns-port", "-1", "-grpc-port", "-1",
             "-serf-lan-port", str(free_port()), "-serf-wan-port", "-1",
             "-server-port", str(free_port()), "-log-level", "warn"],
            self.workdir / "consul.log",
        )
        wait_for(lambda: requests.get(f"http://{self.addr}/v1/status/leader", timeout=1).json(),
                 30, f"a Consul leader on {self.addr}")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop()
            self.proc = None

    def register(self, server: HasPort, service: str = "ocr") -> str:
        """Register `server` with no check, so it is passing at once (the instance's real
        HTTP check is the app's business, tested there)."""
        sid = f"{service}-127.0.0.1-{server.port}"
        self.client.agent.service.register(service, service_id=sid, address="127.0.0.1", port=server.port)
        return sid

    def deregister(self, sid: str) -> None:
        self.client.agent.service.deregister(sid)

    def close(self) -> None:
        self.client.http.session.close()


_COUNT = [0]
_COUNT_LOCK = threading.Lock()


class _Handler(BaseHTTPRequestHandler):
    """Answers every request with JSON naming this backend and echoing what nginx sent."""

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        with _COUNT_LOCK:
            _COUNT[0] += 1
            served = _COUNT[0]
        # ?status=NNN answers with that status (the gateway cache must not keep it).
        status = int(parse_qs(urlsplit(self.path).query).get("status", ["200"])[0])
        payload = json.dumps({
            "served": served,  # a new number each time a request reaches a backend (not a cache hit)
            "body_md5": hashlib.md5(body).hexdigest(),
            "content_type": self.headers.get("Content-Type"),
            "port": self.server.server_address[1],
            "path": self.path,
            "method": self.command,
            "body_bytes": len(body),
            "request_id": self.headers.get("X-Request-ID"),
            # What the gateway passes on about the caller (API keys: docs/gateway.md).
            "client": self.headers.get("X-Client"),
            "authorization": self.headers.get("Authorization"),
            "api_key": self.headers.get("X-API-Key"),
        }).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        if "xcache=none" not in self.path:  # as the app's batch answers: no X-Cache
            self.send_header("X-Cache", "MISS")
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("X-Request-ID", self.headers.get("X-Request-ID") or "")
        self.end_headers()
        self.wfile.write(payload)

    do_GET = _answer
    do_POST = _answer

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib signature
        pass


class EchoServer:
    """A real HTTP server in a thread, standing in for an OCR instance."""

    def __init__(self) -> None:
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.server.daemon_threads = True
        self.port = int(self.server.server_address[1])
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


SERVER_LINE = re.compile(r"^\s*server\s+(\S+)([^;]*);")


def rendered_members(cfg: FleetConfig) -> set[str]:
    """'host:port' of every live server in the upstream.conf on disk (what nginx is being given)."""
    path = gateway.upstream_conf_path(cfg)
    text = path.read_text(encoding="utf-8") if path.is_file() else ""
    matches = (SERVER_LINE.match(line) for line in text.splitlines())
    return {m.group(1) for m in matches if m and "down" not in m.group(2).split()}


def stop_nginx(cfg: FleetConfig) -> None:
    """Stop a test's nginx as `down` does: SIGQUIT, so in-flight requests finish."""
    pidfiles.stop(cfg, "nginx", sig=signal.SIGQUIT, grace=5)


class Gateway:
    """One gateway as `up` runs it: nginx plus the sync loop's two watches (instances and keys)."""

    def __init__(self, cfg: FleetConfig, consul: ConsulAgent) -> None:
        self.cfg = cfg
        gateway.make_dirs(cfg)
        procs.write_atomic(gateway.nginx_conf_path(cfg), gateway.render_nginx_conf(cfg))
        procs.write_atomic(gateway.upstream_conf_path(cfg), upstream.render_upstream([], cfg))
        procs.write_atomic(access.clients_conf_path(cfg), access.render_clients(cfg, []))
        gateway.start_nginx(cfg)
        upstream.sync_once(cfg, consul.client, NginxReloader(cfg))
        self.stop = threading.Event()
        self.thread = threading.Thread(
            target=access.run_keys_loop, daemon=True,
            args=(cfg, consul.client, self.stop, threading.Lock(), NginxReloader(cfg)),
            kwargs={"query_wait": 1.0},
        )
        self.thread.start()

    def url(self, path: str = "/api/ocr") -> str:
        return f"{self.cfg.gateway_url}{path}"

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=10)
        stop_nginx(self.cfg)


def wait_steady(predicate: Callable[[], object], timeout: float, what: str, times: int = 5) -> None:
    """Poll until `predicate` holds `times` in a row: while nginx reloads, a worker of the old config
    may still answer for a moment after a new one first did."""
    streak = [0]

    def check() -> bool:
        streak[0] = streak[0] + 1 if predicate() else 0
        return streak[0] >= times

    wait_for(check, timeout, what, interval=0.02)
