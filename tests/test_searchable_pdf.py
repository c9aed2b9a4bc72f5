"""format=pdf: searchable PDFs read back by poppler's pdftotext, checked by qpdf, opened by pikepdf and PDFium.

The OCR runs on a real instance (the session's); the hostile pages are fed to searchable_pdf directly.
"""
from __future__ import annotations

import io
import re
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pikepdf
import pypdfium2 as pdfium
import pytest
import requests
from docgen import pages_pdf, text_pdf, tiff_pages
from fpdf import FPDF
from helpers import Proc, find_font, text_image, unique_tag
from inproc import build_app, png
from pages import two_column_page
from PIL import Image, ImageDraw, ImageFont
from rapidfuzz.distance import Levenshtein

from ocr_app.config import Settings
from ocr_app.documents.formats import as_text
from ocr_app.documents.image_pdf import stated_dpi
from ocr_app.documents.lines import words_of
from ocr_app.documents.pages import PageResult
from ocr_app.documents.searchable import searchable_pdf
from ocr_app.errors import PdfOutputTooLarge, TooManyWordsForPdf, UnsupportedImage
from ocr_app.options import RequestOptions

PDF_TYPE = {"Content-Type": "application/pdf"}
DPI = 200
SETTINGS = Settings.from_env({})


def url(instance: Proc, query: str = "") -> str:
    return f"{instance.extra['url']}/api/ocr{query}"


def post(instance: Proc, data: bytes, query: str, content_type: str = "application/pdf") -> requests.Response:
    return requests.post(url(instance, query), data=data, headers={"Content-Type": content_type}, timeout=120)


def both(instance: Proc, data: bytes, query: str = "", content_type: str = "application/pdf") -> tuple[dict, bytes]:
    """The JSON answer (with word boxes) and the searchable PDF of the same upload and options."""
    answer = post(instance, data, f"?words=1&dpi={DPI}{query}", content_type)
    assert answer.status_code == 200, answer.text
    searchable = post(instance, data, f"?format=pdf&dpi={DPI}{query}", content_type)
    assert searchable.status_code == 200, searchable.text
    assert searchable.headers["Content-Type"] == "application/pdf" and searchable.content.startswith(b"%PDF-")
    body = answer.json()
    return body.get("pages") or [{"page": 1, "source": "ocr", "data": body["data"]}], searchable.content


def pdftotext(pdf: bytes, tmp_path: Path, *args: str) -> str:
    path = tmp_path / "out.pdf"
    path.write_bytes(pdf)
    return subprocess.run(["pdftotext", "-enc", "UTF-8", *args, str(path), "-"], check=True,
                          capture_output=True, text=True).stdout


def page_words(pdf: bytes, tmp_path: Path) -> list[list[tuple[str, float, float, float, float]]]:
    """pdftotext -bbox: each page's words with their boxes in points (y down), as displayed."""
    html = pdftotext(pdf, tmp_path, "-bbox", "-cropbox")
    root = ET.fromstring(re.sub(r"<!DOCTYPE[^>]*>", "", html).replace('xmlns="http://www.w3.org/1999/xhtml"', ""))
    return [[(w.text or "", *(float(w.get(k, 0)) for k in ("xMin", "yMin", "xMax", "yMax"))) for w in page.iter("word")]
            for page in root.iter("page")]


def cer(expected: str, got: str) -> float:
    norm = " ".join(expected.split()), " ".join(got.split())
    return Levenshtein.distance(*norm) / max(1, len(norm[0]))


def check_valid(pdf: bytes, tmp_path: Path) -> None:
    """qpdf --check passes, and pikepdf and PDFium both open it."""
    path = tmp_path / "check.pdf"
    path.write_bytes(pdf)
    check = subprocess.run(["qpdf", "--check", str(path)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    with pikepdf.open(io.BytesIO(pdf)) as opened:
        assert not opened.is_encrypted and len(opened.pages) >= 1
    doc = pdfium.PdfDocument(pdf)
    try:
        assert len(doc) >= 1
    finally:
        doc.close()


def assert_words_on_boxes(lines: list[dict], found: list[tuple[str, float, float, float, float]],
                          scale: float, tolerance: float = 3.0) -> None:
    """Each JSON word is a pdftotext word, in order, within `tolerance` px of its box: both ends along the
    text and the middle across it (across, pdftotext reports the font's ascent to descent, not the ink)."""
    expected = [(w, _runs_down(line)) for line in lines for w in words_of(line)]
    assert sorted(w["text"] for w, _ in expected) == sorted(t for t, *_ in found)
    left = list(found)
    for word, down in expected:
        xs, ys = [p[0] for p in word["box"]], [p[1] for p in word["box"]]
        want = [min(xs), min(ys), max(xs), max(ys)]
        # the pdftotext word of the same text nearest to the JSON box (a text may occur twice)
        match = min((f for f in left if f[0] == word["text"]),
                    key=lambda f: sum(abs(v * scale - w) for v, w in zip(f[1:], want, strict=True)))
        left.remove(match)
        text, got = match[0], [v * scale for v in match[1:]]
        along, across = ((1, 3), (0, 2)) if down else ((0, 2), (1, 3))
        assert all(abs(got[i] - want[i]) <= tolerance for i in along), (text, got, want)
        middle = [(box[across[0]] + box[across[1]]) / 2 for box in (got, want)]
        assert abs(middle[0] - middle[1]) <= tolerance, (text, got, want)


def _runs_down(line: dict) -> bool:
    """A line of a page turned a quarter: its box is taller than wide."""
    xs, ys = [p[0] for p in line["box"]], [p[1] for p in line["box"]]
    return max(ys) - min(ys) > max(xs) - min(xs)


def image_streams(pdf: bytes) -> list[bytes]:
    with pikepdf.open(io.BytesIO(pdf)) as opened:
        return [img.read_raw_bytes() for page in opened.pages for img in page.images.values()]


@pytest.fixture(scope="module")
def texts() -> list[str]:
    tag = unique_tag()
    return [f"Invoice {tag} total due", f"Contract {tag} Digital", f"Receipt {tag} paid in full"]


def scan_pdf(pages: list[tuple[str, object]]) -> bytes:
    """Letter pages: ("scan", a PIL image) is a picture across the page, ("digital", text) real text."""
    pdf = FPDF(unit="pt", format=(612, 792))
    pdf.set_auto_page_break(False)
    for kind, content in pages:
        pdf.add_page()
        if kind == "scan":
            pdf.image(content, x=36, y=60, w=540)
        else:
            pdf.set_font("Helvetica", size=20)
            pdf.text(x=60, y=150, text=str(content))
    return bytes(pdf.output())


@pytest.fixture(scope="module")
def scanned(texts: list[str]) -> bytes:
    """Page 1 is a scan of a two-column page (13 pt text), page 2 born-digital text, page 3 one scanned line."""
    line = Image.open(io.BytesIO(text_image(texts[2], size=(2000, 200), fmt="PNG", font_size=60)))
    return scan_pdf([("scan", two_column_page(seed=11, rows=6).image), ("digital", texts[1]), ("scan", line)])


@pytest.fixture(scope="module")
def round_trip(instance: Proc, scanned: bytes) -> tuple[dict, bytes]:
    return both(instance, scanned)


def test_pdftotext_reads_back_the_json_text(round_trip: tuple[list[dict], bytes], tmp_path: Path) -> None:
    pages, pdf = round_trip
    # pdftotext orders a page's lines by its own layout analysis: compare them as sets of lines
    read = pdftotext(pdf, tmp_path).split("\f")
    # -raw keeps the order of the text in the file: ours, the reading order of format=text
    raw = pdftotext(pdf, tmp_path, "-raw").split("\f")
    for page in pages:
        expected = as_text([PageResult(page["page"], 1, 1, page["source"], page["data"])])
        got = read[page["page"] - 1]
        assert cer(sorted_lines(expected), sorted_lines(got)) <= 0.01, (expected, got)
        got = raw[page["page"] - 1]
        assert cer("".join(expected.split()), "".join(got.split())) <= 0.01, (expected, got)


def sorted_lines(text: str) -> str:
    return "\n".join(sorted(line.strip() for line in text.splitlines() if line.strip()))


def test_each_word_lands_on_its_box(round_trip: tuple[list[dict], bytes], tmp_path: Path) -> None:
    pages, pdf = round_trip
    found = page_words(pdf, tmp_path)
    for page in pages:
        if page["source"] == "ocr":
            assert_words_on_boxes(page["data"], found[page["page"] - 1], DPI / 72)


def test_the_same_pdf_comes_back_with_text_added(round_trip: tuple[list[dict], bytes], scanned: bytes,
                                                  tmp_path: Path) -> None:
    pages, pdf = round_trip
    check_valid(pdf, tmp_path)
    assert image_streams(pdf) == image_streams(scanned), "page images are not re-encoded"
    with pikepdf.open(io.BytesIO(pdf)) as out, pikepdf.open(io.BytesIO(scanned)) as sent:
        assert len(out.pages) == len(sent.pages) == 3
        # the text-layer page is left exactly as it was
        assert out.pages[1].Contents.read_bytes() == sent.pages[1].Contents.read_bytes()
        assert sorted(out.pages[1].Resources.keys()) == sorted(sent.pages[1].Resources.keys())
        assert "/XObject" not in out.pages[1].Resources or not any(
            str(k).startswith("/OCR") for k in out.pages[1].Resources.XObject.keys())
        ocr_forms = [str(k) for k in out.pages[0].Resources.XObject.keys() if str(k).startswith("/OCR")]
        assert len(ocr_forms) == 1
        form = out.pages[0].Resources.XObject[ocr_forms[0]]
        assert b" Tr" in form.read_bytes() and b"3 Tr" in form.read_bytes(), "invisible text"


def test_pages_not_selected_are_left_alone(instance: Proc, scanned: bytes, texts: list[str], tmp_path: Path) -> None:
    resp = post(instance, scanned, f"?format=pdf&pages=3&dpi={DPI}")
    assert resp.status_code == 200, resp.text
    read = pdftotext(resp.content, tmp_path).split("\f")
    assert read[0].strip() == "" and texts[1] in read[1] and cer(texts[2], read[2]) <= 0.02


def test_an_encrypted_pdf_comes_back_unencrypted(instance: Proc, tmp_path: Path) -> None:
    tag = unique_tag()
    locked = text_pdf([("scan", f"Sealed {tag} words")], encrypt="s3cret")
    resp = post(instance, locked, "?format=pdf&password=s3cret")
    assert resp.status_code == 200, resp.text
    check_valid(resp.content, tmp_path)
    assert cer(f"Sealed {tag} words", pdftotext(resp.content, tmp_path)) <= 0.01
    resp = post(instance, locked, "?format=pdf")
    assert resp.status_code == 422 and resp.json()["code"] == 42233


def turned_pdf(text: str, rotate: int = 90) -> bytes:
    """A scan page shown turned a quarter (/Rotate) and cropped off-centre (a CropBox not at 0,0).

    Three lines, not one: the page classifier tells 90 from 270 degrees on a lone line no better than chance
    (a fault of page orientation, not of the text layer this checks)."""
    img = Image.new("RGB", (2000, 560), "white")
    draw = ImageDraw.Draw(img)
    font = ImageFont.truetype(find_font("DejaVuSans.ttf"), 60)
    for row, line_text in enumerate((text, "Second line of the scan", "Third line closes it")):
        draw.text((40, 60 + 160 * row), line_text, fill="black", font=font)
    with pikepdf.open(io.BytesIO(scan_pdf([("scan", img)]))) as pdf:
        page = pdf.pages[0]
        page.Rotate = rotate
        page.CropBox = pikepdf.Array([20, 40, 600, 760])
        out = io.BytesIO()
        pdf.save(out)
        return out.getvalue()


@pytest.mark.parametrize("rotate", [90, 270])
def test_the_text_follows_a_turned_and_cropped_page(instance: Proc, tmp_path: Path, rotate: int) -> None:
    text = f"Turned {unique_tag()} page"
    pages, pdf = both(instance, turned_pdf(text, rotate))
    check_valid(pdf, tmp_path)
    # against the JSON's text: the engine may misread a line turned this way, the PDF must say the same
    expected = sorted(line["text"] for line in pages[0]["data"])
    # line by line: pdftotext orders the lines of a page turned a quarter its own way (right to left on one
    # turn, left to right on the other), as it does for any vertical text
    read = sorted(line.strip() for line in pdftotext(pdf, tmp_path).splitlines() if line.strip())
    assert len(expected) == 3 and cer(" ".join(expected), " ".join(read)) <= 0.01, (expected, read)
    assert_words_on_boxes(pages[0]["data"], page_words(pdf, tmp_path)[0], DPI / 72)


def jpeg(text: str, dpi: int | None = None, orientation: int = 1, angle: int = 0) -> bytes:
    img = Image.open(io.BytesIO(text_image(text, size=(900, 200), fmt="PNG", font_size=36)))
    if orientation == 3:
        img = img.rotate(180)  # stored upside down; EXIF says to turn it for display
    img = img.rotate(angle, expand=True)
    exif = Image.Exif()
    exif[0x0112] = orientation
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=92, exif=exif.tobytes(), **({"dpi": (dpi, dpi)} if dpi else {}))
    return buf.getvalue()


def page_size(pdf: bytes, index: int = 0) -> tuple[float, float]:
    with pikepdf.open(io.BytesIO(pdf)) as opened:
        box = [float(v) for v in opened.pages[index].mediabox]
        return box[2] - box[0], box[3] - box[1]


def test_a_jpeg_is_embedded_as_sent_at_its_dpi(instance: Proc, tmp_path: Path) -> None:
    text = f"Photo {unique_tag()} here"
    data = jpeg(text, dpi=150)
    pages, pdf = both(instance, data, content_type="image/jpeg")
    check_valid(pdf, tmp_path)
    assert image_streams(pdf) == [data], "the JPEG's own bytes, not re-encoded"
    with pikepdf.open(io.BytesIO(pdf)) as opened:
        assert next(iter(opened.pages[0].images.values())).Filter == pikepdf.Name.DCTDecode
    assert page_size(pdf) == pytest.approx((900 * 72 / 150, 200 * 72 / 150))
    assert cer(text, pdftotext(pdf, tmp_path)) <= 0.01
    assert_words_on_boxes(pages[0]["data"], page_words(pdf, tmp_path)[0], 150 / 72)
    # no dpi stated: 300
    plain = post(instance, jpeg(text), "?format=pdf", "image/jpeg")
    assert plain.status_code == 200 and page_size(plain.content) == pytest.approx((900 * 72 / 300, 200 * 72 / 300))


def test_a_photo_turned_upside_down(instance: Proc, tmp_path: Path) -> None:
    # by EXIF: the page is shown turned, and the text with it
    text = f"Upside {unique_tag()} down"
    pages, pdf = both(instance, jpeg(text, dpi=100, orientation=3), content_type="image/jpeg")
    with pikepdf.open(io.BytesIO(pdf)) as opened:
        assert opened.pages[0].rotation == 180
    assert cer(text, pdftotext(pdf, tmp_path)) <= 0.01
    assert_words_on_boxes(pages[0]["data"], page_words(pdf, tmp_path)[0], 100 / 72)
    # by its content: the engine reads it turned, and the text layer runs upside down with the picture
    page = two_column_page(seed=5, rows=2)
    pages, pdf = both(instance, page.jpeg(180), content_type="image/jpeg")
    read = pdftotext(pdf, tmp_path)
    for line in page.lines:
        assert line in read, (line, read)


def test_a_multi_page_tiff_gives_a_page_per_frame(instance: Proc, tmp_path: Path) -> None:
    tag = unique_tag()
    texts = [f"First {tag} frame", f"Second {tag} frame", f"Third {tag} frame"]
    resp = post(instance, tiff_pages(texts), "?format=pdf&pages=1,3", "image/tiff")
    assert resp.status_code == 200, resp.text
    check_valid(resp.content, tmp_path)
    read = pdftotext(resp.content, tmp_path).split("\f")
    assert len(read) == 4 and read[3] == ""  # three pages, then the end
    assert cer(texts[0], read[0]) <= 0.01 and read[1].strip() == "" and cer(texts[2], read[2]) <= 0.01
    assert page_size(resp.content, 2) == pytest.approx((800 * 72 / 300, 200 * 72 / 300))


def test_refusals_over_http(instance: Proc) -> None:
    files = [("image", ("a.jpg", text_image("Batch One"), "image/jpeg")),
             ("image", ("b.jpg", text_image("Batch Two"), "image/jpeg"))]
    resp = requests.post(url(instance, "?format=pdf"), files=files, timeout=60)
    assert resp.status_code == 400 and resp.json()["code"] == 40032 and "format=pdf" in resp.json()["msg"]
    # thousands of tiny pages: OCR_MAX_PAGES holds before any page renders
    resp = post(instance, pages_pdf(3000, media_box="0 0 40 40"), "?format=pdf&dpi=72")
    assert resp.status_code == 422 and resp.json()["code"] == 42230 and "OCR_MAX_PAGES" in resp.json()["msg"]


def line(text: str, box: list[list[float]], words: list[dict] | None = None) -> dict:
    return {"text": text, "confidence": 0.9, "box": box, **({"words": words} if words is not None else {})}


def quad(x0: float, y0: float, x1: float, y1: float) -> list[list[float]]:
    return [[x0, y0], [x1, y0], [x1, y1], [x0, y1]]


def blank_pdf(count: int = 1) -> bytes:
    return pages_pdf(count)


def test_hostile_pages(tmp_path: Path) -> None:
    options = RequestOptions(dpi=72)
    # zero-size boxes, control characters, an empty page: a valid PDF with what text can be kept
    pages = [PageResult(1, 612, 792, "ocr", [
        line("a\x00b \x1bc\uffff", quad(10, 10, 300, 40)),
        line("flat", quad(50, 100, 50, 100)),
        line("thin", quad(50, 200, 300, 200), [{"text": "thin", "confidence": 1, "box": quad(50, 200, 50, 200)}]),
        line("\x00", quad(10, 300, 100, 330)),
    ]), PageResult(2, 612, 792, "ocr", [])]
    pdf = searchable_pdf(blank_pdf(2), pages, options, SETTINGS)
    check_valid(pdf, tmp_path)
    read = pdftotext(pdf, tmp_path)
    assert "ab" in read and "c" in read and "\x00" not in read and "\x1b" not in read
    # a document with nothing to write: still the same, valid PDF
    nothing = searchable_pdf(blank_pdf(), [PageResult(1, 612, 792, "ocr", [])], options, SETTINGS)
    check_valid(nothing, tmp_path)
    # no upload (a caller that kept only the pages): a clear refusal
    with pytest.raises(UnsupportedImage):
        searchable_pdf(b"", pages, options, SETTINGS)
    # more words than the bound: refused before rendering
    many = [line(" ".join(["w"] * 1000), quad(10, 10 + i, 600, 11 + i)) for i in range(120)]
    with pytest.raises(TooManyWordsForPdf) as err:
        searchable_pdf(blank_pdf(), [PageResult(1, 612, 792, "ocr", many)], options, SETTINGS)
    assert err.value.status == 413 and err.value.code == 41333 and "OCR_PDF_MAX_WORDS" in err.value.msg
    # an answer over the output bound
    small = Settings.from_env({}, pdf_max_output_mb=0.001)
    with pytest.raises(PdfOutputTooLarge) as too_big:
        searchable_pdf(blank_pdf(40), [PageResult(1, 612, 792, "ocr", pages[0].lines)], options, small)
    assert too_big.value.status == 413 and too_big.value.code == 41332
    assert "OCR_PDF_MAX_OUTPUT_MB" in too_big.value.msg


def test_a_page_that_inherits_its_resources_keeps_them(tmp_path: Path) -> None:
    """Resources on the page tree, not the page: the text layer is added without hiding the scan."""
    with pikepdf.open(io.BytesIO(text_pdf([("scan", "Inherited")]))) as pdf:
        page = pdf.pages[0]
        pdf.Root.Pages.Resources = page.obj.Resources
        del page.obj["/Resources"]
        out = io.BytesIO()
        pdf.save(out)
    sent = out.getvalue()
    lines = [line("Inherited", quad(100, 280, 700, 360))]
    got = searchable_pdf(sent, [PageResult(1, 1700, 2200, "ocr", lines)], RequestOptions(dpi=DPI), SETTINGS)
    check_valid(got, tmp_path)
    assert image_streams(got) == image_streams(sent) and len(image_streams(got)) == 1
    assert "Inherited" in pdftotext(got, tmp_path)
    assert searchable_pdf(sent, [PageResult(1, 1700, 2200, "ocr", lines)], RequestOptions(dpi=DPI), SETTINGS) == got


def test_limits_answer_their_own_codes_over_http(tmp_path: Path) -> None:
    """The app's own limits with a small OCR_PDF_MAX_OUTPUT_MB and OCR_MAX_PAGES (the engine stands in)."""
    client = build_app(tmp_path / "run", pdf_max_output_mb=0.01, max_pages=2).test_client()
    big = png(8, size=(600, 400))  # noise: its PDF is larger than 10 KB
    resp = client.post("/api/ocr?format=pdf", data=big, headers={"Content-Type": "image/png"})
    assert resp.status_code == 413 and resp.get_json()["code"] == 41332
    assert "OCR_PDF_MAX_OUTPUT_MB" in resp.get_json()["msg"]
    ok = client.post("/api/ocr?format=pdf", data=png(9, size=(40, 20)), headers={"Content-Type": "image/png"})
    assert ok.status_code == 200 and ok.mimetype == "application/pdf"
    # a TIFF of more frames than OCR_MAX_PAGES: every frame would be a page, so it is refused
    frames = tiff_pages(["one", "two", "three"], size=(40, 20), font_size=10)
    resp = client.post("/api/ocr?format=pdf&pages=1", data=frames, headers={"Content-Type": "image/tiff"})
    assert resp.status_code == 422 and resp.get_json()["code"] == 42230


@pytest.mark.parametrize("kind", ["alpha png", "exif 6 jpeg", "mirrored exif 5 jpeg", "webp", "bmp"])
def test_every_image_kind_becomes_its_page_as_displayed(kind: str, tmp_path: Path) -> None:
    """Boxes are in the image as displayed (EXIF orientation applied): the words land there whatever the
    file's own layout; img2pdf's refusals (alpha, a mirrored orientation) go through an RGB PNG."""
    upright = Image.open(io.BytesIO(text_image("Shown upright", size=(600, 200), fmt="PNG")))
    buf = io.BytesIO()
    if kind.endswith("jpeg"):
        orientation = int(kind.split()[-2])
        stored = upright.transpose(Image.Transpose.ROTATE_90 if orientation == 6 else Image.Transpose.TRANSPOSE)
        exif = Image.Exif()
        exif[0x0112] = orientation
        stored.save(buf, "JPEG", quality=92, exif=exif.tobytes())
    elif kind == "alpha png":
        upright.convert("RGBA").save(buf, "PNG")
    else:
        upright.save(buf, kind.upper())
    words = [{"text": t, "confidence": 1.0, "box": quad(x0, 60, x1, 140)} for t, x0, x1 in
             (("Shown", 20, 250), ("upright", 270, 560))]
    page = PageResult(1, 600, 200, "ocr", [line("Shown upright", quad(20, 60, 560, 140), words)])
    pdf = searchable_pdf(buf.getvalue(), [page], RequestOptions(), SETTINGS)
    check_valid(pdf, tmp_path)
    width, height = page_size(pdf)
    with pikepdf.open(io.BytesIO(pdf)) as opened:
        turned = opened.pages[0].rotation in (90, 270)
    dpi = stated_dpi(Image.open(io.BytesIO(buf.getvalue())))
    assert dpi == pytest.approx(96 if kind == "bmp" else 300, abs=0.1)  # Pillow writes 96 dpi into a BMP
    shown = (height, width) if turned else (width, height)
    assert shown == pytest.approx((600 * 72 / dpi, 200 * 72 / dpi))
    assert_words_on_boxes(page.lines, page_words(pdf, tmp_path)[0], dpi / 72)


def test_a_thousand_page_request_within_a_raised_page_limit(tmp_path: Path) -> None:
    """OCR_MAX_PAGES raised to 1,000: a 1,000-page document comes back as one valid searchable PDF of as many
    pages, each with its text (the engine stands in), and one page more is refused before any renders."""
    client = build_app(tmp_path / "run", max_pages=1000, max_upload_mb=5.0).test_client()
    resp = client.post("/api/ocr?format=pdf&dpi=72", data=pages_pdf(1000, media_box="0 0 40 40"),
                       headers={"Content-Type": "application/pdf"})
    assert resp.status_code == 200 and resp.mimetype == "application/pdf", resp.get_data(as_text=True)[:300]
    check_valid(resp.data, tmp_path)
    with pikepdf.open(io.BytesIO(resp.data)) as pdf:
        assert len(pdf.pages) == 1000
    read = pdftotext(resp.data, tmp_path).split("\f")
    assert len(read) == 1001 and all("fake" in page for page in read[:1000])
    over = client.post("/api/ocr?format=pdf&dpi=72", data=pages_pdf(1001, media_box="0 0 40 40"),
                       headers={"Content-Type": "application/pdf"})
    assert over.status_code == 422 and over.get_json()["code"] == 42230
