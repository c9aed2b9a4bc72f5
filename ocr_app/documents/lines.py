"""A page's lines in reading order and their words: pure helpers shared by the exporters and the PDF text layer.

Standard library only, so a light client (the OCRmyPDF plugin) can import them without the server's stack.
Lines are dicts as in the JSON answer: "text", "confidence", "box" (four corners in page pixels), optional "words".
"""
from __future__ import annotations

from typing import Any

__all__ = ["rows", "words_of"]


def rows(lines: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """Lines in their reading order (the order of `data`), a line joining the row before it when it is
    beside that row's last line: level with it (overlapping by half the smaller height) and to its right.

    Regrouping by position alone would merge the columns of a page; lines of a turned page (boxes as
    sent, taller than wide) each keep a row of their own.
    """
    out: list[list[dict[str, Any]]] = []
    for line in lines:
        if out and _beside(out[-1][-1], line):
            out[-1].append(line)
        else:
            out.append([line])
    return out


def _beside(left: dict[str, Any], right: dict[str, Any]) -> bool:
    (ax0, ay0, ax1, ay1), (bx0, by0, bx1, by1) = _extent(left), _extent(right)
    if ax1 - ax0 < ay1 - ay0 or bx1 - bx0 < by1 - by0:
        return False
    return min(ay1, by1) - max(ay0, by0) >= 0.5 * min(ay1 - ay0, by1 - by0) and bx0 >= ax0


def _extent(line: dict[str, Any]) -> tuple[float, float, float, float]:
    xs, ys = [pt[0] for pt in line["box"]], [pt[1] for pt in line["box"]]
    return min(xs), min(ys), max(xs), max(ys)


def words_of(line: dict[str, Any]) -> list[dict[str, Any]]:
    """The line's word boxes; without them, its words with boxes split along the line by character count.

    The split follows the box's top and bottom edges, so the words of a tilted or turned line stay on it.
    """
    if line.get("words"):
        return list(line["words"])
    tokens = line["text"].split()
    if not tokens:
        return []
    p0, p1, p2, p3 = line["box"][:4]
    total = sum(len(t) for t in tokens) + len(tokens) - 1
    out, at = [], 0
    for token in tokens:
        start, end = at / total, (at + len(token)) / total
        out.append({"text": token, "confidence": line["confidence"],
                    "box": [_along(p0, p1, start), _along(p0, p1, end), _along(p3, p2, end), _along(p3, p2, start)]})
        at += len(token) + 1
    return out


def _along(a: list[float], b: list[float], share: float) -> list[float]:
    return [a[0] + (b[0] - a[0]) * share, a[1] + (b[1] - a[1]) * share]
