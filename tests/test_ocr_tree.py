"""The JSON lines -> OCRmyPDF OcrElement tree that both the searchable PDF and the OCRmyPDF plugin render."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from ocrmypdf.models.ocr_element import OcrClass

from ocr_app.documents.lines import words_of
from ocr_app.documents.ocr_tree import clean_text, page_tree


def quad(x0: float, y0: float, x1: float, y1: float) -> list[list[float]]:
    return [[x0, y0], [x1, y0], [x1, y1], [x0, y1]]


LEFT = {"text": "Total", "confidence": 0.9, "box": quad(10, 100, 80, 130)}
RIGHT = {"text": "12.50 EUR", "confidence": 0.8, "box": quad(300, 102, 420, 128),
         "words": [{"text": "12.50", "confidence": 0.7, "box": quad(300, 102, 360, 128)},
                   {"text": "EUR", "confidence": 0.9, "box": quad(370, 102, 420, 128)}]}
TITLE = {"text": "Invoice", "confidence": 0.95, "box": quad(10, 20, 200, 60)}


def test_page_tree_is_page_line_word_in_reading_order() -> None:
    tree = page_tree(500, 400, [TITLE, LEFT, RIGHT], dpi=200, page_number=3)
    assert tree.ocr_class == OcrClass.PAGE and tree.dpi == 200 and tree.page_number == 3
    assert (tree.bbox.right, tree.bbox.bottom) == (500, 400)
    assert [line.ocr_class for line in tree.children] == [OcrClass.LINE] * 3
    assert [w.text for w in tree.words] == ["Invoice", "Total", "12.50", "EUR"]
    eur = tree.words[-1]
    assert (eur.bbox.left, eur.bbox.top, eur.bbox.right, eur.bbox.bottom) == (370, 102, 420, 128)
    assert eur.confidence == pytest.approx(0.9)
    assert all(line.textangle is None and line.baseline.slope == 0 for line in tree.children)


def test_turned_and_tilted_lines_get_textangle_and_baseline() -> None:
    # read bottom to top (a quarter turn counter-clockwise): top-left corner at the bottom left
    up = {"text": "up", "confidence": 1.0, "box": [[20, 300], [20, 100], [50, 100], [50, 300]]}
    down = {"text": "upside down", "confidence": 1.0, "box": [[400, 300], [100, 300], [100, 260], [400, 260]]}
    tilted = {"text": "tilted", "confidence": 1.0, "box": [[100, 100], [300, 110], [298, 140], [98, 130]]}
    tree = page_tree(500, 400, [up, down, tilted], dpi=300)
    by_text = {line.text: line for line in tree.children}
    assert by_text["up"].textangle == 90.0
    assert by_text["upside down"].textangle == 180.0
    assert by_text["tilted"].textangle is None
    assert by_text["tilted"].baseline.slope == pytest.approx(10 / 200)
    # words split from the text follow the turned line, not its x axis
    upside = by_text["upside down"].children
    assert [w.text for w in upside] == ["upside", "down"]
    assert upside[0].bbox.left > upside[1].bbox.left


def test_hostile_lines_are_cleaned_or_dropped() -> None:
    lines = [
        {"text": "a\x00b\x1bc\uffff", "confidence": 1.0, "box": quad(10, 10, 100, 30)},
        {"text": "\x00\x01", "confidence": 1.0, "box": quad(10, 40, 100, 60)},  # nothing left: no line
        {"text": "flat", "confidence": float("nan"), "box": quad(10, 70, 10, 70)},  # zero size: kept, clamped
        {"text": "nan", "confidence": 1.0, "box": [[float("nan"), 0]] * 4},  # not a box: dropped
        {"text": "far", "confidence": 2.0, "box": quad(-50, -50, 9000, 9000)},
    ]
    tree = page_tree(200, 100, lines, dpi=72)
    assert [w.text for w in tree.words] == ["abc", "flat", "far"]
    far = tree.words[-1]
    assert (far.bbox.left, far.bbox.top, far.bbox.right, far.bbox.bottom) == (0, 0, 200, 100)
    assert far.confidence == 1.0 and tree.words[1].confidence is None
    assert clean_text("ok\u200d\ud800\U0010fffe") == "ok\u200d"


def test_words_of_splits_along_the_box() -> None:
    words = words_of({"text": "ab cd", "confidence": 0.5, "box": quad(0, 0, 50, 10)})
    assert [w["box"] for w in words] == [quad(0, 0, 20, 10), quad(30, 0, 50, 10)]


def test_the_tree_renders_with_ocrmypdfs_renderer(tmp_path: Path) -> None:
    import ocrmypdf
    import pikepdf
    from ocrmypdf.font import MultiFontManager
    from ocrmypdf.fpdf_renderer import Fpdf2PdfRenderer

    tree = page_tree(500, 400, [TITLE, LEFT, RIGHT, {"text": "\x00", "confidence": 1, "box": quad(1, 1, 1, 1)}],
                     dpi=200)
    fonts = MultiFontManager(Path(ocrmypdf.__file__).parent / "data")
    Fpdf2PdfRenderer(tree, 200, fonts, invisible_text=True).render(tmp_path / "text.pdf")
    with pikepdf.open(tmp_path / "text.pdf") as pdf:
        assert [float(v) for v in pdf.pages[0].mediabox] == pytest.approx([0, 0, 180, 144])
        assert b"3 Tr" in pdf.pages[0].Contents.read_bytes()


def test_a_turned_line_listed_from_the_images_top_left_still_reads_along_its_text() -> None:
    # the engine's corners of a line that reads down the page: clockwise from the image's top left
    down = {"text": "Turned page", "confidence": 1.0, "box": [[1810, 41], [1889, 43], [1878, 645], [1800, 644]],
            "words": [{"text": "Turned", "confidence": 1.0, "box": quad(1807, 61, 1888, 206)},
                      {"text": "page", "confidence": 1.0, "box": quad(1800, 521, 1880, 624)}]}
    up = {**down, "words": down["words"][::-1]}
    plain = {"text": "Turned page", "confidence": 1.0, "box": down["box"]}
    tree = page_tree(2000, 1612, [down, up, plain], dpi=200)
    assert [line.textangle for line in tree.children] == [270.0, 90.0, 270.0]
    split = tree.children[2].children  # split along the side, top to bottom
    assert [w.text for w in split] == ["Turned", "page"] and split[0].bbox.bottom <= split[1].bbox.top


def test_the_builder_is_light_for_a_client() -> None:
    """The OCRmyPDF plugin imports it without the server's stack (Flask, ONNX Runtime, numpy, Pillow)."""
    code = ("import sys, ocr_app.documents.ocr_tree; "
            "print(sorted(m for m in ('flask', 'numpy', 'PIL', 'onnxruntime', 'pikepdf', 'fpdf', 'redis') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


@pytest.mark.parametrize("turn", [0, 90, 180, 270])
def test_touching_words_are_parted_along_their_line(turn: int) -> None:
    """Word boxes that touch (the engine's often do) get a hairline between them, whichever way the line runs."""
    def turned(x: float, y: float) -> list[float]:  # the page turned `turn` degrees clockwise (1000 x 1000)
        return {0: [x, y], 90: [1000 - y, x], 180: [1000 - x, 1000 - y], 270: [y, 1000 - x]}[turn]

    def box(x0: float, x1: float) -> list[list[float]]:
        return [turned(x, y) for x, y in ((x0, 100), (x1, 100), (x1, 140), (x0, 140))]

    line = {"text": "ab cd", "confidence": 1.0, "box": box(100, 300),
            "words": [{"text": "ab", "confidence": 1.0, "box": box(100, 200)},
                      {"text": "cd", "confidence": 1.0, "box": box(200, 300)}]}
    (element,) = page_tree(1000, 1000, [line], dpi=300).children
    first, second = (w.bbox for w in element.children)
    axis = 0 if turn in (0, 180) else 1
    ends = [(b.left, b.right) if axis == 0 else (b.top, b.bottom) for b in (first, second)]
    gap = max(ends[0][0], ends[1][0]) - min(ends[0][1], ends[1][1])
    assert gap == pytest.approx(0.05 * 40)  # WORD_GAP_SHARE of the line's height, half from each word
