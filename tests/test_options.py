"""Request options: parsing and validation of every parameter, and page selection."""
from __future__ import annotations

import pytest

from ocr_app.config import ConfigError, Settings
from ocr_app.errors import InvalidOption, PageNotInDocument
from ocr_app.options import PageOptions, parse_options, parse_pages

SETTINGS = Settings.from_env({})


def test_defaults() -> None:
    options = parse_options({}, SETTINGS)
    assert (options.format, options.dpi, options.pages, options.pdf_text, options.password) == (
        "json", 200, (), "auto", None)
    assert options.page == PageOptions() and not options.needs_words


def test_every_parameter() -> None:
    options = parse_options({"format": "HOCR", "dpi": "300", "pages": " 1-3, 7 ", "pdf_text": "never",
                             "password": "pw", "words": "true", "preview": "1"}, SETTINGS, bypass_cache=True)
    assert options.format == "hocr" and options.dpi == 300 and options.pages == ((1, 3), (7, 7))
    assert options.pdf_text == "never" and options.password == "pw" and options.preview
    assert options.page == PageOptions(words=True, bypass_cache=True)


@pytest.mark.parametrize("params, named", [
    ({"format": "docx"}, "format"), ({"dpi": "abc"}, "dpi"), ({"dpi": "20"}, "dpi"),
    ({"dpi": "401"}, "OCR_PDF_MAX_DPI"), ({"pdf_text": "always"}, "pdf_text"), ({"words": "maybe"}, "words"),
    ({"pages": "3-1"}, "pages"), ({"pages": "0"}, "pages"), ({"pages": "1;2"}, "pages"),
    ({"pages": "1," * 300 + "1"}, "pages"), ({"preview": "2"}, "preview"),
])
def test_bad_values_name_the_parameter(params: dict[str, str], named: str) -> None:
    with pytest.raises(InvalidOption) as err:
        parse_options(params, SETTINGS)
    assert named in err.value.msg and err.value.code == 40030


def test_selection_keeps_order_and_drops_repeats() -> None:
    options = parse_options({"pages": "5,1-3,2"}, SETTINGS)
    assert options.select(9) == [5, 1, 2, 3]
    assert parse_options({}, SETTINGS).select(3) == [1, 2, 3]
    with pytest.raises(PageNotInDocument):
        options.select(4)
    assert parse_pages("") == ()


def test_word_boxes_change_the_cache_key_and_the_query() -> None:
    assert PageOptions(words=True).cache_suffix() != PageOptions().cache_suffix()
    assert PageOptions(words=True).to_query() == {"words": "1"} and PageOptions().to_query() == {}
    assert parse_options({"format": "textract"}, SETTINGS).needs_words


def test_a_searchable_pdf_asks_for_word_boxes() -> None:
    options = parse_options({"format": "PDF"}, SETTINGS)
    assert options.format == "pdf" and options.needs_words and options.page_options.words


def test_dpi_settings_are_checked_at_start_up() -> None:
    with pytest.raises(ConfigError, match="OCR_PDF_DPI"):
        Settings.from_env({"OCR_PDF_DPI": "500"})
    assert Settings.from_env({"OCR_PDF_MAX_DPI": "600", "OCR_PDF_DPI": "500"}).pdf_dpi == 500
