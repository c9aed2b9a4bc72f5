"""Documents -> pages -> lines: a PDF or multi-page TIFF becomes page images, each OCRed through one runner.

A plain image never comes here: it goes straight to the service. The seam for spreading a document over
the fleet is the page runner: `PageRunner(page_bytes, options)` returns one page's lines. The service's
local runner (service/documents.py) runs a page through the worker's cached path, so every page is
cached by its own hash; the fan-out's runner sends the same bytes and options to any instance as an
ordinary image request. This package knows no service: the service imports it, never the reverse.
`ocr_document` runs up to `parallel` pages at once; jobs/fanout.py decides how many.
"""
from __future__ import annotations

import base64
import io
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from contextlib import closing
from dataclasses import dataclass, field
from typing import Any, Protocol

from PIL import Image

from ocr_app.config import Settings
from ocr_app.documents.images import check_upload, sniff_format
from ocr_app.documents.pdf import PagePlan, PdfFile, is_pdf
from ocr_app.documents.tiff import TiffFile
from ocr_app.errors import PageImageTooLarge, TooManyPages
from ocr_app.options import PageOptions, RequestOptions

# The web page's page images: enough to see the boxes, small enough for a JSON answer.
PREVIEW_MAX_SIDE = 1000


@dataclass(frozen=True)
class PageAnswer:
    """What a runner returns for one page: its lines (boxes in the page's pixels) and its cache status."""

    lines: list[dict[str, Any]]
    cache: str = "MISS"  # HIT | MISS | COALESCED | BYPASS, as the X-Cache header says
    recognizer: dict[str, Any] | None = None  # which language and recognizer read it (the answer's field)


PageRunner = Callable[[bytes, PageOptions], PageAnswer]


@dataclass(frozen=True)
class PageDispatch:
    """How one document's pages run: which runner, and how many pages in flight at once."""

    runner: PageRunner
    parallel: int = 1


@dataclass(frozen=True)
class PageResult:
    number: int  # from 1
    width: int
    height: int
    source: str  # "ocr" or "pdf_text"
    lines: list[dict[str, Any]]
    cache: str = ""  # empty for a page read from its text layer
    preview: str | None = None  # a data: URL of a small JPEG of the page, when asked for
    recognizer: dict[str, Any] | None = None  # an OCRed page: which language and recognizer read it


@dataclass(frozen=True)
class DocumentResult:
    """The answer to a document: its pages (a plain image's answer is the service's Outcome)."""

    pages: list[PageResult] = field(default_factory=list)
    cache: str = "MISS"  # the weakest of its OCRed pages
    cost_time: float = 0.0


@dataclass(frozen=True)
class PageWork:
    """One selected page, ready: its lines from the text layer, or its encoded image for a runner."""

    plan: PagePlan
    image: bytes | None  # PNG (or JPEG) of the rendered page; None when `lines` came from the text layer
    lines: list[dict[str, Any]] | None
    preview: str | None = None

    def result(self, answer: PageAnswer | None = None) -> PageResult:
        """The page's result, from the runner's `answer` (an OCRed page) or its own lines."""
        p = self.plan
        if answer is None:
            return PageResult(p.number, p.width, p.height, "pdf_text", self.lines or [], preview=self.preview)
        return PageResult(p.number, p.width, p.height, "ocr", answer.lines, answer.cache, self.preview,
                          answer.recognizer)


class Document(Protocol):
    """A multi-page upload: sizes are checked in `plan` before any page is rendered."""

    page_count: int
    counted_all: bool  # False when counting stopped early (past every limit): page_count is then a floor

    def plan(self, numbers: list[int]) -> list[PagePlan]: ...
    def render(self, plan: PagePlan) -> Any: ...
    def text_lines(self, plan: PagePlan, words: bool) -> list[dict[str, Any]] | None: ...
    def close(self) -> None: ...






def load_pages(data: bytes, settings: Settings, options: RequestOptions,
               fmt: str | None = None) -> list[PageWork] | None:
    """Every selected page of a document, read or rendered now (for a queue of page jobs); None for an image.

    `fmt` is the upload's format as `upload_format` sniffed it (None: sniffed here)."""
    document = open_document(data, settings, options, fmt)
    if document is None:
        return None
    with closing(document):
        return list(prepare_pages(document, options, settings))




def upload_format(data: bytes) -> str | None:
    """The upload's format from its first bytes: "PDF", an image format, or None (not one we accept).

    Sniffed once per upload; the result is passed on to whatever reads the bytes."""
    return "PDF" if is_pdf(data) else sniff_format(data)


def open_document(data: bytes, settings: Settings, options: RequestOptions,
                  fmt: str | None = None) -> Document | None:
    """The upload as a document (PDF, TIFF with several frames), or None for a plain image.

    `fmt` is the upload's format as `upload_format` sniffed it (None: sniffed here)."""
    fmt = fmt or upload_format(data)
    if fmt == "PDF":
        if len(data) > settings.max_upload_bytes:
            check_upload(data, settings)  # the same 413 as an image
        return PdfFile(data, settings, options.dpi, options.password)
    if fmt == "TIFF" and len(data) <= settings.max_upload_bytes:
        last = max((hi for _, hi in options.pages), default=0)
        return TiffFile.open(data, settings, max(settings.max_pages, last) + 1)
    return None  # an image, or something the image path refuses with its own error


def prepare_pages(document: Document, options: RequestOptions, settings: Settings) -> Iterator[PageWork]:
    """The selected pages one by one; every page is checked against every limit before the first is rendered."""
    numbers = options.select(document.page_count)
    if len(numbers) > settings.max_pages:
        raise TooManyPages(len(numbers), settings.max_pages, at_least=not document.counted_all)
    words = options.needs_words
    for plan in document.plan(numbers):
        lines = document.text_lines(plan, words) if options.pdf_text == "auto" else None
        image = document.render(plan) if lines is None or options.preview else None
        preview = preview_url(image) if image is not None and options.preview else None
        data = encode_page(image, plan.number, settings) if image is not None and lines is None else None
        del image  # only the encoded page stays in memory while it waits for a runner
        yield PageWork(plan, data, lines, preview)


def ocr_document(works: Iterable[PageWork], page_options: PageOptions, runner: PageRunner,
                 parallel: int = 1) -> list[PageResult]:
    """Each page from its text layer or through the runner, keeping at most `parallel` pages in flight.

    `works` is consumed as pages finish, so a lazy `prepare_pages` renders a page only when a slot is free.
    """
    done: list[PageResult | Future[PageAnswer]] = []
    by_future: dict[Future[PageAnswer], PageWork] = {}
    with ThreadPoolExecutor(max_workers=max(1, parallel), thread_name_prefix="page") as pool:
        for work in works:
            if work.image is None:
                done.append(work.result())
                continue
            future = pool.submit(runner, work.image, page_options)
            by_future[future] = work
            done.append(future)
            while sum(not f.done() for f in by_future) >= max(1, parallel):
                wait([f for f in by_future if not f.done()], return_when=FIRST_COMPLETED)
            if any(f.done() and f.exception() is not None for f in by_future):
                break  # a page failed: the document fails, so render and send no more pages
    # the first failing page's error is the document's error
    for future in by_future:
        future.result()  # raises the first failed page's error, in page order
    return [item if isinstance(item, PageResult) else by_future[item].result(item.result()) for item in done]


def preview_url(image: Image.Image, max_side: int = PREVIEW_MAX_SIDE) -> str:
    """A small JPEG of the page as a data: URL; boxes stay in the page's full pixel size."""
    small = image.copy()
    small.thumbnail((max_side, max_side), Image.Resampling.BILINEAR)
    buf = io.BytesIO()
    small.save(buf, "JPEG", quality=70)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode()


def encode_page(image: Image.Image, number: int, settings: Settings) -> bytes:
    """A rendered page as PNG (JPEG if PNG would pass the upload limit), so it is an ordinary image request."""
    buf = io.BytesIO()
    image.save(buf, "PNG", compress_level=1)  # fast: a text page compresses well even at level 1
    data = buf.getvalue()
    if len(data) > settings.max_upload_bytes:
        buf = io.BytesIO()
        image.save(buf, "JPEG", quality=90)
        data = buf.getvalue()
    if len(data) > settings.max_upload_bytes:
        raise PageImageTooLarge(number, settings.max_upload_mb)
    return data


def combined_cache(pages: list[PageResult]) -> str:
    """One X-Cache for a document: the weakest of its OCRed pages (a text-layer page needs no cache)."""
    states = {p.cache for p in pages if p.source == "ocr"}
    for state in ("BYPASS", "MISS", "COALESCED"):
        if state in states:
            return state
    return "HIT" if states else "MISS"
