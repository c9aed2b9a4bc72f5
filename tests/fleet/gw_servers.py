"""Real servers for the gateway tests: a restartable Consul agent and tiny HTTP echo backends."""
from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Protocol

import consul
import requests
from helpers import Proc, consul_binary, free_port, spawn, wait_for


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


class _Handler(BaseHTTPRequestHandler):
    """Answers every request with JSON naming this backend and echoing what nginx sent."""

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        payload = json.dumps({
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
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
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
