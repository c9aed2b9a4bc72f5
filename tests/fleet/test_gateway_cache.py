"""The gateway's own cache (FLEET_GATEWAY_CACHE) against real nginx with its Lua module, a real Consul
and echo backends that number every request they see: a hit is an answer with no new number."""
from __future__ import annotations

import dataclasses
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from gw_servers import ConsulAgent, EchoServer, Gateway, wait_steady
from inproc import AppServer, FakeEngine, png

from fleetctl.config import FleetConfig
from fleetctl.gateway import keys, upstream
from fleetctl.gateway import nginx as gateway
from fleetctl.gateway.nginx import NginxReloader


def register(consul: ConsulAgent, server: EchoServer, namespace: str) -> None:
    """As an instance registers itself: with its cache namespace in the service meta."""
    consul.client.agent.service.register("ocr", service_id=f"ocr-{server.port}", address="127.0.0.1",
                                         port=server.port, meta={"cache_ns": namespace})


@pytest.fixture
def cached(gw_cfg: FleetConfig, gw_consul: ConsulAgent,
           gw_backends: Callable[[], EchoServer]) -> Iterator[Callable[..., Gateway]]:
    made: list[Gateway] = []

    def start(**changes: Any) -> Gateway:
        register(gw_consul, gw_backends(), "models-1")
        made.append(Gateway(gw_cfg.replace(gateway_cache=1, **changes), gw_consul))
        return made[-1]

    yield start
    for g in made:
        g.close()


def post(g: Gateway, body: bytes, path: str = "/api/ocr", **headers: str) -> requests.Response:
    resp = requests.post(g.url(path), data=body, headers={"Content-Type": "image/png", **headers}, timeout=10)
    return resp


def served(resp: requests.Response) -> int:
    assert resp.status_code == 200, resp.text
    return int(resp.json()["served"])


def test_a_repeat_is_answered_by_nginx_and_keys_tell_bodies_apart(cached: Callable[..., Gateway]) -> None:
    g = cached()
    image = b"\x89PNG" + bytes(range(256)) * 400
    first = post(g, image)
    again = post(g, image)
    assert first.headers["X-Cache"] == "MISS" and again.headers["X-Cache"] == "HIT"
    assert served(again) == served(first) and again.json()["body_md5"] == first.json()["body_md5"]
    assert again.headers["X-Request-ID"] != first.headers["X-Request-ID"]  # the request's own id, once
    assert "," not in again.headers["X-Request-ID"]

    # Same size, one byte apart: another key, another answer.
    other = bytearray(image)
    other[1000] ^= 1
    resp = post(g, bytes(other))
    assert resp.headers["X-Cache"] == "MISS" and served(resp) > served(first)
    assert resp.json()["body_md5"] != first.json()["body_md5"]
    # The query (format, profile, options) and the content type are in the key too.
    assert post(g, image, "/api/ocr?format=text").headers["X-Cache"] == "MISS"
    assert post(g, image, **{"Content-Type": "image/jpeg"}).headers["X-Cache"] == "MISS"
    assert post(g, image, "/api/ocr?format=text").headers["X-Cache"] == "HIT"


def test_multipart_uploads_are_answered_right(cached: Callable[..., Gateway]) -> None:
    g = cached()
    a, b = b"\x89PNG" + b"a" * 5000, b"\x89PNG" + b"b" * 5000
    answers = [requests.post(g.url(), files={"image": ("x.png", data, "image/png")}, timeout=10)
               for data in (a, b, a)]
    assert all(r.status_code == 200 for r in answers)
    # Each multipart body has its own boundary: each is its own key, and each answer is its own body's.
    assert len({r.json()["served"] for r in answers}) == 3
    assert answers[0].json()["body_md5"] != answers[1].json()["body_md5"]
    # The very same multipart bytes (same boundary) are a hit.
    body = b'--XyZ\r\nContent-Disposition: form-data; name="image"; filename="x.png"\r\n\r\n' + a + b"\r\n--XyZ--\r\n"
    ct = "multipart/form-data; boundary=XyZ"
    one, two = post(g, body, **{"Content-Type": ct}), post(g, body, **{"Content-Type": ct})
    assert served(one) == served(two) and two.headers["X-Cache"] == "HIT"


def test_bypass_cases(cached: Callable[..., Gateway], gw_consul: ConsulAgent,
                      gw_backends: Callable[[], EchoServer]) -> None:
    g = cached()
    image = b"\x89PNG" + b"z" * 20_000
    warm = served(post(g, image))
    assert served(post(g, image)) == warm
    # no-cache (and the HTTP/1.0 Pragma) runs the request again.
    assert served(post(g, image, **{"Cache-Control": "no-cache"})) > warm
    assert served(post(g, image, Pragma="no-cache")) > warm
    # Only 200s are kept: an error reaches the backend every time.
    errors = [post(g, image, "/api/ocr?status=422") for _ in range(2)]
    assert all(r.status_code == 422 for r in errors)
    assert errors[1].json()["served"] > errors[0].json()["served"]
    assert all(r.headers.get("X-Cache") != "HIT" for r in errors)
    # A body nginx spilled to a temp file (over client_body_buffer_size, 1 MB) is not hashed: bypassed.
    big = b"\x89PNG" + b"s" * (gateway.BODY_BUFFER_KB * 1024 + 1000)
    first, second = post(g, big), post(g, big)
    assert served(second) > served(first) and second.json()["body_md5"] == first.json()["body_md5"]
    # A 200 the instance does not mark cacheable (a batch has no X-Cache) is not kept.
    batch = [served(post(g, image, "/api/ocr?xcache=none")) for _ in range(2)]
    assert batch[1] > batch[0]
    # An empty body is not cached either.
    assert post(g, b"").json()["served"] < post(g, b"").json()["served"]


def test_a_model_change_is_a_new_key(cached: Callable[..., Gateway], gw_consul: ConsulAgent,
                                     gw_backends: Callable[[], EchoServer]) -> None:
    g = cached()
    image = b"\x89PNG" + b"m" * 3000
    before = served(post(g, image))
    assert served(post(g, image)) == before
    # Another instance with other models joins: while namespaces differ, nothing is cached.
    newer = gw_backends()
    register(gw_consul, newer, "models-2")
    upstream.sync_once(g.cfg, gw_consul.client, NginxReloader(g.cfg))
    assert 'default "";' in gateway.upstream_conf_path(g.cfg).read_text()
    a, b = post(g, image), post(g, image)
    assert served(a) != before and served(b) != served(a)
    # Every instance now on the new models: a new namespace, so the old entry is never served.
    for sid in [s for s in gw_consul.client.agent.services() if s != f"ocr-{newer.port}"]:
        gw_consul.deregister(sid)
    upstream.sync_once(g.cfg, gw_consul.client, NginxReloader(g.cfg))
    assert 'default "models-2";' in gateway.upstream_conf_path(g.cfg).read_text()
    fresh = post(g, image)
    assert fresh.headers["X-Cache"] == "MISS" and served(fresh) > served(b)
    assert served(post(g, image)) == served(fresh)


def test_auth_and_rate_limits_apply_to_hits(cached: Callable[..., Gateway], gw_consul: ConsulAgent) -> None:
    g = cached(auth=1, rate_burst=1)
    _, secret = keys.create(gw_consul.client, g.cfg, "hits", rate="1r/m")
    image = b"\x89PNG" + b"h" * 3000
    seen: list[requests.Response] = []

    def known() -> bool:
        seen.append(post(g, image, **{"X-API-Key": secret}))
        return seen[-1].status_code != 401

    # Known to every nginx worker: a worker of the config before the key may answer for a moment after
    # the reload. The first answer fills the cache; with 1r/m and a burst of 1 one more gets through.
    wait_steady(known, 10, "the key in every nginx worker")
    served = [r for r in seen if r.status_code == 200]
    assert len(served) == 2 and served[1].headers["X-Cache"] == "HIT", [r.status_code for r in seen]
    # Cached now, but without a key it is still a 401; the key's rate still counts hits.
    assert post(g, image).status_code == 401
    answers = [post(g, image, **{"X-API-Key": secret}) for _ in range(6)]
    assert all(r.status_code == 429 for r in answers), [r.status_code for r in answers]
    assert answers[0].json()["code"] == 42970


def test_cache_settings_are_rendered(gw_cfg: FleetConfig) -> None:
    cfg = dataclasses.replace(gw_cfg, gateway_cache=1, gateway_cache_mb=64, cache_ttl=120)
    text = gateway.render_nginx_conf(cfg)
    assert "max_size=64m inactive=120s" in text and "proxy_cache_valid 200 120s;" in text
    assert "proxy_cache_valid any" not in text
    assert "proxy_cache " not in gateway.render_nginx_conf(gw_cfg)  # off by default


def test_instances_announce_their_cache_namespace_without_loading_the_engine() -> None:
    """The gunicorn master registers in Consul: the namespace must not pull OpenCV or ONNX Runtime into it."""
    code = ("import sys; from ocr_app.config import Settings; from ocr_app.ops.registry import Registration; "
            "s = Settings(); ns = Registration(s).service_definition()['meta']['cache_ns']; "
            "other = Registration(Settings(det_limit_side=s.det_limit_side + 32)).cache_namespace; "
            "assert len(ns) == 32 and ns != other, (ns, other); "
            "assert not {'cv2', 'onnxruntime', 'rapidocr'} & set(sys.modules), sorted(sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr


def test_a_searchable_pdf_is_never_kept_by_the_gateway(gw_cfg: FleetConfig, gw_consul: ConsulAgent,
                                                        tmp_path: Path) -> None:
    """format=pdf is answered by an instance every time (its pages come from the instance's own cache),
    while the same upload as JSON is a gateway HIT the second time."""
    app = AppServer(tmp_path / "app", FakeEngine())
    g = None
    try:
        gw_consul.client.agent.service.register("ocr", service_id=f"ocr-{app.port}", address="127.0.0.1",
                                                port=app.port, meta={"cache_ns": "models-1"})
        g = Gateway(gw_cfg.replace(gateway_cache=1), gw_consul)
        image = png(7, size=(200, 100))

        def answered() -> float:
            text = requests.get(f"{app.url}/metrics", timeout=5).text
            found = re.search(r'^ocr_requests_total{status="200"} ([0-9.e+]+)$', text, re.MULTILINE)
            return float(found.group(1)) if found else 0.0

        before = answered()
        first, again = post(g, image, "/api/ocr?format=pdf"), post(g, image, "/api/ocr?format=pdf")
        for resp in (first, again):
            assert resp.status_code == 200 and resp.headers["Content-Type"] == "application/pdf"
            assert resp.content.startswith(b"%PDF-")
        assert answered() == before + 2, "both reached the instance"
        assert first.content == again.content
        json_first, json_again = post(g, image), post(g, image)
        assert json_first.status_code == json_again.status_code == 200
        assert json_again.headers["X-Cache"] == "HIT" and answered() == before + 3, "JSON is still kept"
    finally:
        if g is not None:
            g.close()
        app.close()
