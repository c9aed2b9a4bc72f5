"""The fleet's JSON lines -> OCRmyPDF's OcrElement tree (ocr_page > ocr_line > ocrx_word), ready to render.

Shared by the server's searchable PDF and the OCRmyPDF plugin, so it imports only the standard library,
our pure `lines` helpers and `ocrmypdf.models.ocr_element` (a plain dataclass module of OCRmyPDF).
Boxes are four corners clockwise from the top left, in page pixels with y down, as in the JSON answer.
"""
from __future__ import annotations

import itertools
import math
import unicodedata
from typing import TYPE_CHECKING, Any

from ocr_app.documents.lines import rows, words_of

if TYPE_CHECKING:
    from ocrmypdf.models.ocr_element import Baseline, BoundingBox, OcrElement

# Below this tilt (degrees) a line is taken as level (the engine's corners are whole or tenth pixels).
LEVEL_DEGREES = 0.05
# The baseline sits this share of a line's height above the box's bottom: then the box a text extractor
# gives each word (the font's ascent to descent: NotoSans's 1.069 and 0.293 em, as the renderer sizes the
# font to the height above the baseline) is centred on the line's box. (1 - (A - D)) / (2 - (A - D)).
BASELINE_SHARE = (1 - (1.069 - 0.293)) / (2 - (1.069 - 0.293))
# Words whose boxes touch (the engine's word boxes often do) get this share of the line's height between
# them: text extractors (poppler's pdftotext) otherwise read them as one word.
WORD_GAP_SHARE = 0.05
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
    from ocrmypdf.models.ocr_element import OcrElement

    box = _points(line.get("box"), page_box)
    if box is None:
        return None
    box = _reading_box(box, line)
    words = []
    for word in words_of({**line, "box": [list(pt) for pt in box]}):
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
    quarter = round(angle / 90.0) * 90  # a turned line: hOCR's textangle is counter-clockwise
    textangle = float(-quarter % 360) if quarter % 360 else None
    baseline = _baseline(box, quarter, angle - quarter)
    _part(words, WORD_GAP_SHARE * math.dist(box[0], box[3]), 180 if abs(quarter) == 180 else quarter)
    return OcrElement(ocr_class=line_class, bbox=bbox, text=clean_text(line.get("text", "")),
                      confidence=_confidence(line.get("confidence")), baseline=baseline,
                      textangle=textangle, children=words)


def _baseline(box: list[tuple[float, float]], quarter: int, tilt: float) -> Baseline:
    """The baseline of a line tilted by `tilt` degrees off its quarter turn, in the turned line's own frame
    (where the renderer measures it): along the box's bottom edge, BASELINE_SHARE of its height above it."""
    from ocrmypdf.models.ocr_element import Baseline

    cos, sin = math.cos(math.radians(quarter)), math.sin(math.radians(quarter))
    upright = [(x * cos + y * sin, -x * sin + y * cos) for x, y in box]  # turned back by the quarter
    frame = _extent(upright)
    (x3, y3), (x2, y2) = upright[3], upright[2]
    at_left = y3 + (frame.left - x3) * ((y2 - y3) / (x2 - x3) if x2 != x3 else 0.0)
    height = math.dist(box[0], box[3])
    slope = math.tan(math.radians(tilt)) if abs(tilt) > LEVEL_DEGREES else 0.0
    return Baseline(slope=slope, intercept=min(0.0, at_left - frame.bottom - BASELINE_SHARE * height))


def _reading_box(box: list[tuple[float, float]], line: dict[str, Any]) -> list[tuple[float, float]]:
    """The corners reordered so the first edge runs along the text, as the exporters expect.

    The engine lists a turned line's corners clockwise from the image's top left, so its first edge
    may cross the text: a box of two characters or more that is longer down its side than along its
    first edge runs down (or up, when its words go up the page)."""
    if len("".join(str(line.get("text", "")).split())) < 2 or math.dist(box[0], box[1]) >= math.dist(box[1], box[2]):
        return box
    shift = 1  # reads down: the first edge is the right side
    words = [w.get("box") for w in line.get("words") or [] if isinstance(w, dict)]
    first, last = (_centre(words[0]), _centre(words[-1])) if len(words) >= 2 else (None, None)
    if first is not None and last is not None:
        (x1, y1), (x2, y2) = box[1], box[2]
        if (last[0] - first[0]) * (x2 - x1) + (last[1] - first[1]) * (y2 - y1) < 0:
            shift = 3  # reads up: the first edge is the left side, bottom to top
    return box[shift:] + box[:shift]


def _centre(box: Any) -> tuple[float, float] | None:
    try:
        xs, ys = [float(pt[0]) for pt in box], [float(pt[1]) for pt in box]
    except (TypeError, ValueError, IndexError):
        return None
    return (sum(xs) / len(xs), sum(ys) / len(ys)) if xs else None


def _part(words: list[OcrElement], gap: float, quarter: int) -> None:
    """Move the facing ends of touching or overlapping neighbours apart to `gap`, half each, taking at
    most a quarter of either word's length: each word stays on its box, and the two read as two.

    `quarter` is the way the line runs (clockwise degrees: 0 rightwards, 90 down, 180 leftwards, -90 up)."""
    # the box sides facing the next word and the previous one, and the sign of the way forward
    near, far, sign = {0: ("right", "left", 1), 90: ("bottom", "top", 1), 180: ("left", "right", -1),
                       -90: ("top", "bottom", -1)}[quarter]
    for before, after in itertools.pairwise(words):
        a, b = before.bbox, after.bbox
        assert a is not None and b is not None
        short = gap - sign * (getattr(b, far) - getattr(a, near))
        if short <= 0 or short > gap + min(_length(a, quarter), _length(b, quarter)):
            continue  # apart already, or not neighbours on the line (out of order)
        setattr(a, near, getattr(a, near) - sign * min(short / 2, _length(a, quarter) / 4))
        setattr(b, far, getattr(b, far) + sign * min(short / 2, _length(b, quarter) / 4))


def _length(box: BoundingBox, quarter: int) -> float:
    return box.width if quarter in (0, 180) else box.height


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
