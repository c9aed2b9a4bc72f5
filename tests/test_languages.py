"""Languages end to end in-process: real PP-OCR, real tesserocr and Debian's traineddata, generated pages.

Every language of the default set reads its own generated scan; lang=auto routes by script; Arabic comes
back in logical order, read right to left; the formats work on a Tesseract page; hostile lang= values and
a page that makes Tesseract slow get their 4xx.
"""
from __future__ import annotations

import io
import json
import os
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from flask.testing import FlaskClient
from helpers import start_redis, wait_for
from inproc import build_app
from PIL import Image

from bench.langpages import page
from bench.score import cer_lines, cer_ordered
from ocr_app.engine.factory import build_engines
from ocr_app.http.app_services import job_workers_of
from ocr_app.models import languages
from ocr_app.models.languages import DEFAULT_SET, resolve

PNG = {"Content-Type": "image/png"}
TESSDATA = languages.find_tessdata()
# Line-matched CER bounds on generated scans (4 lines, seed 11), a little above what each reads here
# (docs/api.md has the measured figures); the target is 3%.
SCAN_BOUND = {"ar": 0.08}


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FlaskClient]:
    app = build_app(tmp_path_factory.mktemp("lang"), factory=build_engines, profiles="accurate,fast",
                    max_upload_mb=8.0)
    yield app.test_client()


@pytest.fixture(scope="module")
def thin_client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FlaskClient]:
    """An instance whose Tesseract has English, OSD and Russian only, and 1 ms per page."""
    assert TESSDATA is not None, "Debian's tesseract-ocr data is needed (scripts/install-deps.sh)"
    folder = tmp_path_factory.mktemp("tessdata")
    for name in ("eng", "osd", "rus"):
        os.symlink(languages.traineddata(name, TESSDATA), languages.traineddata(name, folder))
    app = build_app(tmp_path_factory.mktemp("thin"), factory=build_engines, profiles="fast", profile="fast",
                    warmup=False,
                    tessdata=str(folder), tess_timeout_ms=1, max_upload_mb=8.0)
    yield app.test_client()


@pytest.fixture(scope="module")
def jobs_client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FlaskClient]:
    """An instance with a real Redis of its own: its job consumers run in this process. Its own, and stopped
    at the end, since a consumer of this `fast`-only app would take other modules' job pages off a shared
    stream and fail them (it has no `accurate`)."""
    workdir = tmp_path_factory.mktemp("jobs")
    server = start_redis(workdir / "redis")
    app = build_app(workdir / "run", factory=build_engines, profiles="fast", profile="fast",
                    warmup=False, redis_url=str(server.extra["url"]), max_upload_mb=8.0)
    yield app.test_client()
    workers = job_workers_of(app)
    if workers is not None:
        workers.stop()
    server.stop()


def ocr(client: FlaskClient, data: bytes, query: str) -> Any:
    return client.post("/api/ocr" + query, data=data, headers=PNG)


def texts(body: dict[str, Any]) -> list[str]:
    return [line["text"] for line in body["data"]]


@pytest.mark.parametrize("code", DEFAULT_SET + ("en", "zh", "ja"))
def test_each_language_reads_its_own_scan(client: FlaskClient, code: str) -> None:
    image, truth = page(code, "scan", 11, lines=4)
    resp = ocr(client, image, f"?lang={code}")
    assert resp.status_code == 200, resp.data
    body = resp.json
    lang = resolve(code)
    assert body["recognizer"]["lang"] == code and body["recognizer"]["route"] == lang.route
    assert body["recognizer"]["engine"] == ("rapidocr" if lang.route == "ppocr" else "tesseract")
    assert body["engine"] == "rapidocr"  # OCR_ENGINE, as before
    assert cer_lines(truth, texts(body)) <= SCAN_BOUND.get(code, 0.03), (texts(body), truth)


@pytest.mark.parametrize(("code", "script", "route"), [("ru", "Cyrillic", "lines"), ("ar", "Arabic", "lines"),
                                                       ("zh", "Han", "ppocr")])
def test_auto_routes_by_script(client: FlaskClient, code: str, script: str, route: str) -> None:
    image, truth = page(code, "scan", 12, lines=6)
    body = ocr(client, image, "?lang=auto").json
    assert body["recognizer"]["script"] == script and body["recognizer"]["route"] == route, body["recognizer"]
    assert cer_lines(truth, texts(body)) <= SCAN_BOUND.get(code, 0.03)
    again = ocr(client, image, "?lang=auto")  # a cached answer still says what read it
    assert again.headers["X-Cache"] == "HIT" and again.json["recognizer"] == body["recognizer"]


def test_arabic_comes_back_in_logical_order_read_right_to_left(client: FlaskClient) -> None:
    image, truth = page("ar", "scan", 13, lines=3)
    body = ocr(client, image, "?lang=ar&words=1").json
    assert body["recognizer"]["right_to_left"] is True
    first = body["data"][0]
    assert first["text"].split()[0] == truth[0].split()[0]  # logical order: the first word read first
    xs = [min(p[0] for p in word["box"]) for word in first["words"]]
    assert xs == sorted(xs, reverse=True)  # and it is the rightmost: boxes in the image's pixels
    assert cer_ordered(truth, texts(body)) <= SCAN_BOUND["ar"]  # lines top to bottom, each in logical order


def test_formats_work_on_a_tesseract_page(client: FlaskClient) -> None:
    image, truth = page("ru", "scan", 14, lines=3)
    words = ocr(client, image, "?lang=ru&words=1").json
    assert all(w["text"] and len(w["box"]) == 4 for line in words["data"] for w in line["words"])
    assert " ".join(w["text"] for w in words["data"][0]["words"]) == words["data"][0]["text"]
    text = ocr(client, image, "?lang=ru&format=text").data.decode()
    assert cer_lines(truth, text.strip().splitlines()) <= 0.03
    hocr = ocr(client, image, "?lang=ru&format=hocr").data.decode()
    root = ET.fromstring(hocr)
    found = [el.text for el in root.iter() if el.get("class") == "ocrx_word"]
    assert truth[0].split()[0] in found
    textract = json.loads(ocr(client, image, "?lang=ru&format=textract").data)
    assert any(b["BlockType"] == "WORD" and b["Text"] == truth[0].split()[0] for b in textract["Blocks"])
    page_route = ocr(client, image, "?lang=ru&route=tesseract").json
    assert page_route["recognizer"]["route"] == "tesseract" and cer_lines(truth, texts(page_route)) <= 0.03


def test_languages_are_listed(client: FlaskClient) -> None:
    body = client.get("/api/languages").json
    by_code = {item["code"]: item for item in body["languages"]}
    assert set(DEFAULT_SET) | {"en", "zh", "ja"} <= set(by_code)
    ru = by_code["ru"]
    assert ru["installed"] and ru["package"] == "tesseract-ocr-rus" and ru["install"] == "fleetctl deps --langs ru"
    assert ru["script"] == "Cyrillic" and ru["engine"] == "tesseract" and ru["route"] == "lines"
    assert by_code["de"]["engine"] == "rapidocr" and body["auto"] is True


def test_unknown_and_uninstalled_languages(client: FlaskClient, thin_client: FlaskClient) -> None:
    image, _ = page("ar", "scan", 15, lines=2)
    unknown = ocr(client, image, "?lang=xx")
    assert unknown.status_code == 400 and unknown.json["code"] == 40040 and "/api/languages" in unknown.json["msg"]
    missing = ocr(thin_client, image, "?lang=ar")
    assert missing.status_code == 400 and missing.json["code"] == 40041
    assert "tesseract-ocr-ara" in missing.json["msg"] and "fleetctl deps --langs ar" in missing.json["msg"]
    listed = {item["code"]: item for item in thin_client.get("/api/languages").json["languages"]}
    assert not listed["ar"]["installed"] and listed["ru"]["installed"] and listed["de"]["installed"]
    fast_ja = ocr(client, image, "?lang=ja&profile=fast")
    assert fast_ja.status_code == 400 and fast_ja.json["code"] == 40043 and "profile=accurate" in fast_ja.json["msg"]


HOSTILE = ["d" * 10_000, "../eng", "../../etc/passwd", "eng\x00", "%00", "+".join(["deu"] * 500),
           ",".join(["ru"] * 500), "de;rm", "auto,de", "ru/../ar", "ü", " , , ", "1234", "rus\u202e"]


@pytest.mark.parametrize("raw", HOSTILE)
@pytest.mark.parametrize("form", ["query", "multipart"])
def test_hostile_lang_values_are_400(client: FlaskClient, raw: str, form: str) -> None:
    image, _ = page("en", "scan", 16, lines=1)
    if form == "query":
        resp = client.post("/api/ocr", query_string={"lang": raw}, data=image, headers=PNG)
    else:
        resp = client.post("/api/ocr", data={"image": (io.BytesIO(image), "a.png"), "lang": raw})
    if raw.strip(" ,") == "":  # nothing but separators: no language asked, the page reads as before
        assert resp.status_code == 200
        return
    assert resp.status_code == 400, resp.data
    assert resp.json["code"] in (40030, 40040, 40042) and "lang" in resp.json["msg"]


def test_a_slow_page_gets_its_bounded_error(thin_client: FlaskClient) -> None:
    rng = np.random.default_rng(0)
    noise = Image.fromarray(((rng.random((900, 900)) > 0.5) * 255).astype(np.uint8))
    buf = io.BytesIO()
    noise.save(buf, "PNG")
    resp = ocr(thin_client, buf.getvalue(), "?lang=ru&route=tesseract")
    assert resp.status_code == 422 and resp.json["code"] == 42240, resp.data
    assert "OCR_TESS_TIMEOUT_MS" in resp.json["msg"]


def test_a_job_reads_its_pages_in_its_language(jobs_client: FlaskClient) -> None:
    image, truth = page("ru", "scan", 17, lines=3)
    resp = jobs_client.post("/api/jobs?lang=rus", data=image, headers=PNG)
    assert resp.status_code == 202, resp.data
    job_id = resp.json["job_id"]

    def done() -> dict[str, Any] | None:
        body = jobs_client.get(f"/api/jobs/{job_id}").json
        return body if body["status"] in ("done", "failed") else None

    body = wait_for(done, 60, "the job's page")
    assert isinstance(body, dict) and body["status"] == "done", body
    assert cer_lines(truth, [line["text"] for line in body["result"]["data"]]) <= 0.03
    assert body["result"]["recognizer"]["lang"] == "ru", body["result"]  # as /api/ocr says it
    # a document job: each page says which language and recognizer read it
    frames = [Image.open(io.BytesIO(page("ru", "scan", seed, lines=2)[0])).convert("RGB") for seed in (19, 20)]
    buf = io.BytesIO()
    frames[0].save(buf, format="TIFF", save_all=True, append_images=frames[1:])
    resp = jobs_client.post("/api/jobs?lang=ru", data=buf.getvalue(), headers={"Content-Type": "image/tiff"})
    assert resp.status_code == 202, resp.data
    job_id = resp.json["job_id"]
    body = wait_for(done, 60, "the document job's pages")
    assert isinstance(body, dict) and body["status"] == "done", body
    assert [p["recognizer"]["lang"] for p in body["result"]["pages"]] == ["ru", "ru"], body["result"]
    bad = jobs_client.post("/api/jobs?lang=klingon", data=image, headers=PNG)
    assert bad.status_code == 400 and bad.json["code"] in (40040, 40042)


def test_a_document_is_routed_page_by_page(client: FlaskClient) -> None:
    (ru, ru_truth), (zh, zh_truth) = page("ru", "scan", 18, lines=3), page("zh", "scan", 18, lines=3)
    frames = [Image.open(io.BytesIO(ru)).convert("RGB"), Image.open(io.BytesIO(zh)).convert("RGB")]
    buf = io.BytesIO()
    frames[0].save(buf, "TIFF", save_all=True, append_images=frames[1:])
    body = client.post("/api/ocr?lang=auto", data=buf.getvalue(), headers={"Content-Type": "image/tiff"}).json
    first, second = body["pages"]
    assert first["recognizer"]["script"] == "Cyrillic" and first["recognizer"]["route"] == "lines"
    assert second["recognizer"]["script"] == "Han" and second["recognizer"]["route"] == "ppocr"
    assert cer_lines(ru_truth, [line["text"] for line in first["data"]]) <= 0.03
    assert cer_lines(zh_truth, [line["text"] for line in second["data"]]) <= 0.03


def test_mixed_languages(client: FlaskClient) -> None:
    image, truth = page("ru", "scan", 19, lines=2)
    both = ocr(client, image, "?lang=rus%2Beng").json  # Tesseract's own spelling, "+" sent encoded
    assert both["recognizer"] == {"lang": "ru,en", "engine": "tesseract", "route": "lines"}
    assert cer_lines(truth, texts(both)) <= 0.03
    latin = ocr(client, page("de", "scan", 19, lines=2)[0], "?lang=de,en").json
    assert latin["recognizer"] == {"lang": "de,en", "engine": "rapidocr", "route": "ppocr"}


def test_hebrew_comes_back_in_logical_order(client: FlaskClient) -> None:
    # PP-OCR's page classifier calls this flush-right page upside down; OSD does not agree, so it is not turned
    image, truth = page("he", "scan", 0, lines=8)
    body = ocr(client, image, "?lang=he").json
    assert body["recognizer"]["right_to_left"] is True and body["recognizer"]["route"] == "lines"
    assert texts(body)[0].split()[0] == truth[0].split()[0]
    assert cer_ordered(truth, texts(body)) <= 0.03, (texts(body), truth)


@pytest.mark.parametrize(("code", "kind", "seed"), [("ko", "scan", 0), ("te", "scan", 20261204)])
def test_a_korean_and_a_telugu_page_read_on_their_route(client: FlaskClient, code: str, kind: str,
                                                        seed: int) -> None:
    # Korean: the classifier's wrong turn; Telugu: a line the detector cut through a word at a wide space
    image, truth = page(code, kind, seed, lines=8)  # type: ignore[arg-type]
    body = ocr(client, image, f"?lang={code}").json
    assert body["recognizer"]["route"] == "lines"
    assert cer_lines(truth, texts(body)) <= 0.03, (texts(body), truth)


@pytest.mark.parametrize(("code", "kind", "seed", "lines", "script"), [("ko", "scan", 20261204, 8, "Hangul"),
                                                                        ("th", "photo", 20261204, 8, "Thai"),
                                                                        ("ko", "photo", 7, 4, "Hangul")])
def test_auto_finds_what_osd_misses(client: FlaskClient, code: str, kind: str, seed: int, lines: int,
                                    script: str) -> None:
    # OSD finds no script on the Korean page and calls the Thai photo Latin: PP-OCR's unsure reading gets
    # a second look; it calls the Korean photo Hebrew: Tesseract's unsure reading gets one too
    image, truth = page(code, kind, seed, lines=lines)  # type: ignore[arg-type]
    body = ocr(client, image, "?lang=auto").json
    assert body["recognizer"]["script"] == script and body["recognizer"]["lang"] == code, body["recognizer"]
    assert cer_lines(truth, texts(body)) <= 0.05, (texts(body), truth)
