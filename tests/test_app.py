"""The app in-process: create_app() with a fake engine and Flask's test client (no gunicorn, no models).

What needs real servers (workers, Redis, Consul, the gateway) is tested against them elsewhere;
this tier covers admission, the fast path, the not-ready wait and the error mapping.
"""
from __future__ import annotations

import base64
import io
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from helpers import wait_for
from inproc import RAW, FakeEngine, build_app, png
from PIL import Image

from ocr_app import Settings, create_app
from ocr_app.http.app_services import job_workers_of, services_of
from ocr_app.http.fastpath import CacheHitFastPath


def build(tmp_path: Path, engine: FakeEngine | None = None, *, factory: Callable[[Settings], Any] | None = None,
          **overrides: Any) -> Flask:
    return build_app(tmp_path / "run", engine, factory=factory, **overrides)


@pytest.fixture
def app(tmp_path: Path) -> Flask:
    return build(tmp_path)


@pytest.fixture
def client(app: Flask) -> Iterator[FlaskClient]:
    with app.test_client() as c:
        yield c


def metric(client: FlaskClient, line_start: str) -> float:
    text = client.get("/metrics").get_data(as_text=True)
    for line in text.splitlines():
        if line.startswith(line_start + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_service_and_images_do_not_import_flask() -> None:
    code = ("import sys, ocr_app.service.ocr_service, ocr_app.documents.images, ocr_app.errors; "
            "assert 'flask' not in sys.modules and 'werkzeug' not in sys.modules, sorted(sys.modules)")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_the_worker_exit_hook_finds_the_apps_job_consumers() -> None:
    app = create_app({"redis_url": "", "consul_addr": ""}, load_engine=False, background=False)
    assert job_workers_of(app) is None, "no Redis: no consumers to stop"
    assert job_workers_of(None) is None and job_workers_of(object()) is None, "not our app: nothing to stop"
    consumers = object()
    services_of(app).job_workers = consumers  # type: ignore[assignment]
    assert job_workers_of(app) is consumers


def test_ocr_miss_then_hit(client: FlaskClient) -> None:
    image = png(1)
    first = client.post("/api/ocr", data=image, headers=RAW)
    assert first.status_code == 200, first.get_data(as_text=True)
    assert first.headers["X-Cache"] == "MISS" and first.headers["X-Instance"] == "inproc"
    body = first.get_json()
    assert body["code"] == 0 and body["data"][0]["text"] == "fake text" and body["cached"] is False
    second = client.post("/api/ocr", data=image, headers=RAW)
    assert second.headers["X-Cache"] == "HIT" and second.get_json()["cached"] is True
    assert second.get_json()["data"] == body["data"]


# --- admission -------------------------------------------------------------------------------

@pytest.mark.parametrize("max_queue", [0, 2])
def test_queue_full_gets_503_and_queued_work_completes(tmp_path: Path, max_queue: int) -> None:
    gate = threading.Event()
    engine = FakeEngine(Settings(), gate=gate)
    app = build(tmp_path, engine, max_queue=max_queue)
    held = max_queue + 1  # one running, max_queue waiting
    results: list[int] = []

    def send(seed: int) -> None:
        results.append(app.test_client().post("/api/ocr", data=png(seed), headers=RAW).status_code)

    threads = [threading.Thread(target=send, args=(seed,)) for seed in range(held)]
    for t in threads:
        t.start()
    service = services_of(app).ocr
    wait_for(lambda: service.admission.in_use == held and engine.running == 1, 10,
             f"{held} requests admitted, one inside the engine (the rest wait for a decode slot)")
    client = app.test_client()
    refused = client.post("/api/ocr", data=png(100), headers=RAW)
    assert refused.status_code == 503
    assert refused.get_json() == {
        "code": 50302, "data": [],
        "msg": f"the instance is busy: more than {max_queue} OCR jobs are queued (OCR_MAX_QUEUE)"}
    assert refused.headers["Retry-After"] == "1"
    assert metric(client, 'ocr_rejections_total{reason="queue_full"}') == 1
    assert metric(client, "ocr_inflight_requests") == held
    # Reads never queue behind OCR work.
    assert client.get("/ready").status_code == 200 and client.get("/health").status_code == 200
    gate.set()
    for t in threads:
        t.join(30)
    assert results == [200] * held
    assert metric(client, "ocr_inflight_requests") == 0
    assert client.post("/api/ocr", data=png(100), headers=RAW).status_code == 200  # room again


def test_cache_hits_are_served_while_the_queue_is_full(tmp_path: Path) -> None:
    gate = threading.Event()
    engine = FakeEngine(Settings(), gate=gate)
    app = build(tmp_path, engine, max_queue=0)
    known = png(7)
    gate.set()
    assert app.test_client().post("/api/ocr", data=known, headers=RAW).status_code == 200
    gate.clear()
    busy = threading.Thread(target=lambda: app.test_client().post("/api/ocr", data=png(8), headers=RAW))
    busy.start()
    wait_for(lambda: engine.running == 1, 10, "a request inside the engine")
    client = app.test_client()
    files = {"image": (io.BytesIO(known), "known.png")}
    assert client.post("/api/ocr", data=known, headers=RAW).headers["X-Cache"] == "HIT"
    assert client.post("/api/ocr", data={**files}, content_type="multipart/form-data").status_code == 200
    gate.set()
    busy.join(30)


# --- the WSGI fast path -----------------------------------------------------------------------

class CountingApp:
    """Counts the requests that reach the Flask app behind the fast path."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.calls = 0

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        self.calls += 1
        return self.app(environ, start_response)


def count_flask_calls(app: Flask) -> CountingApp:
    """Put a counter between the fast path (inside the access log) and the Flask app."""
    fast = app.wsgi_app.app  # type: ignore[attr-defined]
    assert isinstance(fast, CacheHitFastPath)
    fast.app = CountingApp(fast.app)
    return fast.app


def test_fast_path_serves_raw_hits_below_flask_with_the_same_answer(app: Flask, client: FlaskClient) -> None:
    behind = count_flask_calls(app)
    image = png(2)
    miss = client.post("/api/ocr", data=image, headers=RAW)
    assert miss.headers["X-Cache"] == "MISS" and behind.calls == 1
    hit = client.post("/api/ocr", data=image, headers=RAW)
    assert hit.headers["X-Cache"] == "HIT" and behind.calls == 1, "a raw hit must not reach Flask"
    assert hit.headers["X-Instance"] == "inproc" and hit.headers["Content-Type"] == "application/json"
    full = client.post("/api/ocr", data={"image": (io.BytesIO(image), "a.png")}, content_type="multipart/form-data")
    assert full.headers["X-Cache"] == "HIT" and behind.calls == 2
    strip = ("cost_time",)
    assert ({k: v for k, v in hit.get_json().items() if k not in strip}
            == {k: v for k, v in full.get_json().items() if k not in strip})
    assert metric(client, 'ocr_requests_total{status="200"}') == 3


@pytest.mark.parametrize("headers", [
    {"Content-Type": "image/png", "Cache-Control": "no-cache"},  # bypass: always runs the model
    {"Content-Type": "text/plain"},  # not an image type: Flask's error
])
def test_fast_path_passes_everything_else_to_flask(app: Flask, client: FlaskClient, headers: dict[str, str]) -> None:
    image = png(3)
    assert client.post("/api/ocr", data=image, headers=RAW).status_code == 200
    behind = count_flask_calls(app)
    resp = client.post("/api/ocr", data=image, headers=headers)
    assert behind.calls == 1
    assert resp.headers.get("X-Cache") != "HIT"


def test_fast_path_miss_hands_flask_the_same_body(app: Flask, client: FlaskClient) -> None:
    image = png(4)
    resp = client.post("/api/ocr", data=image, headers=RAW)  # read by the fast path, then by Flask
    assert resp.status_code == 200 and resp.headers["X-Cache"] == "MISS"
    assert resp.get_json()["data"][0]["box"][2] == [64, 32]  # the whole image arrived


# --- readiness and the not-ready wait ---------------------------------------------------------

def test_request_during_load_waits_for_the_engine(tmp_path: Path) -> None:
    loaded = threading.Event()

    def slow_factory(settings: Settings) -> FakeEngine:
        loaded.wait(30)
        return FakeEngine(settings)

    # A runtime dir as gunicorn_conf leaves it: no worker has written its "ready" marker yet.
    app = create_app({"redis_url": "", "instance_id": "slow", "runtime_dir": str(tmp_path)},
                     engine_factory=slow_factory)
    client = app.test_client()
    ready = client.get("/ready")
    assert ready.status_code == 503 and ready.headers["Retry-After"] == "2"
    assert ready.get_json()["code"] == 50301 and "loaded in 0 of 1 workers" in ready.get_json()["msg"]
    assert client.get("/health").status_code == 200  # liveness never waits for the engine
    results: list[int] = []
    waiting = threading.Thread(target=lambda: results.append(
        app.test_client().post("/api/ocr", data=png(5), headers=RAW).status_code))
    waiting.start()
    wait_for(lambda: metric(client, "ocr_inflight_requests") == 1, 10, "the request to wait in the app")
    loaded.set()
    waiting.join(30)
    assert results == [200]
    assert client.get("/ready").status_code == 200


def test_request_gets_503_when_the_engine_is_still_loading_after_the_wait(tmp_path: Path) -> None:
    release = threading.Event()
    app = create_app({"redis_url": "", "instance_id": "slow"},
                     engine_factory=lambda s: release.wait(30) and FakeEngine(s))
    services_of(app).ocr.load_wait = 0.05
    client = app.test_client()
    resp = client.post("/api/ocr", data=png(6), headers=RAW)
    assert resp.status_code == 503 and resp.headers["Retry-After"] == "2"
    assert resp.get_json()["code"] == 50301 and "not loaded yet" in resp.get_json()["msg"]
    assert metric(client, 'ocr_rejections_total{reason="not_ready"}') == 1
    release.set()


def test_engine_load_failure_is_reported_by_ready_and_requests(tmp_path: Path) -> None:
    def broken(settings: Settings) -> FakeEngine:
        raise RuntimeError("model file missing: det.onnx")

    client = build(tmp_path, factory=broken).test_client()
    assert client.get("/health").status_code == 200
    ready = client.get("/ready")
    assert ready.status_code == 503 and ready.get_json()["code"] == 50301
    assert "model file missing: det.onnx" in ready.get_json()["msg"]
    resp = client.post("/api/ocr", data=png(9), headers=RAW)
    assert resp.status_code == 503 and "det.onnx" in resp.get_json()["msg"]


def test_draining_instance_is_not_ready_but_still_serves(tmp_path: Path, client: FlaskClient) -> None:
    assert client.get("/ready").status_code == 200
    (tmp_path / "run" / "draining").touch()
    ready = client.get("/ready")
    assert ready.status_code == 503 and ready.headers["Retry-After"] == "1"
    assert ready.get_json() == {"code": 50303, "msg": "draining: the instance is shutting down", "data": []}
    assert client.post("/api/ocr", data=png(10), headers=RAW).status_code == 200


# --- error mapping: a hostile corpus ----------------------------------------------------------

def _tiny_png() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (4, 4)).save(buf, "PNG")
    return buf.getvalue()


CORPUS: list[tuple[str, dict[str, Any], int, int]] = [
    ("empty body", {"data": b""}, 400, 40001),
    ("empty raw image", {"data": b"", "headers": RAW}, 400, 40001),
    ("text/plain", {"data": b"hello", "content_type": "text/plain"}, 415, 41502),
    ("not an image", {"data": b"GIF89a nope", "headers": RAW}, 415, 41501),
    ("a PDF without its trailer", {"data": b"%PDF-1.4 nope", "headers": RAW}, 422, 42235),
    ("truncated png", {"data": png(11)[:60], "headers": RAW}, 422, 42201),
    ("too small", {"data": _tiny_png(), "headers": RAW}, 422, 42203),
    ("over the upload limit", {"data": b"\x89PNG\r\n\x1a\n" + b"0" * (2 << 20), "headers": RAW}, 413, 41301),
    ("json not an object", {"data": b"[1, 2]", "content_type": "application/json"}, 400, 40002),
    ("json bad", {"data": b"{nope", "content_type": "application/json"}, 400, 40002),
    ("json no field", {"json": {"image": "x"}}, 400, 40001),
    ("json nested 100,000 deep", {"data": b"[" * 100_000 + b"]" * 100_000, "content_type": "application/json"},
     400, 40004),
    ("json of 1 MB of [", {"data": b"[" * 1_000_000, "content_type": "application/json"}, 400, 40004),
    ("json 1,001 arrays wide", {"data": b"[" + b"[]," * 1000 + b"[]]", "content_type": "application/json"}, 400, 40004),
    ("json 33 deep inside the object", {"data": b'{"image_base64": "x", "x": ' + b"[" * 32 + b"]" * 32 + b"}",
                                        "content_type": "application/json"}, 400, 40004),
    ("+json nested 5,000 deep", {"data": b'{"a":' * 5000 + b"1" + b"}" * 5000,
                                 "content_type": "application/vnd.ocr+json"}, 400, 40004),
    ("bad base64", {"json": {"image_base64": "!!!not base64!!!"}}, 400, 40003),
    ("data url without comma", {"json": {"image_base64": "data:image/png;base64"}}, 400, 40003),
    ("base64 of garbage", {"json": {"image_base64": base64.b64encode(b"garbage").decode()}}, 415, 41501),
    ("multipart without boundary", {"data": b"--x\r\n", "content_type": "multipart/form-data"}, 400, 40002),
    ("multipart text field", {"data": {"image": "not a file"}, "content_type": "multipart/form-data"}, 400, 40001),
    ("multipart wrong field", {"data": {"photo": (io.BytesIO(b"x"), "a.png")},
                               "content_type": "multipart/form-data"}, 400, 40001),
]


@pytest.mark.parametrize(("name", "kwargs", "status", "code"), CORPUS, ids=[c[0] for c in CORPUS])
def test_bad_input_gets_its_documented_error(client: FlaskClient, name: str, kwargs: dict[str, Any],
                                             status: int, code: int) -> None:
    resp = client.post("/api/ocr", **kwargs)
    assert resp.status_code == status, resp.get_data(as_text=True)
    body = resp.get_json()
    assert body["code"] == code and body["data"] == [] and body["msg"]
    assert resp.headers["X-Instance"] == "inproc"
    if status == 413:
        assert "OCR_MAX_UPLOAD_MB" in body["msg"]
    if code == 40004:
        assert "32 levels" in body["msg"]


def test_json_nested_up_to_the_limit_is_read(client: FlaskClient) -> None:
    image = base64.b64encode(png(13)).decode()
    at_limit = {"image_base64": image, "x": [[[{"y": []}]]]}
    for _ in range(32 - 6):
        at_limit["x"] = [at_limit["x"]]
    resp = client.post("/api/ocr", json=at_limit)  # 32 levels, counting the object itself
    assert resp.status_code == 200, resp.get_data(as_text=True)
    resp = client.post("/api/ocr", json={**at_limit, "x": [at_limit["x"]]})
    assert resp.status_code == 400 and resp.get_json()["code"] == 40004


def test_routing_errors_are_json(client: FlaskClient) -> None:
    missing = client.get("/no/such/page")
    assert missing.status_code == 404 and missing.get_json()["code"] == 40401
    wrong = client.get("/api/ocr")
    assert wrong.status_code == 405 and wrong.get_json()["code"] == 40501


def test_an_engine_crash_is_a_json_500_and_the_app_keeps_serving(tmp_path: Path) -> None:
    engine = FakeEngine(Settings(), fail=RuntimeError("onnxruntime exploded"))
    client = build(tmp_path, engine).test_client()
    resp = client.post("/api/ocr", data=png(12), headers=RAW)
    assert resp.status_code == 500
    assert resp.get_json() == {"code": 50001, "msg": "internal error: the failure was logged", "data": []}
    assert "exploded" not in resp.get_data(as_text=True)
    engine.fail = None
    assert client.post("/api/ocr", data=png(12), headers=RAW).status_code == 200
    assert metric(client, "ocr_inflight_requests") == 0


def test_metrics_report_the_worker_rss(client: FlaskClient) -> None:
    rss = metric(client, "ocr_worker_rss_bytes")  # one process here: no pid label
    assert rss > 10 * 2**20


def test_metrics_report_the_workers_cpu_time(client: FlaskClient) -> None:
    """The autoscaler's CPU guard reads this: it only grows, and a process that ran has used some."""
    first = metric(client, "ocr_worker_cpu_seconds")
    assert first > 0
    assert metric(client, "ocr_worker_cpu_seconds") >= first


def test_big_bodies_wait_unread_for_an_upload_slot(tmp_path: Path) -> None:
    """OCR_READ_AHEAD_MB: a big body is read only when the worker can take it; small bodies and a
    document's fanned-out pages (which its document may be waiting for) never wait."""
    gate = threading.Event()
    engine = FakeEngine(Settings(), gate=gate)
    app = build(tmp_path, engine, read_ahead_mb=0.002)  # bodies over 2 KiB are big here
    service = services_of(app).ocr
    big = [png(seed, (96, 96)) for seed in (1, 2, 3)]
    tiny = png(4, (8, 8))
    assert min(map(len, big)) > 2048 > len(tiny)
    results: dict[str, int] = {}

    def send(name: str, data: bytes, headers: dict[str, str]) -> None:
        results[name] = app.test_client().post("/api/ocr", data=data, headers=headers).status_code

    def start(name: str, data: bytes, headers: dict[str, str] = RAW) -> threading.Thread:
        thread = threading.Thread(target=send, args=(name, data, headers))
        thread.start()
        return thread

    threads = [start("running", big[0])]
    wait_for(lambda: engine.running == 1, 10, "the first big upload inside the engine")
    threads.append(start("waiting", big[1]))
    wait_for(lambda: service.uploads.waiting == 1, 10, "the second big upload waiting, unread")
    threads.append(start("small", tiny))
    threads.append(start("page", big[2], {**RAW, "X-OCR-Page": "1"}))
    wait_for(lambda: service.admission.in_use == 3, 10, "the small body and the page admitted beside it")
    assert service.uploads.waiting == 1
    gate.set()
    for thread in threads:
        thread.join(30)
    assert results == {"running": 200, "waiting": 200, "small": 200, "page": 200}
    assert service.uploads.waiting == 0


def test_read_ahead_zero_reads_every_body_at_once(tmp_path: Path) -> None:
    gate = threading.Event()
    engine = FakeEngine(Settings(), gate=gate)
    app = build(tmp_path, engine, read_ahead_mb=0)
    service = services_of(app).ocr
    threads = [threading.Thread(target=lambda s=seed: app.test_client().post(
        "/api/ocr", data=png(s, (96, 96)), headers=RAW)) for seed in (1, 2)]
    for thread in threads:
        thread.start()
    wait_for(lambda: service.admission.in_use == 2, 10, "both big uploads admitted")
    gate.set()
    for thread in threads:
        thread.join(30)


def test_hostile_bodies_never_wait_behind_a_held_upload_slot(tmp_path: Path) -> None:
    """While a big upload holds the worker's slot: a body over the upload limit is refused at once (no
    slot held for it), and bad big bodies get their usual error once they have a slot."""
    gate = threading.Event()
    engine = FakeEngine(Settings(), gate=gate)
    app = build(tmp_path, engine, read_ahead_mb=0.002, max_upload_mb=0.05)
    service = services_of(app).ocr
    holder = threading.Thread(target=lambda: app.test_client().post("/api/ocr", data=png(1, (96, 96)), headers=RAW))
    holder.start()
    wait_for(lambda: engine.running == 1, 10, "a big upload holding the slot")
    client = app.test_client()
    over = client.post("/api/ocr", data=b"\xff\xd8\xff" + b"\0" * 200_000, headers={"Content-Type": "image/jpeg"})
    assert over.status_code == 413 and over.get_json()["code"] == 41301
    assert service.uploads.waiting == 0
    corpus = [(b"GIF89a" + b"\0" * 4000, "image/gif", 415), (b"\xff\xd8\xff" + b"\x13" * 4000, "image/jpeg", 422),
              (b"{" * 4000, "application/json", 400)]
    answers: list[tuple[int, int]] = []

    def send(data: bytes, kind: str) -> None:
        answers.append((len(data), app.test_client().post("/api/ocr", data=data,
                                                          headers={"Content-Type": kind}).status_code))

    threads = [threading.Thread(target=send, args=(data, kind)) for data, kind, _ in corpus]
    for thread in threads:
        thread.start()
    wait_for(lambda: service.uploads.waiting == len(corpus), 10, "the bad big bodies waiting for the slot")
    gate.set()
    for thread in threads + [holder]:
        thread.join(30)
    assert sorted(status for _, status in answers) == sorted(status for *_, status in corpus)
    assert service.uploads.waiting == 0
