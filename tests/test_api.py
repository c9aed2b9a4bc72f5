"""The instance's HTTP API against a real gunicorn instance with real Redis and Consul."""
from __future__ import annotations

import base64
import io
import re
import struct
import zipfile
import zlib
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from helpers import Proc, bad_input_failures, text_image, unique_tag, worker_pids
from PIL import Image


def url(instance: Proc, path: str = "/api/ocr") -> str:
    return f"{instance.extra['url']}{path}"


def metric(instance: Proc, name: str, labels: str = "") -> float:
    text = requests.get(url(instance, "/metrics"), timeout=5).text
    pattern = re.escape(name + (f"{{{labels}}}" if labels else "")) + r" ([0-9.e+-]+)"
    found = re.search(r"^" + pattern + r"$", text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


def texts(resp: requests.Response) -> str:
    return " ".join(line["text"] for line in resp.json()["data"])


def unique_image(word: str = "Fleet") -> bytes:
    """An image nobody has cached yet: the id changes the bytes, the word is what we read back."""
    return text_image(f"{word} {unique_tag()}")


def test_multipart_returns_text_with_boxes(instance: Proc) -> None:
    resp = requests.post(url(instance), files={"image": ("x.jpg", text_image("Hello Fleet"))}, timeout=60)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["code"] == 0 and body["msg"] == "success"
    assert "Hello Fleet" in texts(resp)
    line = body["data"][0]
    assert 0.5 < line["confidence"] <= 1.0
    assert len(line["box"]) == 4 and all(len(p) == 2 for p in line["box"])
    assert body["instance"] == instance.extra["id"] == resp.headers["X-Instance"]
    assert resp.headers["X-Cache"] in ("MISS", "HIT")
    assert isinstance(body["cost_time"], float)


@pytest.mark.parametrize("field", ["file", "image_file"])
def test_multipart_field_aliases(instance: Proc, field: str) -> None:
    resp = requests.post(url(instance), files={field: ("a.png", text_image("Alias OK", fmt="PNG"))}, timeout=60)
    assert resp.status_code == 200, resp.text
    assert "Alias OK" in texts(resp)


def test_raw_body(instance: Proc) -> None:
    resp = requests.post(url(instance), data=text_image("Raw Body"), headers={"Content-Type": "image/jpeg"},
                         timeout=60)
    assert resp.status_code == 200, resp.text
    assert "Raw Body" in texts(resp)


def test_octet_stream_body(instance: Proc) -> None:
    resp = requests.post(url(instance), data=text_image("Octet 7", fmt="PNG"),
                         headers={"Content-Type": "application/octet-stream"}, timeout=60)
    assert resp.status_code == 200 and "Octet 7" in texts(resp)


def test_json_base64_with_data_url(instance: Proc) -> None:
    encoded = base64.b64encode(text_image("Base Sixty Four")).decode()
    for value in (encoded, f"data:image/jpeg;base64,{encoded}"):
        resp = requests.post(url(instance), json={"image_base64": value}, timeout=60)
        assert resp.status_code == 200, resp.text
        assert "Base Sixty Four" in texts(resp)


def test_chinese_text(instance: Proc) -> None:
    image = text_image("你好世界", font="wqy-zenhei.ttc", size=(480, 160), font_size=64)
    resp = requests.post(url(instance), files={"image": ("zh.png", image)}, timeout=60)
    assert resp.status_code == 200
    assert "你好世界" in texts(resp)
    assert "你好世界" in resp.content.decode()  # real UTF-8, not \\u escapes


def test_image_without_text_is_empty_success(instance: Proc) -> None:
    buf = io.BytesIO()
    Image.new("RGB", (320, 240), "white").save(buf, "PNG")
    resp = requests.post(url(instance), files={"image": ("blank.png", buf.getvalue())}, timeout=60)
    assert resp.status_code == 200
    assert resp.json()["data"] == [] and resp.json()["code"] == 0


def test_repeat_upload_is_a_cache_hit(instance: Proc) -> None:
    image = unique_image("Cache")
    first = requests.post(url(instance), files={"image": ("c.jpg", image)}, timeout=60)
    second = requests.post(url(instance), files={"image": ("other-name.jpg", image)}, timeout=60)
    assert first.headers["X-Cache"] == "MISS" and first.json()["cached"] is False
    assert second.headers["X-Cache"] == "HIT" and second.json()["cached"] is True
    assert second.json()["data"] == first.json()["data"]


def test_no_cache_header_bypasses_lookup_but_stores(instance: Proc) -> None:
    image = unique_image("Bypass")
    runs = metric(instance, "ocr_engine_runs_total")
    bypass = requests.post(url(instance), data=image, timeout=60,
                           headers={"Content-Type": "image/jpeg", "Cache-Control": "no-cache"})
    assert bypass.headers["X-Cache"] == "BYPASS"
    again = requests.post(url(instance), data=image, headers={"Content-Type": "image/jpeg"}, timeout=60)
    assert again.headers["X-Cache"] == "HIT"
    assert metric(instance, "ocr_engine_runs_total") == runs + 1


def test_concurrent_identical_uploads_run_the_model_once(instance: Proc) -> None:
    image = unique_image("Flight")
    runs = metric(instance, "ocr_engine_runs_total")
    coalesced = metric(instance, "ocr_cache_events_total", 'result="coalesced"')

    def post(_: int) -> requests.Response:
        return requests.post(url(instance), data=image, headers={"Content-Type": "image/jpeg"}, timeout=120)

    with ThreadPoolExecutor(8) as pool:
        responses = list(pool.map(post, range(8)))
    assert all(r.status_code == 200 for r in responses)
    states = sorted(r.headers["X-Cache"] for r in responses)
    assert states.count("MISS") == 1, states
    assert set(states) <= {"MISS", "COALESCED", "HIT"}
    assert metric(instance, "ocr_engine_runs_total") == runs + 1
    assert metric(instance, "ocr_cache_events_total", 'result="coalesced"') == \
        coalesced + states.count("COALESCED")
    assert len({r.content.split(b',"cost_time"')[0] for r in responses}) == 1


def test_metrics_cover_requests_latency_and_inflight(instance: Proc) -> None:
    text = requests.get(url(instance, "/metrics"), timeout=5).text
    for name in ("ocr_requests_total{status=\"200\"}", "ocr_request_seconds_bucket", "ocr_inference_seconds_count",
                 "ocr_inflight_requests", "ocr_rejections_total", "ocr_cache_events_total{result=\"hit\"}"):
        assert name in text, name


def test_health_and_ready(instance: Proc) -> None:
    assert requests.get(url(instance, "/health"), timeout=5).json()["status"] == "ok"
    ready = requests.get(url(instance, "/ready"), timeout=5)
    assert ready.status_code == 200 and ready.json()["cache"] is True


def test_registered_and_passing_in_consul(instance: Proc, consul_agent: Proc) -> None:
    entries = requests.get(f"http://{consul_agent.extra['addr']}/v1/health/service/ocr?passing=1",
                           timeout=5).json()
    ids = {e["Service"]["ID"]: e for e in entries}
    assert instance.extra["id"] in ids
    service = ids[instance.extra["id"]]["Service"]
    assert service["Port"] == instance.extra["port"] and service["Address"] == "127.0.0.1"


# ---- bad input: every case gets its documented 4xx JSON, and no worker dies ----

def _chunk(kind: bytes, payload: bytes) -> bytes:
    body = kind + payload
    return struct.pack(">I", len(payload)) + body + struct.pack(">I", zlib.crc32(body))


def _png_header(width: int, height: int, with_data: bool = False) -> bytes:
    """A PNG whose header claims width x height; optionally a tiny IDAT so it parses."""
    png = b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
    return png + (_chunk(b"IDAT", zlib.compress(b"\0" * 64)) if with_data else b"")


def _zip_bytes() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("a.txt", "hello")
    return buf.getvalue()


def _image(fmt: str, size: tuple[int, int] = (64, 64)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, "white").save(buf, fmt)
    return buf.getvalue()


JPEG = text_image("Truncated")
PNG = text_image("Truncated", fmt="PNG")
RAW = {"Content-Type": "image/jpeg"}

# (name, request kwargs, status, code)
BAD_INPUTS: list[tuple[str, dict[str, object], int, int]] = [
    ("empty raw body", {"data": b"", "headers": RAW}, 400, 40001),
    ("empty multipart file", {"files": {"image": ("e.jpg", b"")}}, 400, 40001),
    ("no body, no type", {}, 400, 40001),
    ("truncated jpeg", {"data": JPEG[: len(JPEG) // 2], "headers": RAW}, 422, 42201),
    ("truncated png", {"data": PNG[: len(PNG) // 2], "headers": RAW}, 422, 42201),
    ("png header only", {"data": _png_header(100, 100), "headers": RAW}, 422, 42201),
    ("png 100x100 with no pixels", {"data": _png_header(100, 100, with_data=True), "headers": RAW}, 422, 42201),
    ("png claiming 8000x8000 (64 MP)", {"data": _png_header(8000, 8000, with_data=True), "headers": RAW},
     422, 42202),
    ("text file", {"files": {"image": ("notes.jpg", b"just some text, not an image\n")}}, 415, 41501),
    ("html", {"data": b"<!doctype html><html><body>hi</body></html>", "headers": RAW}, 415, 41501),
    ("zip", {"files": {"image": ("a.png", _zip_bytes())}}, 415, 41501),
    ("gif is not allowed", {"data": _image("GIF"), "headers": RAW}, 415, 41501),
    ("pdf without a trailer", {"data": b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj<<>>endobj\n", "headers": RAW}, 422,
     42235),
    ("svg", {"data": b'<svg xmlns="http://www.w3.org/2000/svg"></svg>', "headers": RAW}, 415, 41501),
    ("1x1 image", {"data": _image("PNG", (1, 1)), "headers": RAW}, 422, 42203),
    ("png claiming 60000x60000", {"data": _png_header(60000, 60000, with_data=True), "headers": RAW}, 422, 42202),
    ("25 MB body", {"data": b"\xff\xd8\xff" + b"\0" * (25 * 1024 * 1024), "headers": RAW}, 413, 41301),
    ("broken multipart", {"data": b"--xyz\r\nContent-Disposition: form-data; name=\"image\"\r\n\r\nabc",
                          "headers": {"Content-Type": "multipart/form-data; boundary=abc"}}, 400, 40001),
    ("multipart without boundary", {"data": b"whatever", "headers": {"Content-Type": "multipart/form-data"}},
     400, 40002),
    ("wrong field name", {"files": {"picture": ("x.jpg", JPEG)}}, 400, 40001),
    ("image sent as text field", {"data": {"image": "not a file"}}, 415, 41502),
    ("bad base64", {"json": {"image_base64": "!!!not base64!!!"}}, 400, 40003),
    ("data url without payload", {"json": {"image_base64": "data:image/png;base64"}}, 400, 40003),
    ("json without image", {"json": {"img": "abc"}}, 400, 40001),
    ("json not an object", {"json": ["image_base64"]}, 400, 40002),
    ("malformed json", {"data": b"{not json", "headers": {"Content-Type": "application/json"}}, 400, 40002),
    ("json nested 100,000 deep", {"data": b"[" * 100_000 + b"]" * 100_000,
                                  "headers": {"Content-Type": "application/json"}}, 400, 40004),
    ("json of 20 MB of [", {"data": b"[" * (20 << 20), "headers": {"Content-Type": "application/json"}}, 400, 40004),
    # wide, not deep: 6 million empty arrays would cost the parser ~600 MB
    ("json of 19 MB of [],", {"data": b"[" + b"[]," * (6 << 20) + b"[]]",
                              "headers": {"Content-Type": "application/json"}}, 400, 40004),
    ("wrong content type", {"data": b"hello", "headers": {"Content-Type": "text/plain"}}, 415, 41502),
    ("webp garbage", {"data": b"RIFF\x10\x00\x00\x00WEBPVP8 " + b"\x01" * 32, "headers": RAW}, 422, 42201),
    ("bmp header only", {"data": b"BM" + b"\x00" * 20, "headers": RAW}, 422, 42201),
    ("tiff header only", {"data": b"II*\x00\x08\x00\x00\x00", "headers": RAW}, 422, 42201),
]


def test_bad_inputs_get_documented_errors_and_workers_survive(instance: Proc) -> None:
    before = worker_pids(instance.pid)
    assert len(before) == 2
    failures = bad_input_failures(url(instance), BAD_INPUTS)
    assert not failures, "\n".join(failures)
    assert len(BAD_INPUTS) >= 20
    assert worker_pids(instance.pid) == before
    assert requests.post(url(instance), files={"image": ("ok.jpg", text_image("Still Alive"))},
                         timeout=60).status_code == 200


def test_unknown_route_and_method_are_json(instance: Proc) -> None:
    missing = requests.get(url(instance, "/nope"), timeout=5)
    assert missing.status_code == 404 and missing.json()["code"] == 40401
    wrong = requests.get(url(instance), timeout=5)
    assert wrong.status_code == 405 and wrong.json()["code"] == 40501


def test_raw_body_hits_answer_like_the_full_api(instance: Proc) -> None:
    """Raw-body hits are served below Flask; they must look the same as any other hit."""
    image = unique_image("Fast Path")
    requests.post(url(instance), data=image, headers=RAW, timeout=60)
    hits_before = metric(instance, "ocr_cache_events_total", 'result="hit"')
    ok_before = metric(instance, "ocr_requests_total", 'status="200"')
    raw = requests.post(url(instance), data=image, headers=RAW, timeout=60)
    multipart = requests.post(url(instance), files={"image": ("f.jpg", image)}, timeout=60)
    for resp in (raw, multipart):
        assert resp.status_code == 200 and resp.headers["X-Cache"] == "HIT"
        assert resp.headers["X-Instance"] == instance.extra["id"]
        assert resp.headers["Content-Type"] == "application/json"
    strip = lambda r: {k: v for k, v in r.json().items() if k != "cost_time"}  # noqa: E731
    assert strip(raw) == strip(multipart)
    assert metric(instance, "ocr_cache_events_total", 'result="hit"') == hits_before + 2
    assert metric(instance, "ocr_requests_total", 'status="200"') == ok_before + 2
