"""The per-language page generator the tests and the languages bench share (bench/langpages.py)."""
from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from bench import langpages
from bench.langwords import WORDS

REQUIRED = ("de", "es", "pt", "pl", "fr", "tr", "vi", "el", "ru", "uk", "ar", "he", "hi", "ta", "te", "ko", "th",
            "ja", "en", "zh")


def _pixels(png: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(png)) as img:
        assert img.format == "PNG"
        return np.asarray(img.convert("L"), dtype=np.int16)


def test_every_listed_language_has_pages_and_words() -> None:
    assert set(REQUIRED) <= set(langpages.CODES)
    for code in REQUIRED:
        assert 60 <= len(WORDS[code]) <= 200, code


def test_the_letters_readers_get_wrong_are_in_the_words() -> None:
    letters = {"de": "ßäöü", "fr": "éèêàçœ", "pl": "łżśą", "tr": "ışğç", "vi": "ữườộếẩ", "uk": "їєґ", "el": "άέώ"}
    for code, wanted in letters.items():
        text = "".join(WORDS[code])
        assert not [ch for ch in wanted if ch not in text], code


@pytest.mark.parametrize("code", REQUIRED)
def test_a_page_is_the_seeds_alone_and_has_ink(code: str) -> None:
    png, truth = langpages.page(code, "scan", seed=3, lines=4)
    again, truth_again = langpages.page(code, "scan", seed=3, lines=4)
    assert png == again and truth == truth_again
    assert len(truth) == 4 and all(line.strip() for line in truth)
    assert set("".join(truth).replace(" ", "")) <= set("".join(WORDS[code]))
    pixels = _pixels(png)
    assert (pixels < 100).mean() > 0.005, "no ink on the page"
    other, other_truth = langpages.page(code, "scan", seed=4, lines=4)
    assert other != png and other_truth != truth


@pytest.mark.parametrize("code", ("de", "ar", "zh"))
def test_a_photo_is_the_same_text_damaged(code: str) -> None:
    scan, truth = langpages.page(code, "scan", seed=5, lines=6)
    photo, photo_truth = langpages.page(code, "photo", seed=5, lines=6)
    assert photo == langpages.page(code, "photo", seed=5, lines=6)[0]
    a, b = _pixels(scan), _pixels(photo)
    assert a.shape == b.shape
    assert np.abs(a - b).mean() > 20  # light, contrast, perspective: far from the scan
    assert b.std() < a.std()  # lower contrast than the scan
    assert len(photo_truth) == 6


def test_right_to_left_lines_are_set_flush_right() -> None:
    png, _ = langpages.page("he", "scan", seed=1, lines=3)
    ink_cols = np.where((_pixels(png) < 100).any(axis=0))[0]
    assert ink_cols.max() > 900 and ink_cols.min() > 60


def test_bad_arguments_say_what_is_allowed() -> None:
    with pytest.raises(KeyError, match="there are"):
        langpages.page("xx", "scan", seed=1)
    with pytest.raises(ValueError, match="kind"):
        langpages.page("de", "fax", seed=1)  # type: ignore[arg-type]
