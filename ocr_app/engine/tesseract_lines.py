"""One detected line -> the image Tesseract reads in line mode: cropped along its box, deskewed, prepared.

A photo's line is rarely level and never axis-aligned, so the crop is a perspective warp of the
detector's four corners onto a level rectangle (not the box's bounding rectangle), with a margin
Tesseract needs around the glyphs. Then, as measured on generated photo-like pages (docs/api.md):
height normalisation to `LinePrep.height` and, optionally, adaptive binarisation.
"""
from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

# Smaller crops hold no readable glyph (and a hostile page may hold thousands of them).
MIN_SIDE = 4


@dataclass(frozen=True)
class LinePrep:
    """How a line crop is prepared: the text height it is scaled to, the margin added around the box (a
    share of its height), and when it is binarised (adaptive Gaussian threshold) before Tesseract:
    "auto" binarises low-contrast crops only (photos), whose ink-to-paper spread is below `contrast`."""

    height: int = 48
    margin: float = 0.2
    binarize: str = "auto"  # auto | on | off
    contrast: float = 110.0
    block: float = 1.0  # the threshold's neighbourhood, a share of the crop's height
    offset: float = 10.0


@dataclass(frozen=True)
class Crop:
    """A prepared line and the transform from its pixels back to the page's."""

    pixels: np.ndarray  # grey, level, scaled
    to_page: np.ndarray  # 3x3: crop pixel -> page pixel


def crop_line(gray: np.ndarray, box: Any, prep: LinePrep) -> Crop | None:
    """The line inside `box` (four corners: top-left, top-right, bottom-right, bottom-left) as a level crop,
    or None when it is too small to hold text."""
    quad = np.asarray(box, dtype=np.float32).reshape(4, 2)
    top, right, bottom, left = (quad[1] - quad[0], quad[2] - quad[1], quad[2] - quad[3], quad[3] - quad[0])
    width = float(max(np.hypot(*top), np.hypot(*bottom)))
    height = float(max(np.hypot(*right), np.hypot(*left)))
    if width < MIN_SIDE or height < MIN_SIDE:
        return None
    scale = prep.height / height if prep.height else 1.0
    pad = prep.margin * height * scale
    out_w = max(MIN_SIDE, round(width * scale + 2 * pad))
    out_h = max(MIN_SIDE, round(height * scale + 2 * pad))
    target = np.array([[pad, pad], [out_w - pad, pad], [out_w - pad, out_h - pad], [pad, out_h - pad]],
                      dtype=np.float32)
    to_crop = cv2.getPerspectiveTransform(quad, target)
    pixels = cv2.warpPerspective(gray, to_crop, (out_w, out_h), flags=cv2.INTER_CUBIC,
                                 borderMode=cv2.BORDER_REPLICATE)
    if prep.binarize == "on" or prep.binarize == "auto" and _spread(pixels) < prep.contrast:
        block = max(3, int(out_h * prep.block) | 1)  # odd: the local background of each glyph
        pixels = cv2.adaptiveThreshold(pixels, 255, cv2.ADAPTIVE_THRESH_GAUSSIAN_C, cv2.THRESH_BINARY, block,
                                       prep.offset)
    return Crop(pixels=pixels, to_page=np.linalg.inv(to_crop))


def whole_lines(boxes: Sequence[Any], inside: float = 0.5) -> list[Any]:
    """The boxes that are lines of their own: the detector also boxes a script's marks below or above the
    line (Telugu's subscript consonants, say) apart, and a fragment lying mostly (`inside`) within a
    taller line's box is read with that line instead of as a line of garbage."""
    rects = [_bounds(box) for box in boxes]
    kept = []
    for i, (x0, y0, x1, y1) in enumerate(rects):
        area = max(1.0, (x1 - x0) * (y1 - y0))
        within = False
        for j, (a0, b0, a1, b1) in enumerate(rects):
            if j == i or (b1 - b0) < 1.5 * (y1 - y0):
                continue
            shared = max(0.0, min(x1, a1) - max(x0, a0)) * max(0.0, min(y1, b1) - max(y0, b0))
            if shared >= inside * area:
                within = True
                break
        if not within:
            kept.append(boxes[i])
    return kept


def joined_pieces(boxes: Sequence[Any], gap: float = 0.8, level: float = 0.7) -> list[Any]:
    """Boxes of one line that the detector split (at a wide space, or overlapping), joined again: two boxes side by side
    (sharing `level` of the smaller one's height) with a gap under `gap` heights become one, the smallest
    rotated rectangle around both; Tesseract reads the joined line whole instead of two pieces that
    repeat the letters at the cut, or lose the word there (a Telugu scan's line was cut 0.51 heights
    apart, and its cut word read as one letter). Gaps as wide as a column's gutter stay apart."""
    quads = [np.asarray(box, dtype=np.float32).reshape(4, 2) for box in boxes]
    merged = True
    while merged and len(quads) > 1:
        merged = False
        for i in range(len(quads)):
            for j in range(len(quads)):
                if i != j and _side_by_side(quads[i], quads[j], gap, level):
                    joined = cv2.boxPoints(cv2.minAreaRect(np.concatenate([quads[i], quads[j]])))
                    quads[i] = _corners_in_order(joined)
                    del quads[j]
                    merged = True
                    break
            if merged:
                break
    return [[[float(x), float(y)] for x, y in quad] for quad in quads]


def _side_by_side(left: np.ndarray, right: np.ndarray, gap: float, level: float) -> bool:
    lx0, ly0, lx1, ly1 = _bounds(left)
    rx0, ry0, _, ry1 = _bounds(right)
    height = min(ly1 - ly0, ry1 - ry0)
    shared = min(ly1, ry1) - max(ly0, ry0)
    # side by side: the right one starts after the left one (overlapping it, or past it by under the gap)
    return height > 0 and shared >= level * height and lx0 < rx0 and rx0 - lx1 <= gap * height


def _corners_in_order(quad: np.ndarray) -> np.ndarray:
    """Four corners as top-left, top-right, bottom-right, bottom-left (the detector's order)."""
    by_sum = quad.sum(axis=1)
    by_diff = np.diff(quad, axis=1).ravel()
    return np.array([quad[np.argmin(by_sum)], quad[np.argmin(by_diff)], quad[np.argmax(by_sum)],
                     quad[np.argmax(by_diff)]], dtype=np.float32)


def _bounds(box: Any) -> tuple[float, float, float, float]:
    quad = np.asarray(box, dtype=np.float32).reshape(4, 2)
    return float(quad[:, 0].min()), float(quad[:, 1].min()), float(quad[:, 0].max()), float(quad[:, 1].max())


def strip_joiners(text: str) -> str:
    """Tesseract's Indic models write a zero-width non-joiner after a virama (Tamil's pulli) where the
    text has none; it is invisible and breaks search, so it goes. Elsewhere (Persian) it is kept."""
    if "\u200c" not in text:
        return text
    out: list[str] = []
    for ch in text:
        if ch == "\u200c" and out and unicodedata.name(out[-1], "").endswith("VIRAMA"):
            continue
        out.append(ch)
    return "".join(out)


def _spread(gray: np.ndarray) -> float:
    """Ink-to-paper contrast of a crop: the distance between its 5th and 95th percentile grey."""
    low, high = np.percentile(gray, (5, 95))
    return float(high - low)


def to_image_points(crop: Crop, rect: tuple[float, float, float, float]) -> list[list[float]]:
    """A box Tesseract found in the crop (x0, y0, x1, y1) as four corners on the page."""
    x0, y0, x1, y1 = rect
    corners = np.array([[[x0, y0], [x1, y0], [x1, y1], [x0, y1]]], dtype=np.float32)
    mapped = cv2.perspectiveTransform(corners, crop.to_page)[0]
    return [[round(float(x), 1), round(float(y), 1)] for x, y in mapped]
