"""`fleetctl up --auth --tls` for real: OCR instances, Consul, Redis and nginx on free loopback ports,
fleetctl as a subprocess. A key works over HTTP and HTTPS, its name reaches the instance's log, a revoked
one gets 401 within 5 s, and `up` without the flags goes back to today's open plain-HTTP gateway."""
from __future__ import annotations

import io
import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from helpers import find_font, free_port, wait_for
from test_fleet_integration import Fleet, make_fleet, teardown_fleet


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    f = make_fleet(tmp_path_factory.mktemp("gwfleet"), "process")
    f.env["FLEET_GATEWAY_TLS_PORT"] = str(free_port())
    try:
        yield f
    finally:
        teardown_fleet(f)


def bmp_with(word: str) -> bytes:
    """A BMP: uncompressed, so two of one size are byte-for-byte the same length."""
    from PIL import Image, ImageDraw, ImageFont

    img = Image.new("RGB", (360, 80), "white")
    ImageDraw.Draw(img).text((16, 14), word, fill="black",
                             font=ImageFont.truetype(find_font("DejaVuSans.ttf"), 44))
    buf = io.BytesIO()
    img.save(buf, format="BMP")
    return buf.getvalue()


def post(url: str, image: bytes, **kwargs: object) -> requests.Response:
    return requests.post(f"{url}/api/ocr", data=image, headers={"Content-Type": "image/png",
                         **kwargs.pop("headers", {})}, timeout=120, **kwargs)  # type: ignore[arg-type]


def test_up_auth_tls_keys_revoke_then_up_without_flags(fleet: Fleet) -> None:
    out = fleet.run("up", "-n", "1", "--auth", "--tls", "--cache", timeout=400).stdout.splitlines()
    http, https = out[-2], out[-1]
    assert http == fleet.gateway and https.startswith("https://127.0.0.1:")
    ca = Path(fleet.home) / "tls" / "gateway.crt"
    nginx = fleet.status()["services"]["nginx"]
    assert nginx["auth"] is True and nginx["tls"] == https and nginx["gateway_cache"] is True
    image = fleet.image_path.read_bytes()

    resp = post(http, image)
    assert resp.status_code == 401 and resp.json()["code"] == 40170
    key = fleet.run("keys", "create", "acme", "--rate", "600r/m").stdout.splitlines()[-1]
    rid = f"gw-{uuid.uuid4().hex}"
    ok = wait_for(lambda: (r := post(http, image, headers={"Authorization": f"Bearer {key}",
                                                            "X-Request-ID": rid})).ok and r, 30, "the new key")
    assert isinstance(ok, requests.Response) and "fleet" in json.dumps(ok.json()).lower()
    # (polled: right after a key appears, a worker of the previous config may answer once more)
    resp = wait_for(lambda: (r := post(https, image, headers={"X-API-Key": key}, verify=str(ca))).ok and r,
                    10, "the key over HTTPS")
    assert isinstance(resp, requests.Response) and "fleet" in json.dumps(resp.json()).lower()
    # The instance logged the key's name as the client; the gateway logged it too.
    logged = [json.loads(line) for line in fleet.run("logs", "--json", "--grep", rid).stdout.splitlines()]
    assert any(o["source"].startswith("ocr-") and o.get("client") == "acme" for o in logged), logged
    assert any(o["source"] == "gateway" and o.get("client") == "acme" for o in logged), logged
    assert requests.get(f"{http}/metrics", timeout=10).status_code == 404
    # The instance announces its cache namespace; the same upload again is answered by nginx itself.
    _, entries = fleet.consul().health.service("ocr", passing=True)
    assert entries and all(len(e["Service"]["Meta"]["cache_ns"]) > 16 for e in entries)
    hit = post(http, image, headers={"X-API-Key": key, "X-Request-ID": rid + "-2"})
    assert hit.ok and hit.headers["X-Cache"] == "HIT" and hit.json()["data"] == ok.json()["data"]
    logged = [json.loads(line) for line in fleet.run("logs", "--json", "--grep", rid + "-2").stdout.splitlines()]
    assert [o.get("gateway_cache") for o in logged] == ["HIT"], logged  # no instance saw it
    # Two different images of exactly the same byte size: each gets its own text, also when repeated.
    pair = [bmp_with("ALPHA"), bmp_with("OMEGA")]
    assert len(pair[0]) == len(pair[1]) and pair[0] != pair[1]
    for _ in range(2):
        texts = [" ".join(d["text"] for d in post(http, img, headers={"X-API-Key": key}).json()["data"])
                 for img in pair]
        assert "ALPHA" in texts[0].upper() and "OMEGA" in texts[1].upper(), texts
    # A multipart upload is answered right too (its own boundary: its own key).
    for _ in range(2):
        resp = requests.post(f"{http}/api/ocr", files={"image": ("a.bmp", pair[1], "image/bmp")},
                             headers={"X-API-Key": key}, timeout=120)
        assert resp.ok and "OMEGA" in json.dumps(resp.json()).upper()

    fleet.run("keys", "revoke", "acme")
    # Within 5 s on both listeners (while nginx reloads, an old worker may still answer one request).
    wait_for(lambda: post(http, image, headers={"X-API-Key": key}).status_code == 401
             and post(https, image, headers={"X-API-Key": key}, verify=str(ca)).status_code == 401,
             5, "the revoked key refused over HTTP and HTTPS")

    # `up` without flags: today's gateway again (open, plain HTTP only).
    fleet.run("up", "-n", "1", timeout=400)
    assert post(http, image).ok
    nginx = fleet.status()["services"]["nginx"]
    assert nginx["auth"] is False and nginx["tls"] is None and nginx["gateway_cache"] is False
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{https}/nginx-health", verify=str(ca), timeout=5)
