"""Async jobs against real Redis and two real instances: any instance answers, a SIGKILL loses no page."""
from __future__ import annotations

import io
import re
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import requests
from docgen import text_pdf, tiff_pages
from helpers import (
    Proc,
    free_port,
    page_lines,
    start_instance,
    start_redis,
    text_image,
    unique_tag,
    wait_for,
    worker_pids,
)
from PIL import Image

JOB_TTL = 20
CLAIM_SECONDS = 2


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory, redis_server: Proc) -> Iterator[tuple[Proc, Proc]]:
    """Two instances sharing one Redis (no Consul needed): one worker and one consumer each."""
    workdir = tmp_path_factory.mktemp("jobs")
    env = {"OCR_WORKERS": "1", "OCR_JOB_TTL": str(JOB_TTL), "OCR_JOB_CLAIM_SECONDS": str(CLAIM_SECONDS)}
    url = str(redis_server.extra["url"])
    a = start_instance(workdir, redis_url=url, instance_id="jobs-a", extra_env=env)
    try:
        b = start_instance(workdir, redis_url=url, instance_id="jobs-b", extra_env=env)
    except Exception:
        a.stop()
        raise
    yield a, b
    a.stop()
    b.stop()


def submit(inst: Proc, data: bytes, **kw: Any) -> requests.Response:
    return requests.post(f"{inst.extra['url']}/api/jobs", data=data, headers={"Content-Type": "image/tiff",
                         **kw.pop("headers", {})}, timeout=30, **kw)


def job(inst: Proc, job_id: str) -> dict[str, Any]:
    resp = requests.get(f"{inst.extra['url']}/api/jobs/{job_id}", timeout=10)
    assert resp.status_code == 200, resp.text
    body: dict[str, Any] = resp.json()
    return body


def wait_finished(inst: Proc, job_id: str, timeout: float = 180) -> dict[str, Any]:
    found: dict[str, Any] = {}

    def finished() -> bool:
        found.update(job(inst, job_id))
        return found["status"] in ("done", "failed", "cancelled")

    wait_for(finished, timeout, f"job {job_id} to finish", interval=0.2)
    return found


def words(n: int) -> list[str]:
    return page_lines(n, "Page")


def page_texts(result: dict[str, Any]) -> list[str]:
    return [" ".join(line["text"] for line in page["data"]) for page in result["pages"]]


def test_lifecycle_any_instance_answers(pair: tuple[Proc, Proc]) -> None:
    a, b = pair
    texts = words(3)
    resp = submit(a, tiff_pages(texts))
    assert resp.status_code == 202, resp.text
    body = resp.json()
    assert body["status"] == "queued" and body["progress"] == {"done": 0, "total": 3}
    job_id = body["job_id"]
    assert resp.headers["Location"] == f"/api/jobs/{job_id}"
    seen = job(b, job_id)  # the other instance knows the job at once
    assert seen["status"] in ("queued", "running", "done") and seen["progress"]["total"] == 3
    done = wait_finished(b, job_id)
    assert done["status"] == "done", done
    assert done["progress"] == {"done": 3, "total": 3}
    result = done["result"]
    assert result["code"] == 0 and [p["page"] for p in result["pages"]] == [1, 2, 3]
    assert page_texts(result) == texts
    assert [line["page"] for line in result["data"]] == [1, 2, 3]
    assert job(a, job_id)["result"] == result


def test_single_image_job_answers_like_api_ocr(pair: tuple[Proc, Proc]) -> None:
    a, _ = pair
    image = text_image(f"Single {unique_tag()}")
    job_id = submit(a, image, headers={"Content-Type": "image/jpeg"}).json()["job_id"]
    result = wait_finished(a, job_id)["result"]
    sync = requests.post(f"{a.extra['url']}/api/ocr", data=image, headers={"Content-Type": "image/jpeg"},
                         timeout=60).json()
    assert "pages" not in result and result["data"] == sync["data"]


def test_multipart_and_base64_inputs(pair: tuple[Proc, Proc]) -> None:
    import base64

    a, _ = pair
    texts = words(2)
    data = tiff_pages(texts)
    by_form = requests.post(f"{a.extra['url']}/api/jobs", files={"image": ("d.tif", data)}, timeout=30)
    by_json = requests.post(f"{a.extra['url']}/api/jobs", json={"image_base64": base64.b64encode(data).decode()},
                            timeout=30)
    for resp in (by_form, by_json):
        assert resp.status_code == 202, resp.text
        assert page_texts(wait_finished(a, resp.json()["job_id"])["result"]) == texts


def test_pdf_job_with_a_text_layer_page_and_format_text(pair: tuple[Proc, Proc]) -> None:
    """Page 2 is born-digital: read from its text layer at submission; the answer comes in the format asked."""
    a, b = pair
    texts = words(3)
    doc = text_pdf([("scan", texts[0]), ("digital", texts[1]), ("scan", texts[2])])
    resp = requests.post(f"{a.extra['url']}/api/jobs", data=doc, headers={"Content-Type": "application/pdf"},
                         timeout=60)
    assert resp.status_code == 202 and resp.json()["progress"] == {"done": 1, "total": 3}, resp.text
    result = wait_finished(b, resp.json()["job_id"])["result"]
    assert [p["source"] for p in result["pages"]] == ["ocr", "pdf_text", "ocr"]
    assert page_texts(result) == texts
    as_text = requests.post(f"{a.extra['url']}/api/jobs?format=text&pages=3,1", data=doc,
                            headers={"Content-Type": "application/pdf"}, timeout=60)
    text = wait_finished(b, as_text.json()["job_id"])["result"]
    assert isinstance(text, str) and text.index(texts[2]) < text.index(texts[0]) and texts[1] not in text


def test_a_job_takes_one_file(pair: tuple[Proc, Proc]) -> None:
    files = [("image", ("a.png", text_image("One", fmt="PNG"))), ("image", ("b.png", text_image("Two", fmt="PNG")))]
    resp = requests.post(f"{pair[0].extra['url']}/api/jobs", files=files, timeout=30)
    assert resp.status_code == 400 and resp.json()["code"] == 40050, resp.text


def test_cancel(pair: tuple[Proc, Proc], redis_server: Proc) -> None:
    a, b = pair
    job_id = submit(a, tiff_pages(words(6))).json()["job_id"]
    resp = requests.delete(f"{b.extra['url']}/api/jobs/{job_id}", timeout=10)
    assert resp.status_code == 200 and resp.json()["status"] == "cancelled"
    seen = job(a, job_id)
    assert seen["status"] == "cancelled" and "result" not in seen
    # Its remaining pages are skipped: the queue drains and the job stays cancelled.
    client = redis.Redis.from_url(str(redis_server.extra["url"]))
    wait_for(lambda: client.xlen("ocr:jobs") == 0, 120, "the cancelled job's pages to leave the queue")
    assert job(a, job_id)["status"] == "cancelled"


def test_a_bad_page_is_refused_before_queueing(pair: tuple[Proc, Proc]) -> None:
    """Page 2 is 4x4 px: every page is checked before the job is queued, so the client gets the 422 now."""
    a, _ = pair
    pages = [Image.open(io.BytesIO(text_image("Fine page", fmt="PNG"))), Image.new("RGB", (4, 4), "white")]
    resp = submit(a, _tiff(pages))
    assert resp.status_code == 422 and resp.json()["code"] == 42203, resp.text


@pytest.mark.parametrize("job_id", ["0" * 32, "nope", "x%20y", "a" * 500])
def test_unknown_job_is_404(pair: tuple[Proc, Proc], job_id: str) -> None:
    for method in ("get", "delete"):
        resp = requests.request(method, f"{pair[0].extra['url']}/api/jobs/{job_id}", timeout=10)
        assert resp.status_code == 404 and resp.json()["code"] == 40450, resp.text


@pytest.mark.parametrize(("body", "ctype", "status", "code"), [
    (b"", "image/png", 400, 40001),
    (b"%PDF-1.4 not really", "application/pdf", 422, 42235),
    (b"GIF89a" + b"\0" * 64, "image/gif", 415, 41501),
    (b"II*\x00" + b"\xff" * 64, "image/tiff", 422, 42201),
    (b"{not json", "application/json", 400, 40002),
    pytest.param(b"[" * 100_000 + b"]" * 100_000, "application/json", 400, 40004, id="json nested 100,000 deep"),
])
def test_bad_uploads_are_refused_before_queueing(pair: tuple[Proc, Proc], body: bytes, ctype: str,
                                                 status: int, code: int) -> None:
    a, _ = pair
    pids = _worker_pids(a)
    resp = requests.post(f"{a.extra['url']}/api/jobs", data=body, headers={"Content-Type": ctype}, timeout=10)
    assert resp.status_code == status and resp.json()["code"] == code, resp.text
    assert _worker_pids(a) == pids


def _tiff(frames: list[Image.Image]) -> bytes:
    buf = io.BytesIO()
    frames[0].save(buf, format="TIFF", save_all=True, append_images=frames[1:], compression="tiff_deflate")
    return buf.getvalue()


def _truncated_tiff() -> bytes:
    whole = tiff_pages(["One", "Two", "Three"])
    return whole[: len(whole) // 2]


HOSTILE_TIFFS = {
    # 51 tiny pages: past the page limit, refused before any page is encoded
    "too many pages": (lambda: _tiff([Image.new("L", (16, 16), 255)] * 51), 422, 42230),
    # a bilevel second page of 9000x5000: 45 MP, past OCR_MAX_PIXELS, a few KB on the wire
    "page pixel bomb": (lambda: _tiff([Image.new("1", (64, 64), 1), Image.new("1", (9000, 5000), 1)]), 422, 42202),
    "truncated document": (_truncated_tiff, 422, 42201),
}


@pytest.mark.parametrize("path", ["/api/ocr", "/api/jobs"])
@pytest.mark.parametrize("case", sorted(HOSTILE_TIFFS))
def test_hostile_documents_get_4xx_and_workers_survive(pair: tuple[Proc, Proc], path: str, case: str) -> None:
    a, _ = pair
    make, status, code = HOSTILE_TIFFS[case]
    pids = _worker_pids(a)
    resp = requests.post(f"{a.extra['url']}{path}", data=make(), headers={"Content-Type": "image/tiff"}, timeout=60)
    assert resp.status_code == status and resp.json()["code"] == code, resp.text
    assert _worker_pids(a) == pids


def _worker_pids(inst: Proc) -> set[int]:
    return worker_pids(inst.pid)


def test_results_expire(pair: tuple[Proc, Proc]) -> None:
    a, _ = pair
    job_id = submit(a, text_image(f"Expire {unique_tag()}"), headers={"Content-Type": "image/jpeg"}
                    ).json()["job_id"]
    assert wait_finished(a, job_id)["status"] == "done"
    wait_for(lambda: requests.get(f"{a.extra['url']}/api/jobs/{job_id}", timeout=10).status_code == 404,
             JOB_TTL + 30, f"job {job_id} to expire after OCR_JOB_TTL={JOB_TTL}")


def test_redis_down_jobs_503_and_sync_api_works(tmp_path: Path) -> None:
    dead = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    inst = start_instance(tmp_path, redis_url=dead, extra_env={"OCR_WORKERS": "1"})
    try:
        base = inst.extra["url"]
        for method, path in (("post", "/api/jobs"), ("get", f"/api/jobs/{'0' * 32}"),
                             ("delete", f"/api/jobs/{'0' * 32}")):
            resp = requests.request(method, f"{base}{path}", data=text_image("Down"),
                                    headers={"Content-Type": "image/jpeg"}, timeout=30)
            assert resp.status_code == 503, resp.text
            assert resp.json()["code"] == 50350 and "OCR_REDIS_URL" in resp.json()["msg"]
            assert resp.headers["Retry-After"]
        ok = requests.post(f"{base}/api/ocr", data=text_image("Still Works"), headers={"Content-Type": "image/jpeg"},
                           timeout=60)
        assert ok.status_code == 200 and "Still Works" in " ".join(x["text"] for x in ok.json()["data"])
    finally:
        inst.stop()


def job_pages_done(inst: Proc) -> float:
    text = requests.get(f"{inst.extra['url']}/metrics", timeout=10).text
    found = re.search(r'^ocr_job_pages_total\{result="done"\} ([0-9.e+]+)$', text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


def test_a_draining_instance_takes_no_job_page(pair: tuple[Proc, Proc], redis_server: Proc,
                                               tmp_path: Path) -> None:
    _, b = pair
    env = {"OCR_WORKERS": "1", "OCR_DRAIN_SECONDS": "300", "OCR_JOB_CLAIM_SECONDS": str(CLAIM_SECONDS)}
    c = start_instance(tmp_path, redis_url=str(redis_server.extra["url"]), instance_id="jobs-c", extra_env=env)
    try:
        before = job_pages_done(c)
        c.signal(signal.SIGTERM)  # drains for 300 s: still answers, takes no new work
        wait_for(lambda: requests.get(f"{c.extra['url']}/ready", timeout=5).status_code == 503, 30,
                 "instance c to drain")
        texts = words(4)
        job_id = submit(c, tiff_pages(texts)).json()["job_id"]  # it still accepts and answers jobs
        done = wait_finished(c, job_id)
        assert done["status"] == "done" and page_texts(done["result"]) == texts
        assert job_pages_done(c) == before
    finally:
        c.signal(signal.SIGKILL)
        c.popen.wait(10)


def test_sigkill_of_the_working_instance_loses_no_page(pair: tuple[Proc, Proc], redis_server: Proc) -> None:
    """Runs last in this module: it kills instance a."""
    a, b = pair
    client = redis.Redis.from_url(str(redis_server.extra["url"]))
    texts = words(8)
    job_id = submit(b, tiff_pages(texts)).json()["job_id"]

    def a_holds_a_page() -> bool:
        pending = client.xpending_range("ocr:jobs", "ocr", min="-", max="+", count=100)
        return any(p["consumer"].decode().startswith("jobs-a/") for p in pending)

    wait_for(a_holds_a_page, 120, "instance a to take a page of the job", interval=0.01)
    a.signal(signal.SIGKILL)
    a.popen.wait(10)
    done = wait_finished(b, job_id, timeout=240)
    assert done["status"] == "done", done
    assert done["progress"] == {"done": 8, "total": 8}
    assert page_texts(done["result"]) == texts
    metrics = requests.get(f"{b.extra['url']}/metrics", timeout=10).text
    assert re.search(r'^ocr_job_pages_total\{result="taken_over"\} [1-9]', metrics, re.MULTILINE), metrics


def test_a_job_keeps_the_ttl_of_the_instance_that_accepted_it(tmp_path: Path) -> None:
    """Instances may differ in OCR_JOB_TTL: whichever one runs a page, the job expires on the accepting one's."""

    server = start_redis(tmp_path)  # its own Redis: no instance's consumer may take the page
    try:
        _check_ttl_kept(str(server.extra["url"]))
    finally:
        server.stop()


def _check_ttl_kept(url: str) -> None:
    from ocr_app.jobs.store import JobPage, JobStore, job_key

    accepting = JobStore.from_url(url, ttl=20, max_pending=1000, timeout=5.0)
    running = JobStore.from_url(url, ttl=3600, max_pending=1000, timeout=5.0)
    job_id = accepting.submit([JobPage(number=1, width=8, height=8, image=b"page")], document=False, words=False,
                              bypass=False, params={})
    running.start_page(job_id)
    running.complete_page(job_id, 1, b"[]")
    assert running.get(job_id).status == "done"
    assert 0 < running.client.ttl(job_key(job_id)) <= 20
    running.cancel(job_id)
    assert 0 < running.client.ttl(job_key(job_id)) <= 20
