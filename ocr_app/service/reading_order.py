"""Page geometry on detected lines, free of models and Flask: reading order and page rotation.

Reading order is a recursive XY-cut that prefers columns: a run of at least `MIN_COLUMN_ROWS` rows that
share a vertical gap reads column by column; everything else reads top to bottom, then left to right.
A line above where the other columns start is a heading and comes first. A short footer that stays on
one side of the gutter is indistinguishable from the end of that column and is read with it.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from statistics import median

Box = Sequence[Sequence[float]]  # four [x, y] corners as the engine returns them

# Rows sharing a vertical gap before it counts as a column gutter: two rows of "label  value" stay rows.
MIN_COLUMN_ROWS = 3
# Lines whose vertical extents overlap by more than this share of the smaller one are in one row.
ROW_OVERLAP = 0.5
# A vertical gap is a gutter when it is at least this many median line heights wide.
MIN_GUTTER_HEIGHTS = 0.8


@dataclass(frozen=True)
class _Rect:
    index: int
    x0: float
    y0: float
    x1: float
    y1: float

    @property
    def height(self) -> float:
        return self.y1 - self.y0


def reading_order(boxes: Sequence[Box], right_to_left: bool = False) -> list[int]:
    """Indices of `boxes` in reading order: rows top to bottom, left to right; columns one after another.

    `right_to_left` (Arabic, Hebrew pages) reads rows and columns from the right: the same cut on the
    page mirrored."""
    rects = [_rect(i, box) for i, box in enumerate(boxes)]
    if right_to_left:
        rects = [_Rect(r.index, -r.x1, r.y0, -r.x0, r.y1) for r in rects]
    if len(rects) < 2:
        return [r.index for r in rects]
    gutter = MIN_GUTTER_HEIGHTS * median(max(r.height, 1.0) for r in rects)
    try:
        return [r.index for r in _order(rects, gutter)]
    except RecursionError:  # columns nested deeper than any page has: plain top to bottom, left to right
        return [r.index for row in _rows(rects) for r in sorted(row, key=lambda r: (r.x0, r.y0))]


def _rect(index: int, box: Box) -> _Rect:
    xs = [float(p[0]) for p in box]
    ys = [float(p[1]) for p in box]
    return _Rect(index, min(xs), min(ys), max(xs), max(ys))


def _order(rects: list[_Rect], gutter: float) -> list[_Rect]:
    """Columns first if the whole region has them, else rows; runs of rows that share a gutter recurse."""
    out: list[_Rect] = []
    while columns := _columns(rects, gutter):
        head = _above_other_columns(columns)
        if not head:
            return out + [r for col in columns for r in _order(col, gutter)]
        # a title over the columns that happens not to cross the gutter: read it, then look again
        out.extend(_order(head, gutter))
        taken = {r.index for r in head}
        rects = [r for r in rects if r.index not in taken]
    for run in _runs_sharing_a_gutter(_rows(rects), gutter):
        flat = [r for row in run for r in row]
        columns = _columns(flat, gutter) if len(flat) < len(rects) else None
        if columns:
            out.extend(r for col in columns for r in _order(col, gutter))
        else:
            for row in run:
                out.extend(sorted(row, key=lambda r: (r.x0, r.y0)))
    return out


def _columns(rects: list[_Rect], gutter: float) -> list[list[_Rect]] | None:
    """The columns of a region of at least MIN_COLUMN_ROWS rows split by gutters, or None."""
    if len(_rows(rects)) < MIN_COLUMN_ROWS:
        return None
    columns = _split_columns(rects, gutter)
    return columns if len(columns) > 1 else None


def _above_other_columns(columns: list[list[_Rect]]) -> list[_Rect]:
    """Lines that end before every other column starts: they are read before the columns."""
    tops = [min(r.y0 for r in col) for col in columns]
    return [r for i, col in enumerate(columns) for r in col
            if r.y1 <= min(t for j, t in enumerate(tops) if j != i)]


def _rows(rects: list[_Rect]) -> list[list[_Rect]]:
    """Group lines into rows by vertical overlap, top to bottom."""
    rows: list[list[_Rect]] = []
    bottom = float("-inf")
    for r in sorted(rects, key=lambda r: (r.y0 + r.y1) / 2):
        if rows and _overlaps(rows[-1], r, bottom):
            rows[-1].append(r)
            bottom = max(bottom, r.y1)
        else:
            rows.append([r])
            bottom = r.y1
    return rows


def _overlaps(row: list[_Rect], r: _Rect, bottom: float) -> bool:
    top = min(x.y0 for x in row)
    shared = min(bottom, r.y1) - max(top, r.y0)
    smaller = min(min(x.height for x in row), r.height)
    return shared > ROW_OVERLAP * max(smaller, 1.0)


def _gaps(rects: list[_Rect], lo: float, hi: float) -> list[tuple[float, float]]:
    """The x intervals inside [lo, hi] that no line covers."""
    gaps: list[tuple[float, float]] = []
    reach = lo
    for r in sorted(rects, key=lambda r: r.x0):
        if r.x0 > reach:
            gaps.append((reach, r.x0))
        reach = max(reach, r.x1)
    if hi > reach:
        gaps.append((reach, hi))
    return gaps


def _split_columns(rects: list[_Rect], gutter: float) -> list[list[_Rect]]:
    """Split at every vertical gap at least `gutter` wide that runs through all of `rects`."""
    lo, hi = min(r.x0 for r in rects), max(r.x1 for r in rects)
    cuts = [(a + b) / 2 for a, b in _gaps(rects, lo, hi) if b - a >= gutter]
    columns: list[list[_Rect]] = [[] for _ in range(len(cuts) + 1)]
    for r in rects:
        columns[sum(1 for c in cuts if r.x0 > c)].append(r)
    return [c for c in columns if c]


def _runs_sharing_a_gutter(rows: list[list[_Rect]], gutter: float) -> list[list[list[_Rect]]]:
    """Consecutive rows grouped while one vertical gap (>= `gutter`) runs through all of them."""
    lo = min(r.x0 for row in rows for r in row)
    hi = max(r.x1 for row in rows for r in row)
    runs: list[list[list[_Rect]]] = []
    shared: list[tuple[float, float]] = []
    for row in rows:
        own = [g for g in _gaps(row, lo, hi) if g[1] - g[0] >= gutter]
        common = [g for g in _intersect(shared, own) if g[1] - g[0] >= gutter] if runs else []
        if any(_inside(g, lo, hi) for g in common):
            runs[-1].append(row)
            shared = common
        else:
            runs.append([row])
            shared = own
    return runs


def _intersect(a: list[tuple[float, float]], b: list[tuple[float, float]]) -> list[tuple[float, float]]:
    return [(max(x0, y0), min(x1, y1)) for x0, x1 in a for y0, y1 in b if min(x1, y1) - max(x0, y0) > 0]


def _inside(gap: tuple[float, float], lo: float, hi: float) -> bool:
    """A gap between lines, not the margin beside a short line."""
    return gap[0] > lo and gap[1] < hi


def box_to_original(box: Box, angle: int, width: int, height: int) -> list[list[float]]:
    """Map a box found on the upright page back onto the page as sent.

    `angle` is how far the sent page was turned clockwise (0, 90, 180, 270) and `width` x `height` its
    size; the corners keep their order, so the first is still the text's own top-left.
    """
    if angle == 0:
        return [[float(x), float(y)] for x, y in box]
    if angle == 90:  # read after turning 90 counter-clockwise
        return [[round(width - float(y), 1), round(float(x), 1)] for x, y in box]
    if angle == 180:
        return [[round(width - float(x), 1), round(height - float(y), 1)] for x, y in box]
    if angle == 270:  # read after turning 90 clockwise
        return [[round(float(y), 1), round(height - float(x), 1)] for x, y in box]
    raise ValueError(f"page angle {angle} is not 0, 90, 180 or 270")
