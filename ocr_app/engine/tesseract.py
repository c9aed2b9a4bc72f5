"""Tesseract in-process through tesserocr: a bounded set of loaded languages, two ways to read a page.

- `read_page`: Tesseract's own page layout (the ``tesseract`` route);
- `read_lines`: lines found by PP-OCR's detector, each crop deskewed and read in line mode (the ``lines``
  route, engine/tesseract_lines.py prepares the crops);
- `script`: Tesseract's OSD names the page's script (``lang=auto``).

Results come back in our line shape (text, confidence 0..1, four corner points in the image's pixels,
words when asked), so every output format works unchanged. Time per page is bounded: recognition is
cancelled after ``timeout_ms`` (Tesseract's own monitor) and the page answers `RecognitionTimeout`; the
page layout Tesseract runs first is bounded by reading at most ``max_pixels`` (larger pages are shrunk).
"""
from __future__ import annotations

import functools
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from ocr_app.engine.base import EngineError
from ocr_app.engine.tesseract_lines import (
    LinePrep,
    crop_line,
    joined_pieces,
    strip_joiners,
    to_image_points,
    whole_lines,
)
from ocr_app.errors import RecognitionTimeout
from ocr_app.results import Line, OcrResult, Word

log = logging.getLogger(__name__)

# Tesseract's page segmentation modes we use (tesserocr.PSM values, kept here so this module imports
# tesserocr only when a language is first loaded).
PSM_AUTO = 3
PSM_SINGLE_LINE = 7
# Raw line mode: what a line crop gets again when line mode found nothing in it (Tesseract's line-mode
# layout can drop a whole clean line, seen on Arabic; raw line mode skips that step).
PSM_RAW_LINE = 13
PSM_OSD_ONLY = 0
# The adaptive threshold a page gets before OSD: a neighbourhood of 31 px, 10 grey levels under its mean.
OSD_BLOCK = 31
OSD_OFFSET = 10
# Resolution told to Tesseract for the images it reads: ours carry none, and its default (70 dpi, with a
# warning per page) makes it treat normal text as huge.
SOURCE_DPI = 300


@dataclass(frozen=True)
class ScriptGuess:
    """What OSD read from a page: the script's name as Tesseract spells it, its confidence, and how far
    the page is turned (0, 90, 180, 270) with that confidence."""

    script: str
    confidence: float
    turned: int = 0
    turned_confidence: float = 0.0


class LoadedApis:
    """PyTessBaseAPI objects of one worker, one per language set ("deu+eng"), least recently used dropped
    beyond `capacity`: each costs the memory of its models (about 10-40 MB), so the set is bounded."""

    def __init__(self, tessdata: Path, capacity: int) -> None:
        self.tessdata = tessdata
        self.capacity = max(1, capacity)
        self._apis: OrderedDict[str, Any] = OrderedDict()
        self._osd: Any = None

    def get(self, langs: str) -> Any:
        """The API for a language set, loaded now if it is not; the oldest other set is dropped."""
        api = self._apis.get(langs)
        if api is not None:
            self._apis.move_to_end(langs)
            return api
        api = self._load(langs, PSM_AUTO)
        self._apis[langs] = api
        while len(self._apis) > self.capacity:
            old, dropped = self._apis.popitem(last=False)
            dropped.End()
            log.info("tesseract: unloaded %s (OCR_LANGS_LOADED=%d)", old, self.capacity)
        return api

    def osd(self) -> Any:
        """The OSD API (script and orientation detection): loaded once, outside the language bound."""
        if self._osd is None:
            self._osd = self._load("osd", PSM_OSD_ONLY)
        return self._osd

    def loaded(self) -> list[str]:
        """The language sets loaded now, least recently used first."""
        return list(self._apis)

    def _load(self, langs: str, psm: int) -> Any:
        import tesserocr

        started = time.perf_counter()
        try:
            api = tesserocr.PyTessBaseAPI(path=str(self.tessdata) + "/", lang=langs, psm=psm)
        except RuntimeError as exc:  # a missing or broken traineddata file
            raise EngineError(f"Tesseract could not load {langs!r} from {self.tessdata}: {exc}") from exc
        api.SetVariable("debug_file", "/dev/null")  # its per-page warnings would flood the worker's log
        log.info("tesseract: loaded %s in %.2fs", langs, time.perf_counter() - started)
        return api

    def close(self) -> None:
        for api in self._apis.values():
            api.End()
        self._apis.clear()
        if self._osd is not None:
            self._osd.End()
            self._osd = None


class Tesseract:
    """One per worker: the loaded languages and the lock that keeps one Tesseract call at a time."""

    def __init__(self, tessdata: Path, capacity: int = 3, timeout_ms: int = 20_000,
                 max_pixels: int = 8_000_000, lock: threading.Lock | None = None,
                 prep: LinePrep | None = None) -> None:
        self.tessdata = tessdata
        self.timeout_ms = timeout_ms
        self.max_pixels = max_pixels
        self.prep = prep or LinePrep()
        self.apis = LoadedApis(tessdata, capacity)
        self._lock = lock or threading.Lock()

    @functools.cached_property
    def version(self) -> str:
        """libtesseract's version, part of the cache namespace of the pages it reads."""
        import tesserocr

        return str(tesserocr.tesseract_version().split()[1])

    def read_page(self, bgr: np.ndarray, langs: str, words: bool = False) -> OcrResult:
        """A page read by Tesseract's own layout analysis and recognition."""
        started = time.perf_counter()
        gray = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY) if bgr.ndim == 3 else bgr
        scale = 1.0
        pixels = gray.shape[0] * gray.shape[1]
        if pixels > self.max_pixels:
            scale = (self.max_pixels / pixels) ** 0.5
            gray = cv2.resize(gray, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        with self._lock:
            api = self.apis.get(langs)
            api.SetPageSegMode(PSM_AUTO)
            _set_image(api, gray)
            with _deadline(self.timeout_ms) as left:
                if not api.Recognize(timeout=left()):
                    raise RecognitionTimeout(self.timeout_ms)
            lines = list(_lines(api, words, 1.0 / scale))
            api.Clear()
        return OcrResult(lines=lines, elapsed=time.perf_counter() - started)

    def read_lines(self, bgr: np.ndarray, boxes: Sequence[Any], langs: str, words: bool = False) -> OcrResult:
        """Each detected line (four corners) cropped along its box, prepared and read in line mode.

        One deadline covers the page: each line gets what is left of it."""
        started = time.perf_counter()
        gray = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY) if bgr.ndim == 3 else bgr
        lines: list[Line] = []
        with self._lock:
            api = self.apis.get(langs)
            api.SetPageSegMode(PSM_SINGLE_LINE)
            with _deadline(self.timeout_ms) as left:
                for box in joined_pieces(whole_lines(boxes)):
                    crop = crop_line(gray, box, self.prep)
                    if crop is None:
                        continue
                    _set_image(api, crop.pixels)
                    if not api.Recognize(timeout=left()):
                        raise RecognitionTimeout(self.timeout_ms)
                    line = _one_line(api, crop, box, words)
                    if line is None:
                        api.SetPageSegMode(PSM_RAW_LINE)
                        _set_image(api, crop.pixels)
                        if not api.Recognize(timeout=left()):
                            raise RecognitionTimeout(self.timeout_ms)
                        line = _one_line(api, crop, box, words)
                        api.SetPageSegMode(PSM_SINGLE_LINE)
                    if line is not None:
                        lines.append(line)
            api.Clear()
        return OcrResult(lines=lines, elapsed=time.perf_counter() - started)

    def script(self, bgr: np.ndarray) -> ScriptGuess | None:
        """The page's script as OSD reads it, or None when it finds too little text to say."""
        gray = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY) if bgr.ndim == 3 else bgr
        pixels = gray.shape[0] * gray.shape[1]
        if pixels > self.max_pixels:
            scale = (self.max_pixels / pixels) ** 0.5
            gray = cv2.resize(gray, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        # OSD counts the page's blobs: on a photo's uneven, low-contrast light it finds too few and says
        # nothing (18 of 90 generated pages); binarised first it named the script of 84 of them.
        gray = cv2.adaptiveThreshold(gray, 255, cv2.ADAPTIVE_THRESH_GAUSSIAN_C, cv2.THRESH_BINARY,
                                     OSD_BLOCK, OSD_OFFSET)
        with self._lock:
            api = self.apis.osd()
            _set_image(api, gray)
            found = api.DetectOrientationScript()
            api.Clear()
        if not found or not found.get("script_name"):
            return None
        return ScriptGuess(str(found["script_name"]), float(found.get("script_conf") or 0.0),
                           int(found.get("orient_deg") or 0), float(found.get("orient_conf") or 0.0))

    def close(self) -> None:
        with self._lock:
            self.apis.close()


@contextmanager
def _deadline(timeout_ms: int) -> Iterator[Any]:
    """A function giving the milliseconds left of `timeout_ms` (at least 1: 0 would mean no limit)."""
    end = time.monotonic() + timeout_ms / 1000.0
    yield lambda: max(1, int((end - time.monotonic()) * 1000))


def _set_image(api: Any, gray: np.ndarray) -> None:
    gray = np.ascontiguousarray(gray)
    height, width = gray.shape[:2]
    api.SetImageBytes(gray.tobytes(), width, height, 1, width)
    api.SetSourceResolution(SOURCE_DPI)


def _rect(box: tuple[float, float, float, float], scale: float) -> list[list[float]]:
    x0, y0, x1, y1 = (round(v * scale, 1) for v in box)
    return [[x0, y0], [x1, y0], [x1, y1], [x0, y1]]


@dataclass
class _TsvLine:
    box: tuple[float, float, float, float]
    words: list[tuple[str, float, tuple[float, float, float, float]]]


def _tsv_lines(api: Any) -> list[_TsvLine]:
    """The recognized lines and their words from Tesseract's TSV output.

    TSV is what Tesseract writes through its own ResultIterator, whose words come in logical order with
    their characters in logical order too (right to left text included); tesserocr's iterator is the
    left-to-right one and would hand back an Arabic word's letters reversed."""
    lines: dict[tuple[str, str, str], _TsvLine] = {}
    for row in (api.GetTSVText(0) or "").splitlines():
        cols = row.split("\t")
        if len(cols) < 11 or cols[0] not in ("4", "5"):
            continue
        key = (cols[2], cols[3], cols[4])
        try:
            left, top, width, height = (float(v) for v in cols[6:10])
            conf = float(cols[10])
        except ValueError:
            continue
        box = (left, top, left + width, top + height)
        if cols[0] == "4":
            lines[key] = _TsvLine(box, [])
            continue
        text = strip_joiners(cols[11].strip()) if len(cols) > 11 else ""
        if text and key in lines:
            lines[key].words.append((text, max(0.0, min(100.0, conf)) / 100.0, box))
    return [line for line in lines.values() if line.words]


def _lines(api: Any, words: bool, scale: float) -> Iterator[Line]:
    """The recognized lines in Tesseract's reading order, boxes scaled back by `scale`."""
    for line in _tsv_lines(api):
        confs = [conf for _, conf, _ in line.words]
        yield Line(
            text=" ".join(text for text, _, _ in line.words),
            confidence=round(sum(confs) / len(confs), 4),
            box=_rect(line.box, scale),
            words=[Word(text, round(conf, 4), _rect(box, scale)) for text, conf, box in line.words]
            if words else None,
        )


def _one_line(api: Any, crop: Any, box: Any, words: bool) -> Line | None:
    """The line Tesseract read from one crop, with the detector's box; word boxes mapped back along it."""
    found = [word for line in _tsv_lines(api) for word in line.words]
    if not found:
        return None
    confs = [conf for _, conf, _ in found]
    corners = [[round(float(x), 1), round(float(y), 1)] for x, y in np.asarray(box).tolist()]
    return Line(text=" ".join(text for text, _, _ in found), confidence=round(sum(confs) / len(confs), 4),
                box=corners,
                words=[Word(text, round(conf, 4), to_image_points(crop, wbox)) for text, conf, wbox in found]
                if words else None)
