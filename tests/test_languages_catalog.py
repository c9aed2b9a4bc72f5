"""The language catalog: codes resolve both ways, packs are named, the default set is complete."""
from __future__ import annotations

from pathlib import Path

import pytest

from ocr_app.models import languages
from ocr_app.models.languages import DEFAULT_SET, ROUTES, UnknownLanguage, installed, package, resolve

LISTED = ("de", "es", "pt", "pl", "fr", "tr", "vi", "el", "ru", "uk", "ar", "he", "hi", "ta", "te", "ko",
          "th", "ja", "en", "zh")


@pytest.mark.parametrize("code", LISTED)
def test_listed_languages_resolve_by_both_codes(code: str) -> None:
    lang = resolve(code)
    assert lang.code == code
    assert lang.route in ROUTES
    assert resolve(lang.tesseract[0]) is lang
    assert resolve(code.upper()) is lang


def test_packages_and_scripts() -> None:
    assert package("ru") == "tesseract-ocr-rus"
    assert package("zh") == "tesseract-ocr-chi-sim"
    assert package("deu") == "tesseract-ocr-deu"
    assert resolve("ar").right_to_left and resolve("he").right_to_left and not resolve("ru").right_to_left
    assert resolve("ko").script == "Hangul" and resolve("ru").script == "Cyrillic"
    assert "tesseract-ocr-osd" in languages.packages()
    assert set(DEFAULT_SET) <= {lang.code for lang in languages.languages()}
    # every language the default route sends to Tesseract among the listed ones is in the default set
    assert {c for c in LISTED if resolve(c).needs_pack} <= set(DEFAULT_SET)


@pytest.mark.parametrize("bad", ["xx", "", "../eng", "eng\x00", "d" * 10_000])
def test_unknown_codes(bad: str) -> None:
    with pytest.raises(UnknownLanguage):
        resolve(bad)


def test_installed_reads_the_tessdata_folder(tmp_path: Path) -> None:
    ru, de = resolve("ru"), resolve("de")
    assert not installed(ru, tmp_path) and not installed(ru, None)
    assert installed(de, None)  # PP-OCR reads German without a pack
    (tmp_path / "rus.traineddata").write_bytes(b"x")
    assert installed(ru, tmp_path)
    assert languages.find_tessdata((str(tmp_path / "none"),)) is None


def test_lang_values_are_canonical() -> None:
    from ocr_app.errors import BadLanguageList, InvalidOption
    from ocr_app.errors import UnknownLanguage as UnknownCode
    from ocr_app.options import PageOptions, parse_lang

    assert parse_lang("DEU+eng") == parse_lang("de,en") == parse_lang("de en") == "de,en"
    assert parse_lang(" auto ") == "auto" and parse_lang("") == "" and parse_lang("ru,rus") == "ru"
    assert parse_lang("chi_sim") == "zh"
    with pytest.raises(UnknownCode):
        parse_lang("xx")
    with pytest.raises(InvalidOption):
        parse_lang("auto,de")
    for bad in ("x" * 65, ",".join(["de"] * 9), "../eng", "eng\x00"):
        with pytest.raises(BadLanguageList):
            parse_lang(bad)
    page = PageOptions(lang="de,en", route="lines")
    assert page.to_query() == {"lang": "de,en", "route": "lines"}
    assert page.cache_suffix() == ":l=de,en:r=lines" and PageOptions().cache_suffix() == ""


def test_right_to_left_pages_read_from_the_right() -> None:
    from ocr_app.service.reading_order import reading_order

    def box(x0: float, y0: float, x1: float, y1: float) -> list[list[float]]:
        return [[x0, y0], [x1, y0], [x1, y1], [x0, y1]]

    row = [box(0, 0, 100, 20), box(200, 0, 300, 20), box(0, 40, 100, 60)]
    assert reading_order(row) == [0, 1, 2]
    assert reading_order(row, right_to_left=True) == [1, 0, 2]


def test_line_fragments_and_joiners() -> None:
    from ocr_app.engine.tesseract_lines import strip_joiners, whole_lines

    line = [[50, 60], [800, 60], [800, 110], [50, 110]]
    mark = [[85, 94], [103, 94], [103, 108], [85, 108]]  # a subscript boxed apart, inside its line
    other = [[50, 130], [700, 130], [700, 170], [50, 170]]
    assert whole_lines([line, mark, other]) == [line, other]
    assert strip_joiners("அவர்\u200cகள்\u200c") == "அவர்கள்"
    assert strip_joiners("می\u200cخواهم") == "می\u200cخواهم"  # Persian's non-joiner is a letter's


def test_a_line_cut_in_two_is_joined_again() -> None:
    from ocr_app.engine.tesseract_lines import joined_pieces

    left = [[57, 370], [288, 368], [289, 406], [57, 408]]
    right = [[262, 361], [694, 361], [694, 421], [262, 421]]  # taller: marks below the line
    below = [[55, 427], [694, 429], [694, 469], [55, 467]]
    far = [[900, 427], [1200, 427], [1200, 469], [900, 469]]  # past a gutter: another column
    joined = joined_pieces([left, right, below, far])
    assert len(joined) == 3
    xs = [p[0] for p in joined[0]]
    assert min(xs) <= 58 and max(xs) >= 693
    # a generated Telugu scan's line, cut at a wide space (half its height) through a word
    cut = joined_pieces([[[58, 128], [390, 128], [390, 165], [58, 165]],
                         [[410, 125], [677, 129], [676, 170], [409, 165]]])
    assert len(cut) == 1
