"""PDF -> pages with PDFium (pypdfium2): limits checked before anything renders, text layers read directly.

PDFium is one process-wide library and not thread-safe, so every call into it, closing included, holds
`PDFIUM_LOCK`. Objects are closed explicitly inside the lock rather than left to garbage collection,
which could run in any thread.
"""
from __future__ import annotations

import ctypes
import math
import re
import threading
import time
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pypdfium2 as pdfium
import pypdfium2.raw as pdfium_c

from ocr_app.config import Settings
from ocr_app.documents.images import MIN_SIDE
from ocr_app.errors import (
    BrokenDocument,
    ImageTooSmall,
    PageRenderTimeout,
    PageSizeBomb,
    PageTooManyPixels,
    PdfActiveContent,
    PdfImageBomb,
    PdfPasswordRequired,
    PdfWrongPassword,
)

# One lock for the process, because PDFium's state is process-wide (not a per-app object).
PDFIUM_LOCK = threading.Lock()

# Only blank space may come before the header, so a zip holding a PDF is never read as one.
HEADER_WINDOW = 1024
# A complete file ends with %%EOF; a truncated one PDFium would half-repair, so it is refused instead.
TRAILER_WINDOW = 64 * 1024
# More characters than this on one page is not a text layer worth reading char by char: OCR it instead.
MAX_TEXT_CHARS = 200_000
# A page whose images cover more than this share of it is a scan: it is OCRed even with a text layer.
PICTURE_SHARE = 0.5
# Page objects looked at for that, at most; the first ones of a page are its content's start.
MAX_OBJECTS = 5000
_JS_NAME = re.compile(rb"/(JavaScript|JS)[\s/<>\[\]()]")
# The start of a Flate-compressed object stream's data (where an OpenAction can hide from a byte search).
_OBJECT_STREAM = re.compile(rb"/Type\s*/ObjStm[^>]*?/FlateDecode[^>]*>>\s*stream\r?\n|"
                            rb"/FlateDecode[^>]*?/Type\s*/ObjStm[^>]*>>\s*stream\r?\n")
# Bytes of object streams inflated, in all, to look for JavaScript.
INFLATE_LIMIT = 32 * 1024 * 1024


def is_pdf(data: bytes) -> bool:
    """A PDF header at the start (after a byte-order mark or blank space), never one buried in another file."""
    return data[:HEADER_WINDOW].lstrip(b"\xef\xbb\xbf \t\r\n\x00").startswith(b"%PDF-")


@dataclass(frozen=True)
class PagePlan:
    """One selected page, checked against every limit before it is rendered."""

    number: int  # from 1
    width: int  # rendered pixels, after the page's own rotation
    height: int


@contextmanager
def _pdfium_errors(what: str) -> Iterator[None]:
    try:
        yield
    except pdfium.PdfiumError as exc:
        raise BrokenDocument(f"the PDF is broken: {what} failed ({exc})") from None


class PdfFile:
    """An open PDF. Use as a context manager; every method takes the PDFium lock itself."""

    def __init__(self, data: bytes, settings: Settings, dpi: int, password: str | None = None) -> None:
        self.settings = settings
        self.counted_all = True
        self.dpi = dpi
        self.scale = dpi / 72.0
        self._open_page: tuple[int, Any] | None = None
        if b"%%EOF" not in data[-TRAILER_WINDOW:]:
            raise BrokenDocument("the PDF is truncated: it does not end with %%EOF")
        with PDFIUM_LOCK:
            self._doc = _open(data, password)
            try:
                self.page_count = len(self._doc)
                scripts = pdfium_c.FPDFDoc_GetJavaScriptActionCount(self._doc.raw)
            except BaseException:
                self._doc.close()
                raise
        if scripts > 0 or has_javascript(data):
            self.close()
            raise PdfActiveContent()

    def __enter__(self) -> PdfFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        with PDFIUM_LOCK:
            self._drop_page()
            self._doc.close()

    def _page(self, number: int) -> Any:
        """Page `number`, kept open for the next call (a page's text and its rendering parse it once).

        Callers hold PDFIUM_LOCK and must not close it.
        """
        if self._open_page is not None and self._open_page[0] == number:
            return self._open_page[1]
        self._drop_page()
        page = self._doc[number - 1]
        self._open_page = (number, page)
        return page

    def _drop_page(self) -> None:
        if self._open_page is not None:
            self._open_page[1].close()
            self._open_page = None

    def plan(self, numbers: list[int]) -> list[PagePlan]:
        """Check each selected page's size against the page and pixel limits, rendering nothing."""
        limit_pt = self.settings.pdf_max_page_pt
        plans = []
        with PDFIUM_LOCK:
            for number in numbers:
                with _pdfium_errors(f"reading page {number}"):
                    ok, width_pt, height_pt = _page_size(self._doc, number - 1)
                if not ok or not (0 < width_pt < math.inf and 0 < height_pt < math.inf):
                    raise BrokenDocument(f"the PDF is broken: page {number} has no valid size")
                if max(width_pt, height_pt) > limit_pt:
                    raise PageSizeBomb(number, width_pt, height_pt, limit_pt)
                with _pdfium_errors(f"reading page {number}"):
                    self._check_images(number)
                width = max(1, math.ceil(width_pt * self.scale))
                height = max(1, math.ceil(height_pt * self.scale))
                if width * height > self.settings.max_pixels:
                    raise PageTooManyPixels(number, width, height, self.dpi, self.settings.max_pixels)
                if min(width, height) < MIN_SIDE:
                    raise ImageTooSmall(width, height, MIN_SIDE)
                plans.append(PagePlan(number, width, height))
        return plans

    def _check_images(self, number: int) -> None:
        """Refuse a page embedding an image bigger than the pixel limit: PDFium would decode it whole."""
        page = self._page(number)
        for count, obj in enumerate(page.get_objects(filter=[pdfium_c.FPDF_PAGEOBJ_IMAGE], max_depth=4)):
            if count >= MAX_OBJECTS:
                break
            try:
                width, height = obj.get_px_size()
            except pdfium.PdfiumError:
                continue
            if width * height > self.settings.max_pixels:
                raise PdfImageBomb(number, width, height, self.settings.max_pixels)

    def render(self, plan: PagePlan) -> Any:
        """The page as a PIL RGB image at the request's dpi (annotations drawn, forms not).

        PDFium renders progressively and is asked to pause once OCR_PDF_RENDER_SECONDS have passed, so a
        page built to take forever (millions of drawing operations) gives up instead of holding the lock.
        """
        deadline = time.monotonic() + self.settings.pdf_render_seconds
        with PDFIUM_LOCK:
            with _pdfium_errors(f"rendering page {plan.number}"):
                page = self._page(plan.number)
                bitmap = pdfium.PdfBitmap.new_native(plan.width, plan.height, format=pdfium_c.FPDFBitmap_BGR,
                                                     rev_byteorder=True)
                try:
                    bitmap.fill_rect((255, 255, 255, 255), 0, 0, plan.width, plan.height)
                    if not _render_until(bitmap, page, plan, deadline):
                        raise PageRenderTimeout(plan.number, self.settings.pdf_render_seconds)
                    return bitmap.to_pil().convert("RGB")  # a copy, so the bitmap can go now
                finally:
                    bitmap.close()

    def text_lines(self, plan: PagePlan, words: bool) -> list[dict[str, Any]] | None:
        """The page's own text as lines with boxes in rendered pixels, or None when it has no text layer."""
        with PDFIUM_LOCK:
            with _pdfium_errors(f"reading the text of page {plan.number}"):
                page = self._page(plan.number)
                if _mostly_picture(page):
                    return None  # a scan: its text layer, if any, is often partial (a stamp, a footer)
                textpage = page.get_textpage()
                try:
                    chars = _chars(textpage)
                    if chars is None:
                        return None
                    return _lines(chars, _device_mapper(page, plan), words)
                finally:
                    textpage.close()


def _render_until(bitmap: Any, page: Any, plan: PagePlan, deadline: float) -> bool:
    """Render `page` into `bitmap`, pausing to check the clock; False when the deadline passed first."""
    pause = pdfium_c.IFSDK_PAUSE(version=1)
    callback = type(pause.NeedToPauseNow)(lambda _: time.monotonic() > deadline)
    pause.NeedToPauseNow = callback  # `callback` stays referenced until rendering is over
    flags = pdfium_c.FPDF_ANNOT | pdfium_c.FPDF_REVERSE_BYTE_ORDER
    status = pdfium_c.FPDF_RenderPageBitmap_Start(bitmap.raw, page.raw, 0, 0, plan.width, plan.height, 0, flags,
                                                  ctypes.byref(pause))
    try:
        while status == pdfium_c.FPDF_RENDER_TOBECONTINUED:
            if time.monotonic() > deadline:
                return False
            status = pdfium_c.FPDF_RenderPage_Continue(page.raw, ctypes.byref(pause))
    finally:
        pdfium_c.FPDF_RenderPage_Close(page.raw)
    if status == pdfium_c.FPDF_RENDER_FAILED:
        raise pdfium.PdfiumError("PDFium could not render the page")
    return True


def has_javascript(data: bytes) -> bool:
    """A JavaScript action or name in the file, also inside compressed object streams (PDF 1.5+).

    Object streams are inflated up to INFLATE_LIMIT bytes in all; what lies beyond is not searched.
    """
    if _JS_NAME.search(data):
        return True
    budget = INFLATE_LIMIT
    for match in _OBJECT_STREAM.finditer(data):
        inflater = zlib.decompressobj()
        try:
            chunk = inflater.decompress(data[match.end():match.end() + budget], budget)
        except zlib.error:
            continue
        if _JS_NAME.search(chunk):
            return True
        budget -= len(chunk)
        if budget <= 0:
            break
    return False


def _open(data: bytes, password: str | None) -> Any:
    try:
        return pdfium.PdfDocument(data, password=password)
    except pdfium.PdfiumError as exc:
        if exc.err_code == pdfium_c.FPDF_ERR_PASSWORD:
            raise (PdfWrongPassword() if password else PdfPasswordRequired()) from None
        if exc.err_code == pdfium_c.FPDF_ERR_SECURITY:
            raise BrokenDocument("the PDF uses an unsupported security handler") from None
        raise BrokenDocument(f"the PDF could not be read: {exc}") from None


def _mostly_picture(page: Any) -> bool:
    """Whether images cover more than PICTURE_SHARE of the page (looking at MAX_OBJECTS objects at most)."""
    left, bottom, right, top = page.get_cropbox()
    area = max(1e-6, (right - left) * (top - bottom))
    covered = 0.0
    for count, obj in enumerate(page.get_objects(filter=[pdfium_c.FPDF_PAGEOBJ_IMAGE], max_depth=4)):
        if count >= MAX_OBJECTS:
            break
        try:
            ol, ob, orr, ot = obj.get_bounds()
        except pdfium.PdfiumError:
            continue
        width, height = min(orr, right) - max(ol, left), min(ot, top) - max(ob, bottom)
        if width > 0 and height > 0:
            covered += width * height
    return covered / area > PICTURE_SHARE


def _page_size(doc: Any, index: int) -> tuple[bool, float, float]:
    """The page's size in points, after its /Rotate, read without loading the page's content."""
    size = pdfium_c.FS_SIZEF()
    ok = pdfium_c.FPDF_GetPageSizeByIndexF(doc.raw, index, ctypes.byref(size))
    return bool(ok), float(size.width), float(size.height)


Char = tuple[str, tuple[float, float, float, float] | None]


def _chars(textpage: Any) -> list[Char] | None:
    """(char, box in points) in content order; None when the page has no visible characters."""
    count = textpage.count_chars()
    if count <= 0 or count > MAX_TEXT_CHARS:
        return None
    chars: list[Char] = []
    for i in range(count):
        code = pdfium_c.FPDFText_GetUnicode(textpage.raw, i)
        ch = chr(code) if 0 < code < 0x110000 else ""
        if ch in ("\r", "\n"):
            chars.append(("\n", None))
        elif not ch or ch.isspace() or not ch.isprintable():
            chars.append((" ", None))
        else:
            try:
                chars.append((ch, textpage.get_charbox(i)))
            except pdfium.PdfiumError:
                chars.append((ch, None))
    return chars if any(box is not None for _, box in chars) else None


def _device_mapper(page: Any, plan: PagePlan) -> Any:
    """Page points -> rendered pixels, with the page's rotation and origin, as PDFium renders it."""
    x, y = ctypes.c_int(), ctypes.c_int()

    def to_px(px: float, py: float) -> tuple[float, float]:
        pdfium_c.FPDF_PageToDevice(page.raw, 0, 0, plan.width, plan.height, 0, px, py,
                                   ctypes.byref(x), ctypes.byref(y))
        return float(x.value), float(y.value)

    return to_px


def _lines(chars: list[Char], to_px: Any, words: bool) -> list[dict[str, Any]]:
    """Group characters into words (split at spaces) and lines (split at line breaks)."""
    raw_lines: list[list[tuple[str, list[float]]]] = []
    line: list[tuple[str, list[float]]] = []
    word_text, word_box = "", [0.0, 0.0, 0.0, 0.0]

    def end_word() -> None:
        nonlocal word_text
        if word_text:
            line.append((word_text, _pixel_box(word_box, to_px)))
        word_text = ""

    for ch, box in chars:
        if box is None or ch == " ":
            end_word()
            if ch == "\n" and line:
                raw_lines.append(line)
                line = []
            continue
        if not word_text:
            word_box = list(box)
        else:
            word_box = [min(word_box[0], box[0]), min(word_box[1], box[1]),
                        max(word_box[2], box[2]), max(word_box[3], box[3])]
        word_text += ch
    end_word()
    if line:
        raw_lines.append(line)
    out = []
    for items in raw_lines:
        boxes = [b for _, b in items]
        x0, y0 = min(b[0] for b in boxes), min(b[1] for b in boxes)
        x1, y1 = max(b[2] for b in boxes), max(b[3] for b in boxes)
        item: dict[str, Any] = {"text": " ".join(t for t, _ in items), "confidence": 1.0,
                                "box": _quad(x0, y0, x1, y1)}
        if words:
            item["words"] = [{"text": t, "confidence": 1.0, "box": _quad(*b)} for t, b in items]
        out.append(item)
    out.sort(key=lambda it: (it["box"][0][1], it["box"][0][0]))
    return out


def _pixel_box(box: list[float], to_px: Any) -> list[float]:
    left, bottom, right, top = box
    xa, ya = to_px(left, top)
    xb, yb = to_px(right, bottom)
    return [min(xa, xb), min(ya, yb), max(xa, xb), max(ya, yb)]


def _quad(x0: float, y0: float, x1: float, y1: float) -> list[list[float]]:
    """Four corners clockwise from top left, like the engine's boxes."""
    return [[x0, y0], [x1, y0], [x1, y1], [x0, y1]]
