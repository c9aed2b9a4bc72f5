"""The PDF layer in-process: sniffing, script detection, planning limits, render budget and text layers."""
from __future__ import annotations

import pytest
from docgen import busy_page_pdf, javascript_in_object_stream_pdf, javascript_pdf, pages_pdf, text_pdf

from ocr_app.config import Settings
from ocr_app.documents.pages import load_pages
from ocr_app.documents.pdf import has_javascript, is_pdf
from ocr_app.errors import PageRenderTimeout
from ocr_app.options import PageOptions, RequestOptions

SETTINGS = Settings.from_env({})


def test_a_pdf_is_sniffed_at_the_start_only() -> None:
    assert is_pdf(b"%PDF-1.7\n") and is_pdf(b"\xef\xbb\xbf \r\n%PDF-1.4")
    assert not is_pdf(b"PK\x03\x04....%PDF-1.7") and not is_pdf(b"GIF89a")


def test_javascript_is_found_in_plain_and_compressed_objects() -> None:
    assert has_javascript(javascript_pdf()) and has_javascript(javascript_in_object_stream_pdf())
    assert not has_javascript(text_pdf([("digital", "no scripts here")]))


def test_a_page_that_renders_too_long_gives_up() -> None:
    quick = Settings.from_env({}, pdf_render_seconds=0.001)
    with pytest.raises(PageRenderTimeout) as err:
        load_pages(busy_page_pdf(50_000), quick, RequestOptions(dpi=72))
    assert err.value.code == 42238 and "OCR_PDF_RENDER_SECONDS" in err.value.msg


def test_text_layer_lines_and_words_in_rendered_pixels() -> None:
    pdf = text_pdf([("digital", "Alpha beta gamma")])
    pages = load_pages(pdf, SETTINGS, RequestOptions(page=PageOptions(words=True), dpi=144))
    assert pages is not None and pages[0].image is None
    (line,) = pages[0].lines or []
    assert line["text"] == "Alpha beta gamma" and line["confidence"] == 1.0
    assert [w["text"] for w in line["words"]] == ["Alpha", "beta", "gamma"]
    (x0, y0), (x1, y1) = line["box"][0], line["box"][2]
    # fpdf2 wrote the baseline at 150 pt from the top, 60 pt from the left: 2 px per pt at 144 dpi
    assert 115 <= x0 <= 125 and 240 <= y0 < 300 < y1 <= 320 and x0 < x1 < 1224  # "g" reaches below
    lefts = [w["box"][0][0] for w in line["words"]]
    assert lefts == sorted(lefts) and line["words"][-1]["box"][1][0] == pytest.approx(x1)


def test_empty_pages_have_no_text_layer_and_are_rendered() -> None:
    pages = load_pages(pages_pdf(2), SETTINGS, RequestOptions(dpi=72))
    assert pages is not None and [p.lines for p in pages] == [None, None]
    assert all(p.image and p.image.startswith(b"\x89PNG") for p in pages)
    assert [(p.plan.width, p.plan.height) for p in pages] == [(612, 792), (612, 792)]
