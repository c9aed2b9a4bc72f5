"""Documents against a real instance: PDF and TIFF pages, selection, text layers, words, formats, batches."""
from __future__ import annotations

import base64
import io
import json
import re
import xml.etree.ElementTree as ET

import pypdfium2 as pdfium
import pytest
import requests
from docgen import (
    image_bomb_pdf,
    javascript_in_object_stream_pdf,
    javascript_pdf,
    pages_pdf,
    raw_tiff,
    text_pdf,
    tiff_pages,
    zip_as_pdf,
)
from helpers import Proc, text_image, unique_tag, worker_pids

PDF_TYPE = {"Content-Type": "application/pdf"}


def url(instance: Proc, query: str = "") -> str:
    return f"{instance.extra['url']}/api/ocr{query}"


def page_texts(body: dict) -> dict[int, str]:
    return {p["page"]: " ".join(line["text"] for line in p["data"]) for p in body["pages"]}


@pytest.fixture(scope="module")
def words() -> list[str]:
    """Fresh words per run, so no page is already cached from an earlier run."""
    tag = unique_tag()
    return [f"Invoice {tag}", f"Contract {tag} Digital", f"Receipt {tag}"]


@pytest.fixture(scope="module")
def pdf(words: list[str]) -> bytes:
    """Page 1 and 3 are pictures of text, page 2 is born-digital text."""
    return text_pdf([("scan", words[0]), ("digital", words[1]), ("scan", words[2])])


@pytest.fixture(scope="module")
def pdf_answer(instance: Proc, pdf: bytes) -> dict:
    resp = requests.post(url(instance), data=pdf, headers=PDF_TYPE, timeout=120)
    assert resp.status_code == 200, resp.text
    return dict(resp.json())


def test_pdf_raw_body_gives_every_page(pdf_answer: dict, words: list[str]) -> None:
    body = pdf_answer
    assert body["code"] == 0 and body["msg"] == "success"
    assert [p["page"] for p in body["pages"]] == [1, 2, 3]
    assert [p["source"] for p in body["pages"]] == ["ocr", "pdf_text", "ocr"]
    assert page_texts(body) == {1: words[0], 2: words[1], 3: words[2]}
    assert all((p["width"], p["height"]) == (1700, 2200) for p in body["pages"]), "letter at 200 dpi"
    assert [(d["text"], d["page"]) for d in body["data"]] == [(w, i) for i, w in enumerate(words, 1)]
    digital = body["pages"][1]["data"][0]
    assert digital["confidence"] == 1.0
    (x0, y0), (x1, y1) = digital["box"][0], digital["box"][2]
    assert 150 < x0 < x1 < 1700 and 300 < y0 < y1 < 450, "the text layer's box is in rendered pixels"


def test_pdf_multipart_and_base64_give_the_same_pages(instance: Proc, pdf: bytes, pdf_answer: dict) -> None:
    multipart = requests.post(url(instance), files={"image": ("doc.pdf", pdf, "application/pdf")}, timeout=120)
    encoded = requests.post(url(instance), json={"image_base64": base64.b64encode(pdf).decode()}, timeout=120)
    octet = requests.post(url(instance), data=pdf, headers={"Content-Type": "application/octet-stream"}, timeout=120)
    for resp in (multipart, encoded, octet):
        assert resp.status_code == 200, resp.text
        assert page_texts(resp.json()) == page_texts(pdf_answer)
        assert resp.headers["X-Cache"] == "HIT", "each page was cached by its own hash"


def test_no_cache_applies_to_each_page(instance: Proc, pdf: bytes) -> None:
    resp = requests.post(url(instance, "?pages=1"), data=pdf, headers={**PDF_TYPE, "Cache-Control": "no-cache"},
                         timeout=120)
    assert resp.status_code == 200 and resp.headers["X-Cache"] == "BYPASS"


def test_page_selection(instance: Proc, pdf: bytes, words: list[str]) -> None:
    resp = requests.post(url(instance, "?pages=3,1-2,2"), data=pdf, headers=PDF_TYPE, timeout=120)
    assert resp.status_code == 200, resp.text
    assert [p["page"] for p in resp.json()["pages"]] == [3, 1, 2], "in the order asked, each page once"
    assert page_texts(resp.json())[3] == words[2]
    for query, code in (("?pages=4", 40031), ("?pages=2-1", 40030), ("?pages=x", 40030), ("?pages=0", 40030)):
        resp = requests.post(url(instance, query), data=pdf, headers=PDF_TYPE, timeout=60)
        assert resp.status_code == 400 and resp.json()["code"] == code, (query, resp.text)


def pages_metric(instance: Proc, source: str) -> float:
    text = requests.get(f"{instance.extra['url']}/metrics", timeout=5).text
    found = re.search(rf'^ocr_document_pages_total{{source="{source}"}} ([0-9.e+]+)$', text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


def test_pages_are_counted_by_source(instance: Proc, pdf: bytes) -> None:
    before = pages_metric(instance, "pdf_text"), pages_metric(instance, "ocr")
    assert requests.post(url(instance, "?pages=1-2"), data=pdf, headers=PDF_TYPE, timeout=120).status_code == 200
    assert (pages_metric(instance, "pdf_text"), pages_metric(instance, "ocr")) == (before[0] + 1, before[1] + 1)


def test_pdf_text_never_runs_the_model(instance: Proc, pdf: bytes, words: list[str]) -> None:
    resp = requests.post(url(instance, "?pages=2&pdf_text=never"), data=pdf, headers=PDF_TYPE, timeout=120)
    assert resp.status_code == 200, resp.text
    page = resp.json()["pages"][0]
    assert page["source"] == "ocr" and " ".join(d["text"] for d in page["data"]) == words[1]


def test_three_page_tiff(instance: Proc) -> None:
    tag = unique_tag()
    texts = [f"First {tag}", f"Second {tag}", f"Third {tag}"]
    resp = requests.post(url(instance, "?pages=1,3"), data=tiff_pages(texts), headers={"Content-Type": "image/tiff"},
                         timeout=120)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert page_texts(body) == {1: texts[0], 3: texts[2]}
    assert all(p["source"] == "ocr" and (p["width"], p["height"]) == (800, 200) for p in body["pages"])


def test_single_image_answers_as_before(instance: Proc) -> None:
    resp = requests.post(url(instance), data=text_image("Plain Image"), headers={"Content-Type": "image/jpeg"},
                         timeout=60)
    assert resp.status_code == 200
    assert set(resp.json()) == {"code", "msg", "data", "cost_time", "cached", "instance", "profile", "engine"}


def test_words_on_images_and_pages(instance: Proc, pdf: bytes) -> None:
    image = requests.post(url(instance, "?words=1"), data=text_image("Three Word Line"),
                          headers={"Content-Type": "image/jpeg"}, timeout=60)
    document = requests.post(url(instance, "?words=1&pages=1-2"), data=pdf, headers=PDF_TYPE, timeout=120)
    plain = requests.post(url(instance), data=text_image("Three Word Line"), headers={"Content-Type": "image/jpeg"},
                          timeout=60)
    assert "words" not in plain.json()["data"][0], "word boxes are cached apart from plain answers"
    lines = image.json()["data"] + document.json()["data"]
    assert len(lines) == 3
    for line in lines:
        assert [w["text"] for w in line["words"]] == line["text"].split()
        xs = [p[0] for p in line["box"]]
        for word in line["words"]:
            assert 0 < word["confidence"] <= 1 and len(word["box"]) == 4
            assert min(xs) - 5 <= word["box"][0][0] < word["box"][1][0] <= max(xs) + 5


def test_formats(instance: Proc, pdf: bytes, words: list[str]) -> None:
    text = requests.post(url(instance, "?format=text"), data=pdf, headers=PDF_TYPE, timeout=120)
    assert text.status_code == 200 and text.headers["Content-Type"].startswith("text/plain")
    assert text.text == "\f".join(words) + "\n"
    hocr = requests.post(url(instance, "?format=hocr&pages=2"), data=pdf, headers=PDF_TYPE, timeout=120)
    root = ET.fromstring(hocr.content)
    spans = root.findall(".//{http://www.w3.org/1999/xhtml}span[@class='ocrx_word']")
    assert [s.text for s in spans] == words[1].split()
    textract = requests.post(url(instance, "?format=textract"), data=text_image("Textract Shape"),
                             headers={"Content-Type": "image/jpeg"}, timeout=60).json()
    assert [b["Text"] for b in textract["Blocks"] if b["BlockType"] == "WORD"] == ["Textract", "Shape"]
    bad = requests.post(url(instance, "?format=docx"), data=pdf, headers=PDF_TYPE, timeout=60)
    assert bad.status_code == 400 and bad.json()["code"] == 40030


def test_batch_answers_each_file_in_order(instance: Proc, pdf: bytes, words: list[str]) -> None:
    files = [("image", ("a.jpg", text_image("Batch One"), "image/jpeg")),
             ("image", ("b.gif", b"GIF89a not an image", "image/gif")),
             ("image", ("c.pdf", pdf, "application/pdf")),
             ("image", ("d.pdf", pdf[: len(pdf) // 2], "application/pdf"))]
    resp = requests.post(url(instance, "?pages=2"), files=files, timeout=120)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["code"] == 0 and body["msg"] == "success"
    results = body["results"]
    assert [r["filename"] for r in results] == ["a.jpg", "b.gif", "c.pdf", "d.pdf"]
    assert [r["code"] for r in results] == [0, 41501, 0, 42235]
    assert results[0]["data"][0]["text"] == "Batch One"
    assert page_texts(results[2]) == {2: words[1]}


def test_batch_limits(instance: Proc) -> None:
    tiny = text_image("x", size=(32, 32))
    too_many = [("image", (f"{i}.jpg", tiny, "image/jpeg")) for i in range(17)]
    resp = requests.post(url(instance), files=too_many, timeout=60)
    assert resp.status_code == 413 and resp.json()["code"] == 41330 and "OCR_MAX_BATCH" in resp.json()["msg"]
    resp = requests.post(url(instance, "?format=text"), files=too_many[:2], timeout=60)
    assert resp.status_code == 400 and resp.json()["code"] == 40032


def test_encrypted_pdf_opens_with_its_password(instance: Proc) -> None:
    locked = text_pdf([("digital", "Sealed Words")], encrypt="s3cret")
    resp = requests.post(url(instance, "?password=s3cret"), data=locked, headers=PDF_TYPE, timeout=60)
    assert resp.status_code == 200 and resp.json()["data"][0]["text"] == "Sealed Words"
    resp = requests.post(url(instance), files={"image": ("x.pdf", locked)}, data={"password": "wrong"}, timeout=60)
    assert resp.status_code == 422 and resp.json()["code"] == 42234


HOSTILE = {
    "encrypted": (lambda: text_pdf([("digital", "x")], encrypt="pw"), "", 422, 42233, "password"),
    "truncated": (lambda: text_pdf([("digital", "x")])[:400], "", 422, 42235, "truncated"),
    "page bomb": (lambda: pages_pdf(1, "0 0 100000 100000"), "", 422, 42232, "OCR_PDF_MAX_PAGE_PT"),
    "pixel limit": (lambda: pages_pdf(1, "0 0 14000 14000"), "", 422, 42231, "OCR_MAX_PIXELS"),
    "1000 pages": (lambda: pages_pdf(1000), "", 422, 42230, "OCR_MAX_PAGES"),
    "javascript": (javascript_pdf, "", 422, 42236, "JavaScript"),
    "javascript in an object stream": (javascript_in_object_stream_pdf, "", 422, 42236, "JavaScript"),
    "embedded image bomb": (image_bomb_pdf, "", 422, 42237, "OCR_MAX_PIXELS"),
    "zip as pdf": (zip_as_pdf, "", 415, 41501, "PDF"),
    "dpi too high": (lambda: pages_pdf(1), "?dpi=5000", 400, 40030, "OCR_PDF_MAX_DPI"),
    "2 pt page": (lambda: pages_pdf(1, "0 0 2 2"), "", 422, 42203, "8 px"),
    "garbage after header": (lambda: b"%PDF-1.7\n" + bytes(range(256)) * 20 + b"\n%%EOF\n", "", 422, 42235, "PDF"),
}


@pytest.mark.parametrize("name", list(HOSTILE))
def test_hostile_documents_get_their_error_and_workers_live(instance: Proc, name: str) -> None:
    make, query, status, code, names = HOSTILE[name]
    before = worker_pids(instance.pid)
    resp = requests.post(url(instance, query), data=make(), headers=PDF_TYPE, timeout=60)
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert body["code"] == code and names in body["msg"] and body["data"] == []
    assert worker_pids(instance.pid) == before


def test_a_1000_page_pdf_with_a_selection_is_fine(instance: Proc) -> None:
    resp = requests.post(url(instance, "?pages=1000"), data=pages_pdf(1000), headers=PDF_TYPE, timeout=60)
    assert resp.status_code == 200, resp.text
    assert json.loads(resp.content)["pages"][0]["page"] == 1000


TIFF_HOSTILE = {
    "frame bomb": (lambda: raw_tiff([(64, 64), (100000, 100000)]), 422, 42202, "OCR_MAX_PIXELS"),
    "first frame bomb": (lambda: raw_tiff([(100000, 100000), (64, 64)]), 422, 42202, "OCR_MAX_PIXELS"),
    "too many frames": (lambda: raw_tiff([(64, 64)] * 60), 422, 42230, "more than 50 pages"),
    "tiny frame": (lambda: raw_tiff([(64, 64), (4, 4)]), 422, 42203, "8 px"),
    "truncated": (lambda: tiff_pages(["One", "Two"])[:300], 422, 42201, "TIFF"),
}


@pytest.mark.parametrize("name", list(TIFF_HOSTILE))
def test_hostile_tiffs_get_their_error_and_workers_live(instance: Proc, name: str) -> None:
    make, status, code, names = TIFF_HOSTILE[name]
    before = worker_pids(instance.pid)
    resp = requests.post(url(instance), data=make(), headers={"Content-Type": "image/tiff"}, timeout=60)
    assert resp.status_code == status, resp.text
    assert resp.json()["code"] == code and names in resp.json()["msg"]
    assert worker_pids(instance.pid) == before


def test_a_looping_tiff_reads_each_frame_once(instance: Proc) -> None:
    resp = requests.post(url(instance), data=raw_tiff([(64, 64), (64, 64)], loop=True),
                         headers={"Content-Type": "image/tiff"}, timeout=60)
    assert resp.status_code == 200 and [p["page"] for p in resp.json()["pages"]] == [1, 2]


def test_rotated_page_text_boxes_match_the_rendered_page(instance: Proc) -> None:
    doc = pdfium.PdfDocument(text_pdf([("digital", "Turned Page")]))
    doc[0].set_rotation(90)
    buf = io.BytesIO()
    doc.save(buf)
    doc.close()
    text = requests.post(url(instance), data=buf.getvalue(), headers=PDF_TYPE, timeout=60).json()
    ocr = requests.post(url(instance, "?pdf_text=never"), data=buf.getvalue(), headers=PDF_TYPE, timeout=120).json()
    assert (text["pages"][0]["width"], text["pages"][0]["height"]) == (2200, 1700)
    assert text["data"][0]["text"] == ocr["data"][0]["text"] == "Turned Page"

    def bounds(box: list[list[float]]) -> tuple[float, float, float, float]:
        return min(p[0] for p in box), min(p[1] for p in box), max(p[0] for p in box), max(p[1] for p in box)

    # the text layer's box is tight to the glyphs, the detector's a little looser: same place, same shape
    a, b = bounds(text["data"][0]["box"]), bounds(ocr["data"][0]["box"])
    assert b[0] - 5 <= a[0] < a[2] <= b[2] + 5 and b[1] - 5 <= a[1] < a[3] <= b[3] + 5, (a, b)
    assert abs((a[0] + a[2]) - (b[0] + b[2])) / 2 < 20 and abs((a[1] + a[3]) - (b[1] + b[3])) / 2 < 20, (a, b)
    assert a[3] - a[1] > 4 * (a[2] - a[0]), "the line runs down the turned page"


def test_preview_adds_a_small_jpeg_per_page(instance: Proc, pdf: bytes) -> None:
    resp = requests.post(url(instance, "?preview=1&pages=1-2"), data=pdf, headers=PDF_TYPE, timeout=120)
    from PIL import Image

    for page in resp.json()["pages"]:
        head, _, payload = page["preview"].partition(",")
        assert head == "data:image/jpeg;base64"
        image = Image.open(io.BytesIO(base64.b64decode(payload)))
        assert max(image.size) == 1000 and image.size[0] / image.size[1] == pytest.approx(1700 / 2200, abs=0.01)


def test_a_scan_with_a_digital_stamp_is_ocred(instance: Proc) -> None:
    tag = unique_tag()
    pdf = text_pdf([("stamped scan", f"Scanned {tag}")])
    resp = requests.post(url(instance), data=pdf, headers=PDF_TYPE, timeout=120)
    assert resp.status_code == 200, resp.text
    page = resp.json()["pages"][0]
    assert page["source"] == "ocr" and f"Scanned {tag}" in [line["text"] for line in page["data"]]


def test_parameters_from_form_fields_and_json_keys(instance: Proc, pdf: bytes, words: list[str]) -> None:
    form = requests.post(url(instance, "?pages=1"), files={"image": ("d.pdf", pdf)},
                         data={"pages": "2", "format": "text"}, timeout=120)
    assert form.status_code == 200 and form.text == words[1] + "\n", "a form field overrides the query string"
    encoded = base64.b64encode(pdf).decode()
    as_json = requests.post(url(instance), json={"image_base64": encoded, "pages": 2, "words": True}, timeout=120)
    assert as_json.status_code == 200, as_json.text
    line = as_json.json()["data"][0]
    assert line["page"] == 2 and [w["text"] for w in line["words"]] == words[1].split()
    bad = requests.post(url(instance), json={"image_base64": encoded, "dpi": "lots"}, timeout=60)
    assert bad.status_code == 400 and bad.json()["code"] == 40030 and "dpi" in bad.json()["msg"]
