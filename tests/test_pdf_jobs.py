"""format=pdf jobs against real Redis and real instances: the kept upload, result.pdf, and its errors."""
from __future__ import annotations

import io
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pikepdf
import pytest
import redis
import requests
from docgen import text_pdf, tiff_pages
from helpers import Proc, page_lines, start_instance, start_redis, text_image, unique_tag, wait_for

from ocr_app.jobs.store import JobPage, JobStore, job_key, original_key

IDLE_TTL = 6  # the idle instance's OCR_JOB_TTL: its jobs never run, so they expire this long after submission
UPLOAD_MB = 2
MAX_WORDS = 10  # the worker's OCR_PDF_MAX_WORDS: more than the other tests' PDFs hold, fewer than 4 pages' worth
PDF = {"Content-Type": "application/pdf"}


@pytest.fixture(scope="module")
def worker(tmp_path_factory: pytest.TempPathFactory, redis_server: Proc) -> Iterator[Proc]:
    """An instance that runs its jobs, with a small upload limit for the hostile case."""
    inst = start_instance(tmp_path_factory.mktemp("pdfjobs"), redis_url=str(redis_server.extra["url"]),
                          instance_id="pdfjobs-worker",
                          extra_env={"OCR_WORKERS": "1", "OCR_JOB_TTL": "120", "OCR_MAX_UPLOAD_MB": str(UPLOAD_MB),
                                     "OCR_PDF_MAX_WORDS": str(MAX_WORDS)})
    yield inst
    inst.stop()


@pytest.fixture(scope="module")
def idle(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Proc, redis.Redis]]:
    """An instance with no job consumer on a Redis of its own: its jobs stay queued until they expire."""
    workdir = tmp_path_factory.mktemp("pdfjobs-idle")
    server = start_redis(workdir / "redis")
    try:
        inst = start_instance(workdir, redis_url=str(server.extra["url"]), instance_id="pdfjobs-idle",
                              extra_env={"OCR_WORKERS": "1", "OCR_JOB_CONSUMERS": "0",
                                         "OCR_JOB_TTL": str(IDLE_TTL)})
    except Exception:
        server.stop()
        raise
    yield inst, redis.Redis.from_url(str(server.extra["url"]))
    inst.stop()
    server.stop()


def submit(inst: Proc, data: bytes, headers: dict[str, str], **params: str) -> str:
    resp = requests.post(f"{inst.extra['url']}/api/jobs", data=data, headers=headers, params=params, timeout=60)
    assert resp.status_code == 202, resp.text
    job_id: str = resp.json()["job_id"]
    return job_id


def job(inst: Proc, job_id: str) -> dict[str, Any]:
    resp = requests.get(f"{inst.extra['url']}/api/jobs/{job_id}", timeout=10)
    assert resp.status_code == 200, resp.text
    body: dict[str, Any] = resp.json()
    return body


def wait_done(inst: Proc, job_id: str) -> dict[str, Any]:
    found: dict[str, Any] = {}

    def finished() -> bool:
        found.update(job(inst, job_id))
        return found["status"] in ("done", "failed", "cancelled")

    wait_for(finished, 180, f"job {job_id} to finish", interval=0.2)
    assert found["status"] == "done", found
    return found


def result_pdf(inst: Proc, job_id: str) -> requests.Response:
    return requests.get(f"{inst.extra['url']}/api/jobs/{job_id}/result.pdf", timeout=120)


def pdf_pages_text(data: bytes, tmp_path: Path) -> list[str]:
    """Each page's text as pdftotext (poppler) reads it, whitespace squashed."""
    path = tmp_path / "result.pdf"
    path.write_bytes(data)
    with pikepdf.open(path) as pdf:
        count = len(pdf.pages)
    return [squash(subprocess.run(["pdftotext", "-f", str(n), "-l", str(n), str(path), "-"], check=True,
                                  capture_output=True, text=True).stdout) for n in range(1, count + 1)]


def squash(text: str) -> str:
    return "".join(text.split())


def json_pages_text(result: dict[str, Any]) -> list[str]:
    if "pages" in result:
        return [squash("".join(line["text"] for line in page["data"])) for page in result["pages"]]
    return [squash("".join(line["text"] for line in result["data"]))]


def error_of(resp: requests.Response) -> tuple[int, int]:
    assert resp.headers["Content-Type"].startswith("application/json"), resp.text
    body = resp.json()
    assert body["msg"] and body["data"] == [], body
    return resp.status_code, body["code"]


@pytest.mark.parametrize("kind", ["pdf", "tiff", "image"])
def test_a_pdf_job_gives_a_pdf_whose_text_is_the_jobs_text(worker: Proc, kind: str, tmp_path: Path) -> None:
    """The same upload as a format=json job and a format=pdf job: the PDF's text layer holds the JSON's text."""
    texts = page_lines(2, kind.capitalize())
    upload, headers = {
        "pdf": (text_pdf([("scan", texts[0]), ("digital", texts[1])]), PDF),
        "tiff": (tiff_pages(texts), {"Content-Type": "image/tiff"}),
        "image": (text_image(f"Image {unique_tag()}"), {"Content-Type": "image/jpeg"}),
    }[kind]
    as_json = wait_done(worker, submit(worker, upload, headers))["result"]
    job_id = submit(worker, upload, headers, format="pdf")
    done = wait_done(worker, job_id)
    assert "result" not in done and done["result_url"] == f"/api/jobs/{job_id}/result.pdf"
    resp = requests.get(f"{worker.extra['url']}{done['result_url']}", timeout=120)
    assert resp.status_code == 200 and resp.headers["Content-Type"] == "application/pdf", resp.text[:300]
    assert resp.content.startswith(b"%PDF-")
    expected = json_pages_text(as_json)
    assert all(expected), as_json
    assert pdf_pages_text(resp.content, tmp_path) == expected


def test_an_encrypted_pdf_is_kept_decrypted_and_its_password_never_stored(
        worker: Proc, redis_server: Proc, tmp_path: Path) -> None:
    password = f"pw-{unique_tag().replace(' ', '-')}"
    text = page_lines(1, "Locked")[0]
    doc = text_pdf([("scan", text)], encrypt=password)
    resp = requests.post(f"{worker.extra['url']}/api/jobs", data=doc, headers=PDF, params={"format": "pdf"},
                         timeout=60)
    assert error_of(resp) == (422, 42233)  # no password: refused at submit, as on /api/ocr
    # the password as a form field, as docs/api.md advises (a query string may be logged on the way)
    resp = requests.post(f"{worker.extra['url']}/api/jobs", files={"image": ("locked.pdf", doc)},
                         data={"format": "pdf", "password": password}, timeout=60)
    assert resp.status_code == 202, resp.text
    job_id = resp.json()["job_id"]
    client = redis.Redis.from_url(str(redis_server.extra["url"]))
    original = client.get(original_key(job_id))
    assert isinstance(original, bytes)
    with pikepdf.open(io.BytesIO(original)) as kept:
        assert not kept.is_encrypted  # opens without the password
    wait_done(worker, job_id)
    stored = [client.get(original_key(job_id)) or b""]
    for key in client.scan_iter(f"{job_key(job_id)}*"):
        if client.type(key) == b"hash":
            stored += [*client.hgetall(key).values()]
    assert stored and not any(password.encode() in value for value in stored)
    resp = result_pdf(worker, job_id)
    assert resp.status_code == 200, resp.text[:300]
    assert pdf_pages_text(resp.content, tmp_path) == [squash(text)]


def test_result_pdf_of_unknown_and_non_pdf_jobs(worker: Proc) -> None:
    for job_id in ("0" * 32, "nope"):
        assert error_of(result_pdf(worker, job_id)) == (404, 40450)
    json_job = submit(worker, text_image(f"Json {unique_tag()}"), {"Content-Type": "image/jpeg"})
    wait_done(worker, json_job)
    assert error_of(result_pdf(worker, json_job)) == (409, 40951)


def test_the_pdf_limits_answer_at_result_pdf(worker: Proc) -> None:
    """The text layer's words are known only once the pages are read: result.pdf answers the 413."""
    job_id = submit(worker, tiff_pages(page_lines(4, "Words")), {"Content-Type": "image/tiff"}, format="pdf")
    wait_done(worker, job_id)
    resp = result_pdf(worker, job_id)
    assert error_of(resp) == (413, 41333) and "OCR_PDF_MAX_WORDS" in resp.json()["msg"]


def test_an_over_limit_upload_is_refused_at_submit(worker: Proc, redis_server: Proc) -> None:
    client = redis.Redis.from_url(str(redis_server.extra["url"]))
    before = set(client.scan_iter("ocr:job:*:original"))
    big = text_pdf([("scan", "Big")]) + b"%" + b"0" * (UPLOAD_MB * 1024 * 1024)
    resp = requests.post(f"{worker.extra['url']}/api/jobs", data=big, headers=PDF, params={"format": "pdf"},
                         timeout=60)
    assert error_of(resp) == (413, 41301) and f"{UPLOAD_MB} MB" in resp.json()["msg"]
    assert set(client.scan_iter("ocr:job:*:original")) == before


def test_before_done_cancelled_and_expired(idle: tuple[Proc, redis.Redis]) -> None:
    """No consumer runs the idle instance's jobs: result.pdf waits (409), a cancel drops the upload (410), and
    an uncancelled job's upload expires with it after OCR_JOB_TTL."""
    inst, client = idle
    upload = tiff_pages(page_lines(2, "Idle"))
    waiting = submit(inst, upload, {"Content-Type": "image/tiff"}, format="pdf")
    expiring = submit(inst, upload, {"Content-Type": "image/tiff"}, format="pdf")
    resp = result_pdf(inst, waiting)
    assert error_of(resp) == (409, 40950) and resp.headers["Retry-After"]
    assert "result_url" not in job(inst, waiting)
    assert client.get(original_key(waiting)) == upload
    assert 0 < client.ttl(original_key(expiring)) <= IDLE_TTL

    assert requests.delete(f"{inst.extra['url']}/api/jobs/{waiting}", timeout=10).status_code == 200
    assert not client.exists(original_key(waiting))
    assert error_of(result_pdf(inst, waiting)) == (410, 41051)

    wait_for(lambda: not client.exists(original_key(expiring)) and not client.exists(job_key(expiring)),
             IDLE_TTL + 30, f"job {expiring} and its upload to expire after OCR_JOB_TTL={IDLE_TTL}")
    assert error_of(result_pdf(inst, expiring)) == (404, 40450)


def test_the_upload_lives_as_long_as_its_job_and_goes_when_it_fails(tmp_path: Path) -> None:
    """Every change of a job moves its upload's expiry with it; a failed job drops it at once."""
    server = start_redis(tmp_path)  # its own Redis: no instance's consumer may take the pages
    try:
        store = JobStore.from_url(str(server.extra["url"]), ttl=30, max_pending=1000, timeout=5.0)
        pages = [JobPage(number=n, width=8, height=8, image=b"page") for n in (1, 2)]
        job_id = store.submit(pages, document=True, words=False, bypass=False, params={"format": "pdf"},
                              original=b"upload")
        assert store.original(job_id) == b"upload"
        store.client.expire(original_key(job_id), 5)  # as if time had passed since the submission
        store.start_page(job_id)
        assert store.client.ttl(original_key(job_id)) > 5
        store.client.expire(original_key(job_id), 5)
        store.complete_page(job_id, 1, b"[]")
        assert store.client.ttl(original_key(job_id)) > 5
        store.fail(job_id, 42201, "page 2: undecodable")
        assert store.original(job_id) is None and store.get(job_id).status == "failed"
    finally:
        server.stop()
