"""`accurate` must answer exactly as the stock rapidocr engine (PP-OCRv6 small, fp32) does."""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from rapidocr import RapidOCR

from bench.images import generate
from ocr_app.config import Settings
from ocr_app.documents.images import decode_image
from ocr_app.engine.catalog import plan
from ocr_app.engine.rapid import Engine

# Stock rapidocr lifts any short side to 736 px without a cap; ours caps the long side (OCR_DET_MAX_SIDE),
# so the comparison lifts the cap and everything else is the instance's own code path.
UNCAPPED = {"det_max_side": 8192}


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    return [im.path for im in generate(tmp_path_factory.mktemp("bench-images"))]


@pytest.fixture(scope="module")
def stock() -> Iterator[RapidOCR]:
    yield RapidOCR(params={"Global.log_level": "warning"})


def stock_lines(engine: RapidOCR, bgr: np.ndarray) -> list[tuple[str, float, list[list[float]]]]:
    out = engine(bgr)
    if not out.txts:
        return []
    return [(str(t), round(float(s), 4), [[round(float(x), 1), round(float(y), 1)] for x, y in np.asarray(b).tolist()])
            for b, t, s in zip(out.boxes, out.txts, out.scores, strict=True)]


@pytest.fixture(scope="module")
def stock_without_cls() -> Iterator[RapidOCR]:
    yield RapidOCR(params={"Global.log_level": "warning", "Global.use_cls": False})


def assert_same_as(stock: RapidOCR, ours: Engine, images: list[Path], settings: Settings) -> None:
    compared = 0
    for path in images:
        bgr = decode_image(path.read_bytes(), settings).bgr
        expected = stock_lines(stock, bgr)
        got = [(line.text, line.confidence, line.box) for line in ours.recognize(bgr).lines]
        assert got == expected, path.name
        compared += len(expected)
    assert compared > 40  # the set has real text on every image


# every memory policy of the engine: each must leave every character (and confidence) as stock has it
MEMORY = {
    "defaults": {},
    "no-arena": {"rec_arena": False, "det_arena": False, "det_tight_pixels": 0},
    "tight-every-detection": {"det_tight_pixels": 1},
    "no-detection-arena": {"det_arena": False},
    "every-page-empties-the-arenas": {"arena_idle_seconds": 0},
    "bounded-arena": {"ort_arena": True},
}


@pytest.mark.parametrize("memory", list(MEMORY.values()), ids=list(MEMORY))
def test_accurate_matches_stock_rapidocr(images: list[Path], stock: RapidOCR, memory: dict[str, object]) -> None:
    """With the line classifier on (OCR_LINE_CLASSIFIER=on), the stock pipeline to the character."""
    settings = Settings.from_env({}, **memory, line_classifier="on", **UNCAPPED)  # type: ignore[arg-type]
    assert_same_as(stock, Engine(settings, plan(settings)["accurate"]), images, settings)


def test_default_accurate_is_stock_without_the_line_classifier(images: list[Path],
                                                               stock_without_cls: RapidOCR) -> None:
    """The instance's default: page orientation rights the page, so the only change is no line classifier."""
    settings = Settings.from_env({}, **UNCAPPED)
    assert_same_as(stock_without_cls, Engine(settings, plan(settings)["accurate"]), images, settings)


def test_bounded_arena_changes_no_answer_with_the_default_cap(images: list[Path]) -> None:
    plain = Engine(Settings.from_env({}))
    arena = Engine(Settings.from_env({}, ort_arena=True))
    for path in images:
        bgr = decode_image(path.read_bytes(), Settings.from_env({})).bgr
        assert arena.recognize(bgr).lines == plain.recognize(bgr).lines, path.name
