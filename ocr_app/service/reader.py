"""One decoded image -> the lines an instance answers: read upright, in reading order, on the image as sent.

`PageReader.read` is the page pipeline without HTTP, the cache or admission. OcrService runs every image
through it and the bench calls it too, so what the bench measures is what an instance runs.
"""
from __future__ import annotations

import functools
import json
from dataclasses import replace

from ocr_app.config import Settings
from ocr_app.documents.images import DecodedImage
from ocr_app.engine.allocator import malloc_tuning
from ocr_app.engine.orientation import PageOrientation, read_upright
from ocr_app.engine.rapid import Engine
from ocr_app.results import OcrResult
from ocr_app.service.languages import Reading
from ocr_app.service.reading_order import box_to_original, reading_order


class PageReader:
    """One per worker process: the page orientation classifier and the allocator's trim are per process."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.orientation = PageOrientation(settings) if settings.orientation == "auto" else None
        self.trim = malloc_tuning(big_heap=settings.allocator == "glibc-thp")

    def read(self, engine: Engine, image: DecodedImage, words: bool = False,
             reading: Reading | None = None) -> OcrResult:
        """The image's lines as the instance answers them: read upright, in reading order, boxes on the
        image as it was sent, in the client's pixels. `elapsed` is the engine's time.

        `reading` (service/languages.py) reads the upright page instead of the engine when a language
        was asked; a right-to-left language's lines are then ordered right to left."""
        if reading is not None:
            recognize = reading.read
        else:  # word boxes only when asked: an engine without them still serves every other request
            recognize = functools.partial(engine.recognize, words=True) if words else engine.recognize
        # PP-OCR's classifier knows the scripts PP-OCR reads: it calls flush-right Hebrew (and some Korean)
        # pages upside down, so a turn it finds on a Tesseract page needs Tesseract's word too
        confirm = reading.confirm_turn if reading is not None else None
        result, angle = read_upright(image.bgr, self.orientation, recognize, self.settings.orientation_check_side,
                                     confirm)
        rtl = reading is not None and reading.chosen is not None and reading.chosen.right_to_left
        height, width = image.bgr.shape[:2]
        return scaled(as_sent(in_reading_order(result, rtl), angle, width, height), 1.0 / image.scale)


def in_reading_order(result: OcrResult, right_to_left: bool = False) -> OcrResult:
    """The same lines, reordered: top to bottom, left to right (right to left for `right_to_left` pages),
    columns one after another."""
    order = reading_order([line.box for line in result.lines], right_to_left)
    return replace(result, lines=[result.lines[i] for i in order])


def as_sent(result: OcrResult, angle: int, width: int, height: int) -> OcrResult:
    """Boxes read on the upright page, put back on the page as it was sent (`width` x `height`)."""
    if angle == 0:
        return result
    def back(box: list[list[float]]) -> list[list[float]]:
        return box_to_original(box, angle, width, height)

    return replace(result, lines=[
        replace(line, box=back(line.box),
                words=None if line.words is None else [replace(w, box=back(w.box)) for w in line.words])
        for line in result.lines])


def scaled(result: OcrResult, scale: float) -> OcrResult:
    """Boxes mapped back to the client's pixel space (the engine saw the image shrunk by 1 / `scale`)."""
    if scale == 1.0:
        return result

    def mapped(box: list[list[float]]) -> list[list[float]]:
        return [[round(x * scale, 1), round(y * scale, 1)] for x, y in box]

    return replace(result, lines=[
        replace(line, box=mapped(line.box),
                words=None if line.words is None else [replace(w, box=mapped(w.box)) for w in line.words])
        for line in result.lines])


def serialize_lines(result: OcrResult) -> bytes:
    """Lines as compact JSON: the bytes the cache stores and the answer splices in."""
    return json.dumps([line.to_dict() for line in result.lines], ensure_ascii=False,
                      separators=(",", ":")).encode()
