"""Every error nginx itself answers is JSON in the API's error shape, with its real status and a stable code,
in each kind of location the gateway renders: the plain `location /`, the cache's `= /api/ocr` (--cache;
with keys here, which that location checks too) and the keys' `/api/` (--auth). Every kind also listens
for HTTPS (--tls). One real nginx per kind, rendered and reloaded by fleetctl's own code, in front of
upstreams the test controls; the upstream set is applied as the sync loop applies it, so no Consul.

How each status is provoked (nginx 1.22):

    400  a request line nginx cannot parse, a header line over 8 KB (494), a broken chunked body
    404  one of the gateway's internal error paths, asked for from outside
    405  TRACE and CONNECT, which nginx refuses before choosing a location
    413  a Content-Length over client_max_body_size, and a chunked body that grows past it
    414  a request line over the 8 KB buffer
    429  past the rate: per address on /api/ (plain), per key (cache, auth)
    400  plain HTTP sent to the HTTPS port (nginx's 497)
    500  a body over client_body_buffer_size while client_body_temp_path is gone, so nginx cannot spill it
    501  a Transfer-Encoding other than chunked
    502  an upstream that refuses connections
    503  no upstream at all: the gateway's own "no instance"
    504  an upstream whose listen queue is full, so the connect hangs past proxy_connect_timeout (5 s)
    505  HTTP/2.0 sent to the HTTP/1 listener

411 cannot be provoked: nginx 1.22 reads chunked bodies and never asks for a length. It is mapped all
the same, and test_every_nginx_error_maps_to_a_json_location checks that mapping in the rendered config.
"""
from __future__ import annotations

import http.client
import json
import re
import socket
import ssl
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from gw_servers import EchoServer, stop_nginx
from helpers import free_port

from fleetctl import procs
from fleetctl.config import FleetConfig
from fleetctl.gateway import access, keys, tls, upstream
from fleetctl.gateway import nginx as gateway
from fleetctl.gateway.nginx import NginxReloader
from fleetctl.gateway.upstream import Member

UPLOAD_MB = 2
BODY_BUFFER = gateway.BODY_BUFFER_KB * 1024
FREE, SLOW = "ocr_errors_free_key", "ocr_errors_slow_key"
API_KEYS = [keys.ApiKey("free", keys.key_hash(FREE)), keys.ApiKey("slow", keys.key_hash(SLOW), rate="1r/m")]
NAMESPACE = "errors-test"  # a cache namespace, so the cache location hashes and keys bodies


@dataclass(frozen=True)
class Kind:
    """One way of rendering the gateway, and a path that lands in its location."""

    changes: dict[str, Any]
    path: str
    key: str  # the X-API-Key that passes ("" with keys off)


KINDS = {
    # FLEET_RATE limits each address on /api/ only: every other request here goes to /probe (the same
    # `location /`), so the one request that may count is the rate test's.
    "plain": Kind({"rate": "1r/m"}, "/probe", ""),
    "cache": Kind({"gateway_cache": 1, "auth": 1}, "/api/ocr", FREE),
    "auth": Kind({"auth": 1}, "/api/ocr", FREE),
}


@dataclass
class Answer:
    status: int
    headers: dict[str, str]  # lower-case names
    body: bytes


class Blackhole:
    """A port that listens but never accepts, its one-place queue already taken: Linux drops the SYN of
    any further connect (tcp_abort_on_overflow is off by default), so the connect hangs."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(0)
        self.port = int(self.sock.getsockname()[1])
        self.filler = socket.create_connection(("127.0.0.1", self.port), timeout=5)

    def close(self) -> None:
        self.filler.close()
        self.sock.close()


@dataclass
class Gw:
    """A running gateway of one kind, and the upstream ports its tests switch between."""

    kind: Kind
    cfg: FleetConfig
    stub: int  # answers every request (EchoServer)
    hole: int  # never accepts a connection (Blackhole)

    def use(self, *ports: int) -> None:
        """Serve these upstream ports (none: the gateway's own 503), as the sync loop would."""
        members = [Member(f"ocr-{port}", "127.0.0.1", port, NAMESPACE) for port in ports]
        upstream.apply_members(self.cfg, members, NginxReloader(self.cfg))

    def head(self, method: str = "GET", path: str = "", *lines: str) -> str:
        """A request head for `path` (this kind's by default), with the key when keys are on."""
        key = [f"X-API-Key: {self.kind.key}"] if self.kind.key else []
        return "\r\n".join([f"{method} {path or self.kind.path} HTTP/1.1", "Host: 127.0.0.1", *key, *lines, "", ""])

    def raw(self, head: str, body: bytes = b"", *, port: int = 0, secure: bool = False) -> Answer:
        """Send exactly these bytes (requests would fix up what nginx must see broken) and read one answer."""
        port = port or (self.cfg.gateway_tls_port if secure else self.cfg.gateway_port)
        sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        if secure:  # the TLS socket takes the connection over, and closing it closes both
            cafile = str(tls.self_signed_paths(self.cfg)[0])
            sock = ssl.create_default_context(cafile=cafile).wrap_socket(sock, server_hostname="127.0.0.1")
        with sock:
            sock.sendall(head.encode("latin-1") + body)
            resp = http.client.HTTPResponse(sock)  # type: ignore[arg-type]
            resp.begin()
            with resp:
                return Answer(resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read())

    def request(self, method: str = "GET", path: str = "", data: bytes | None = None, key: str | None = None
                ) -> Answer:
        headers = {"Content-Type": "image/png"}
        key = self.kind.key if key is None else key
        if key:
            headers["X-API-Key"] = key
        resp = requests.request(method, f"{self.cfg.gateway_url}{path or self.kind.path}", data=data,
                                headers=headers, timeout=30)
        return Answer(resp.status_code, {k.lower(): v for k, v in resp.headers.items()}, resp.content)


def start(kind: Kind, home: Path, stub: int, hole: int) -> Gw:
    """nginx as `up` starts it, with the two keys in clients.conf and the stub as its one instance."""
    cfg = FleetConfig(home=home, gateway_port=free_port(), gateway_tls_port=free_port(), max_upload_mb=UPLOAD_MB,
                      rate_burst=0, tls=1).replace(**kind.changes)
    gateway.make_dirs(cfg)
    procs.write_atomic(access.clients_conf_path(cfg), access.render_clients(cfg, API_KEYS))
    procs.write_atomic(gateway.upstream_conf_path(cfg),
                       upstream.render_upstream([Member("stub", "127.0.0.1", stub, NAMESPACE)], cfg))
    procs.write_atomic(gateway.nginx_conf_path(cfg), gateway.render_nginx_conf(cfg))
    gateway.start_nginx(cfg)
    return Gw(kind, cfg, stub, hole)


@pytest.fixture(scope="module")
def stub() -> Iterator[EchoServer]:
    server = EchoServer()
    yield server
    server.close()


@pytest.fixture(scope="module")
def blackhole() -> Iterator[Blackhole]:
    hole = Blackhole()
    yield hole
    hole.close()


@pytest.fixture(scope="module", params=list(KINDS))
def gw(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, stub: EchoServer,
       blackhole: Blackhole) -> Iterator[Gw]:
    name = str(request.param)
    g = start(KINDS[name], tmp_path_factory.mktemp(f"gw-{name}") / "fleet", stub.port, blackhole.port)
    yield g
    stop_nginx(g.cfg)


def check(answer: Answer, status: int, code: int, names: str = "") -> None:
    """nginx's answer is the API's error shape with its real status, and its message names the limit."""
    assert answer.status == status, (answer.status, answer.body[:300])
    assert answer.headers.get("content-type") == "application/json", answer.headers
    assert answer.headers.get("x-request-id"), answer.headers
    body = json.loads(answer.body)
    assert body["code"] == code and body["data"] == [] and body["msg"], body
    assert names in body["msg"], body


def chunked(size: int, chunk: int = 256 * 1024) -> bytes:
    whole, rest = divmod(size, chunk)
    parts = [f"{chunk:x}\r\n".encode() + b"x" * chunk + b"\r\n"] * whole
    if rest:
        parts.append(f"{rest:x}\r\n".encode() + b"x" * rest + b"\r\n")
    return b"".join(parts) + b"0\r\n\r\n"


# --- one provocation per status: each gives (answer, status, code, what its message must name) -------

Expect = tuple[Answer, int, int, str]


def bad_request(g: Gw) -> list[Expect]:
    broken_line = g.raw("GARBAGE\r\n\r\n")
    long_header = g.raw(g.head("GET", "", "X-Pasted: " + "k" * 9000))  # nginx's 494
    # Inside the location: the body is read (and buffered, for retries) once the location is chosen.
    broken_chunk = g.raw(g.head("POST", "", "Transfer-Encoding: chunked"), b"zz\r\nnot a chunk\r\n0\r\n\r\n")
    return [(broken_line, 400, 40070, ""), (long_header, 400, 40070, "8 KB"), (broken_chunk, 400, 40070, "")]


def not_found(g: Gw) -> list[Expect]:
    return [(g.raw(g.head("GET", "/_gateway/error/500")), 404, 40401, "unknown path")]


def not_allowed(g: Gw) -> list[Expect]:
    return [(g.raw(g.head(method)), 405, 40570, "TRACE and CONNECT") for method in ("TRACE", "CONNECT")]


def too_large(g: Gw) -> list[Expect]:
    limit, names = UPLOAD_MB * 1024 * 1024, f"{UPLOAD_MB} MB limit (OCR_MAX_UPLOAD_MB)"
    declared = g.raw(g.head("POST", "", f"Content-Length: {limit + 1}"))  # refused before the body is sent
    grown = g.raw(g.head("POST", "", "Transfer-Encoding: chunked"), chunked(limit + 1))  # refused while read
    return [(declared, 413, 41301, names), (grown, 413, 41301, names)]


def uri_too_long(g: Gw) -> list[Expect]:
    return [(g.raw(g.head("GET", f"{g.kind.path}?q={'a' * 9000}")), 414, 41470, "8 KB limit")]


def plain_http_to_https_port(g: Gw) -> list[Expect]:
    answer = g.raw(g.head(), port=g.cfg.gateway_tls_port)  # nginx's 497
    # The HTTPS listener shares the server's error pages: one of them over TLS.
    secure = g.raw(g.head("GET", f"{g.kind.path}?q={'a' * 9000}"), secure=True)
    return [(answer, 400, 40071, "https://"), (secure, 414, 41470, "8 KB limit")]


def internal_error(g: Gw) -> list[Expect]:
    temp = g.cfg.nginx_dir / "tmp" / "client_body"
    away = temp.with_name("client_body.away")
    temp.rename(away)
    try:
        # Over client_body_buffer_size, so nginx must spill it to a temp file, and under the upload limit.
        answer = g.request("POST", data=b"x" * (BODY_BUFFER + 512 * 1024))
    finally:
        away.rename(temp)
    return [(answer, 500, 50070, "error log")]


def not_implemented(g: Gw) -> list[Expect]:
    return [(g.raw(g.head("POST", "", "Transfer-Encoding: gzip"), b"x"), 501, 50170, "chunked")]


def version_not_supported(g: Gw) -> list[Expect]:
    return [(g.raw(f"GET {g.kind.path} HTTP/2.0\r\nHost: 127.0.0.1\r\n\r\n"), 505, 50570, "HTTP/1.1")]


def rate_limited(g: Gw) -> list[Expect]:
    g.use(g.stub)
    # 1r/m and no burst: the first request passes and the next is refused.
    key = SLOW if g.kind.key else ""
    first = g.request("GET", "/api/ocr", key=key)
    assert first.status == 200, first.body[:300]
    second = g.request("GET", "/api/ocr", key=key)
    assert second.headers.get("retry-after") == "60"
    return [(second, 429, 42970, "rate limit")]


def bad_gateway(g: Gw) -> list[Expect]:
    g.use(free_port())  # nothing listens there
    answer = g.request("POST", data=b"x" * 1000)
    assert answer.headers.get("retry-after") == "1"
    return [(answer, 502, 50201, "")]


def no_instance(g: Gw) -> list[Expect]:
    g.use()
    answer = g.request("POST", data=b"x" * 1000)
    assert answer.headers.get("retry-after") == "1"
    assert json.loads(answer.body) == {"code": 50301, "msg": "no OCR instance is available", "data": []}
    return [(answer, 503, 50301, "")]


def timed_out(g: Gw) -> list[Expect]:
    g.use(g.hole)
    return [(g.request("GET"), 504, 50401, "5 s")]


# In this order the upstream changes (and nginx reloads) only for the last four.
CASES: dict[str, Callable[[Gw], list[Expect]]] = {
    "400": bad_request, "404": not_found, "405": not_allowed, "413": too_large, "414": uri_too_long,
    "400-https-port": plain_http_to_https_port, "500": internal_error, "501": not_implemented,
    "505": version_not_supported, "429": rate_limited, "502": bad_gateway, "503": no_instance, "504": timed_out,
}


@pytest.mark.parametrize("case", list(CASES))
def test_nginx_errors_are_json_with_their_status(gw: Gw, case: str) -> None:
    for answer, status, code, names in CASES[case](gw):
        check(answer, status, code, names)
    assert gateway.master_pid(gw.cfg) is not None  # nothing took nginx down


@pytest.mark.parametrize("status", [400, 404, 413, 429, 500, 502, 503, 504])
def test_an_instances_own_errors_pass_through_untouched(gw: Gw, status: int) -> None:
    """Only nginx's own errors are replaced: an instance's answer keeps its status, body and headers."""
    gw.use(gw.stub)
    answer = gw.request("POST", f"{gw.kind.path}?status={status}", data=b"\x89PNG" + b"x" * 1000)
    assert answer.status == status
    assert json.loads(answer.body)["body_bytes"] == 1004  # the stub's own echo, not a gateway error
    assert answer.headers["content-type"] == "application/json" and answer.headers["x-cache"] == "MISS"


# --- the rendered config: what maps where ------------------------------------------------------

# nginx's codes that reach error_page in this config, and the status each answers with (494 and 497
# are nginx's own names for a 400); 411 is here though nginx 1.22 never sends it.
MAPPED = {400: 400, 494: 400, 401: 401, 404: 404, 405: 405, 411: 411, 413: 413, 414: 414, 429: 429, 497: 400,
          500: 500, 501: 501, 502: 502, 503: 503, 504: 504, 505: 505}
SAMPLES = {"$fleet_auth_code": "40170", "$fleet_auth_msg": "no key", "$fleet_retry_after": "60"}


def _unquoted(line: str) -> str:
    return re.sub(r"'[^']*'|\"[^\"]*\"", "''", line.split("#", 1)[0])


@pytest.mark.parametrize("kind", list(KINDS))
def test_every_nginx_error_maps_to_a_json_location(kind: str, tmp_path: Path) -> None:
    cfg = FleetConfig(home=tmp_path / "fleet", max_upload_mb=UPLOAD_MB, tls=1).replace(**KINDS[kind].changes)
    text = gateway.render_nginx_conf(cfg)
    depth, pages = 0, {}
    for line in text.splitlines():
        bare = _unquoted(line).strip()
        if bare.startswith("error_page"):
            # http { server { ... } }: at server level, so no location replaces the list with one of its own.
            assert depth == 2, line
            *codes, uri = bare.rstrip(";").split()[1:]
            pages.update((int(code), uri) for code in codes)
        depth += bare.count("{") - bare.count("}")
    assert {code: MAPPED[code] for code in pages} == MAPPED
    for code, uri in pages.items():
        block = re.search(r"location = " + re.escape(uri) + r" \{(.*?)\n\s*\}", text, re.DOTALL)
        assert block, uri
        body = block.group(1)
        assert "internal;" in body and "default_type application/json;" in body and "X-Request-ID" in body
        returned = re.search(r"return (\d+) '(.*)';", body)
        assert returned and int(returned.group(1)) == MAPPED[code], body
        shape = returned.group(2)
        for variable, sample in SAMPLES.items():
            shape = shape.replace(variable, sample)
        error = json.loads(shape)
        assert set(error) == {"code", "msg", "data"} and error["data"] == [] and error["msg"]
        assert str(error["code"]).startswith(str(MAPPED[code])), error
