"""Reading order on synthetic line boxes: rows, columns, titles across columns, skew and tables."""
from __future__ import annotations

import json
import random

import pytest
from pages import two_column_page as generated_two_column_page

from ocr_app.config import Settings
from ocr_app.documents.images import decode_image
from ocr_app.engine.rapid import Engine
from ocr_app.ops.metrics import Metrics
from ocr_app.service.cache import ResultCache
from ocr_app.service.ocr_service import OcrService
from ocr_app.service.reader import serialize_lines
from ocr_app.service.reading_order import reading_order


def read(service: OcrService, engine: Engine, data: bytes, words: bool = False) -> bytes:
    """The lines the service answers for `data`, as its page reader reads them (no cache, no admission)."""
    return serialize_lines(service.reader.read(engine, decode_image(data, service.settings), words=words))



def rect(x0: float, y0: float, x1: float, y1: float) -> list[list[float]]:
    return [[x0, y0], [x1, y0], [x1, y1], [x0, y1]]


def ordered(named: dict[str, list[list[float]]], seed: int = 1) -> list[str]:
    """Shuffle the lines (the engine's order is arbitrary), then read them back in reading order."""
    names = list(named)
    random.Random(seed).shuffle(names)
    return [names[i] for i in reading_order([named[n] for n in names])]


def two_column_page(rows: int = 6, right_rows: int | None = None) -> dict[str, list[list[float]]]:
    page = {"title": rect(100, 40, 1100, 90)}
    for i in range(rows):
        page[f"L{i}"] = rect(100, 150 + i * 50, 560 - (i % 3) * 40, 180 + i * 50)
    for i in range(rows if right_rows is None else right_rows):
        page[f"R{i}"] = rect(640, 152 + i * 50, 1100 - (i % 2) * 60, 182 + i * 50)
    page["footer"] = rect(100, 200 + rows * 50, 900, 230 + rows * 50)
    return page


@pytest.mark.parametrize("boxes, expected", [([], []), ([rect(0, 0, 10, 10)], [0])])
def test_nothing_to_order(boxes: list[list[list[float]]], expected: list[int]) -> None:
    assert reading_order(boxes) == expected


@pytest.mark.parametrize("seed", range(5))
def test_one_column_reads_top_to_bottom(seed: int) -> None:
    page = {f"line{i}": rect(50, 30 + i * 40, 700 - i * 13, 58 + i * 40) for i in range(8)}
    assert ordered(page, seed) == [f"line{i}" for i in range(8)]


def test_a_row_reads_left_to_right_even_when_slightly_skewed() -> None:
    page = {
        "a": rect(40, 100, 200, 130), "b": rect(300, 104, 420, 136), "c": rect(520, 97, 700, 127),
        "next": rect(40, 150, 500, 180),
    }
    assert ordered(page) == ["a", "b", "c", "next"]


@pytest.mark.parametrize("seed", range(5))
def test_two_columns_read_column_by_column_between_title_and_footer(seed: int) -> None:
    expected = ["title", *(f"L{i}" for i in range(6)), *(f"R{i}" for i in range(6)), "footer"]
    assert ordered(two_column_page(), seed) == expected


def test_a_shorter_right_column_still_reads_as_a_column() -> None:
    expected = ["title", *(f"L{i}" for i in range(6)), *(f"R{i}" for i in range(3)), "footer"]
    assert ordered(two_column_page(right_rows=3)) == expected


def test_two_column_page_without_title_or_footer() -> None:
    page = {k: v for k, v in two_column_page().items() if k not in ("title", "footer")}
    assert ordered(page) == [*(f"L{i}" for i in range(6)), *(f"R{i}" for i in range(6))]


def test_a_short_label_value_table_reads_by_rows() -> None:
    page = {"name": rect(50, 50, 150, 80), "bob": rect(400, 50, 480, 80),
            "age": rect(50, 100, 120, 130), "42": rect(400, 100, 440, 130)}
    assert ordered(page) == ["name", "bob", "age", "42"]


def test_columns_after_a_full_width_paragraph() -> None:
    page = {f"p{i}": rect(100, 40 + i * 40, 1100, 70 + i * 40) for i in range(3)}
    for i in range(4):
        page[f"L{i}"] = rect(100, 200 + i * 40, 500, 230 + i * 40)
        page[f"R{i}"] = rect(700, 200 + i * 40, 1100, 230 + i * 40)
    expected = ["p0", "p1", "p2", *(f"L{i}" for i in range(4)), *(f"R{i}" for i in range(4))]
    assert ordered(page) == expected


def test_a_narrow_title_above_the_columns_comes_first() -> None:
    page = two_column_page()
    page["title"] = rect(100, 40, 400, 90)  # does not reach the gutter
    expected = ["title", *(f"L{i}" for i in range(6)), *(f"R{i}" for i in range(6)), "footer"]
    assert ordered(page) == expected


def test_rotated_quadrilaterals_use_their_extent() -> None:
    skewed = [[[100, 210], [500, 200], [501, 230], [101, 240]], [[100, 110], [500, 100], [501, 130], [101, 140]]]
    assert reading_order(skewed) == [1, 0]


def test_a_generated_two_column_page_reads_column_by_column_with_stock_lines(
        tmp_path_factory: pytest.TempPathFactory) -> None:

    settings = Settings.from_env({}, redis_url="")
    engine = Engine(settings)
    page = generated_two_column_page()
    data = page.jpeg()
    stock = engine.recognize(decode_image(data, settings).bgr).lines
    service = OcrService(settings, Metrics(), ResultCache("", ttl=60, timeout=0.1, lock_ttl=5.0))
    served = json.loads(read(service, engine, data))
    assert [line["text"] for line in served] == page.lines
    as_stock = sorted((line.text, line.confidence, line.box) for line in stock)
    assert sorted((line["text"], line["confidence"], line["box"]) for line in served) == as_stock, \
        "only the order changes: the same texts, confidences and boxes as the stock engine"


@pytest.mark.parametrize("kind", ["random", "grid", "identical", "degenerate", "staircase"])
def test_hostile_layouts_give_a_permutation(kind: str) -> None:
    rng = random.Random(2)
    boxes = {
        "random": [rect(x, y, x + rng.randint(0, 300), y + rng.randint(0, 40))
                   for x, y in ((rng.randint(-50, 4000), rng.randint(-50, 4000)) for _ in range(1500))],
        "grid": [rect(c * 100, r * 40, c * 100 + 60, r * 40 + 30) for r in range(40) for c in range(40)],
        "identical": [rect(0, 0, 10, 10)] * 500,
        "degenerate": [rect(i, i, i, i) for i in range(500)],
        "staircase": [rect((i % 2) * 3000 + i, i * 20, (i % 2) * 3000 + i + 500, i * 20 + 30) for i in range(1500)],
    }[kind]
    assert sorted(reading_order(boxes)) == list(range(len(boxes)))
