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
