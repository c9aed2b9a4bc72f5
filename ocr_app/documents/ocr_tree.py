"""The fleet's JSON lines -> OCRmyPDF's OcrElement tree (ocr_page > ocr_line > ocrx_word), ready to render.

Shared by the server's searchable PDF and the OCRmyPDF plugin, so it imports only the standard library,
our pure `lines` helpers and `ocrmypdf.models.ocr_element` (a plain dataclass module of OCRmyPDF).
Boxes are four corners clockwise from the top left, in page pixels with y down, as in the JSON answer.
"""
from __future__ import annotations

import math
import unicodedata
from typing import TYPE_CHECKING, Any

from ocr_app.documents.lines import rows, words_of

if TYPE_CHECKING:
    from ocrmypdf.models.ocr_element import BoundingBox, OcrElement

# Below this tilt (degrees) a line is level: the renderer's own baseline from font metrics fits it best.
LEVEL_DEGREES = 0.5
# Within this of a quarter turn, a line is taken as exactly turned (the engine's boxes are noisy).
SNAP_DEGREES = 3.0
# The share of a line's height below its baseline (NotoSans, the renderer's default font).
DESCENT_SHARE = 0.215
# Characters a PDF text layer must not carry: controls, surrogates, unassigned code points and
# noncharacters (U+FFFE, U+FFFF ...). Format characters (ZWJ, ZWNJ) stay: shaping needs them.
_DROPPED_CATEGORIES = frozenset({"Cc", "Cs", "Cn"})


def page_tree(width: int, height: int, lines: list[dict[str, Any]], dpi: float,
              page_number: int = 0) -> OcrElement:
    """One page's OcrElement tree in reading order (the order of `format=text`), bboxes in pixels.

    A tilted line gets a baseline slope; a turned one (a quarter turn or more) a textangle, counter-clockwise
    as hOCR says. Words come from the line's "words" or are split from its text by character count.
    Boxes are clamped to the page; words left empty by dropping control characters are left out.
    """
    from ocrmypdf.models.ocr_element import BoundingBox, OcrClass, OcrElement

    page_box = BoundingBox(0, 0, max(1, int(width)), max(1, int(height)))
    children = []
    for row in rows(lines):
        for line in row:
            element = _line_element(line, page_box, OcrClass.LINE, OcrClass.WORD)
            if element is not None:
                children.append(element)
    return OcrElement(ocr_class=OcrClass.PAGE, bbox=page_box, dpi=float(dpi), page_number=page_number,
                      children=children)


def clean_text(text: str) -> str:
    """The text without the characters a text layer cannot carry (NUL, ESC, U+FFFF, lone surrogates ...)."""
    return "".join(ch for ch in str(text) if unicodedata.category(ch) not in _DROPPED_CATEGORIES
                   and not _noncharacter(ch))


def _noncharacter(ch: str) -> bool:
    code = ord(ch)
    return 0xFDD0 <= code <= 0xFDEF or (code & 0xFFFE) == 0xFFFE


def _line_element(line: dict[str, Any], page_box: BoundingBox, line_class: str,
                  word_class: str) -> OcrElement | None:
    from ocrmypdf.models.ocr_element import Baseline, OcrElement

    box = _points(line.get("box"), page_box)
    if box is None:
        return None
    words = []
    for word in words_of(line):
        text = clean_text(word.get("text", ""))
        word_box = _points(word.get("box"), page_box)
        if not text.strip() or word_box is None:
            continue
        words.append(OcrElement(ocr_class=word_class, bbox=_extent(word_box), text=text,
                                confidence=_confidence(word.get("confidence"))))
    if not words:
        return None
    bbox = _extent(box)
    angle = _tilt(box)  # clockwise on the page (y down), -180..180
    quarter = round(angle / 90.0) * 90
    baseline = textangle = None
    if quarter != 0:  # a turned line: hOCR's textangle is counter-clockwise
        textangle = float(-(quarter if abs(angle - quarter) <= SNAP_DEGREES else angle) % 360)
    elif abs(angle) > LEVEL_DEGREES:
        # a tilted line: the baseline runs along the box's bottom edge, a descent above it
        (x3, y3), (x2, y2) = box[3], box[2]
        at_left = y3 + (bbox.left - x3) * ((y2 - y3) / (x2 - x3) if x2 != x3 else 0.0)
        height = math.dist(box[0], box[3])
        baseline = Baseline(slope=math.tan(math.radians(angle)),
                            intercept=min(0.0, at_left - bbox.bottom - DESCENT_SHARE * height))
    return OcrElement(ocr_class=line_class, bbox=bbox, text=clean_text(line.get("text", "")),
                      confidence=_confidence(line.get("confidence")), baseline=baseline,
                      textangle=textangle, children=words)


def _points(box: Any, page_box: BoundingBox) -> list[tuple[float, float]] | None:
    """Four finite corners clamped to the page, or None for a box that is not one."""
    try:
        points = [(float(x), float(y)) for x, y in box]
    except (TypeError, ValueError):
        return None
    if len(points) != 4 or not all(math.isfinite(v) for pt in points for v in pt):
        return None
    return [(min(max(x, 0.0), page_box.right), min(max(y, 0.0), page_box.bottom)) for x, y in points]


def _extent(points: list[tuple[float, float]]) -> BoundingBox:
    from ocrmypdf.models.ocr_element import BoundingBox

    xs, ys = [x for x, _ in points], [y for _, y in points]
    return BoundingBox(min(xs), min(ys), max(xs), max(ys))


def _tilt(points: list[tuple[float, float]]) -> float:
    """The direction the text runs, from the top-left corner to the top-right one (degrees, clockwise)."""
    (x0, y0), (x1, y1) = points[0], points[1]
    if x0 == x1 and y0 == y1:
        return 0.0
    return math.degrees(math.atan2(y1 - y0, x1 - x0))


def _confidence(value: Any) -> float | None:
    try:
        conf = float(value)
    except (TypeError, ValueError):
        return None
    return min(1.0, max(0.0, conf)) if math.isfinite(conf) else None
