"""Uploads -> pages -> lines: a PDF or multi-page TIFF becomes page images, each OCRed through one runner.

The seam for spreading a document over the fleet is the page runner: `PageRunner(page_bytes, options)`
returns one page's lines. The default (`local_runner`) runs the page through this worker's normal cached
path, so every page is cached by its own hash; another runner can send the same bytes and options to
any instance as an ordinary image request. `ocr_document` runs up to `parallel` pages at once.
"""
from __future__ import annotations

import base64
import io
import json
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from contextlib import closing
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from PIL import Image

from ocr_app.config import Settings
from ocr_app.documents.images import check_upload, oriented_size, sniff_format
from ocr_app.documents.pdf import PagePlan, PdfFile, is_pdf
from ocr_app.documents.tiff import TiffFile
from ocr_app.errors import PageImageTooLarge, TooManyPages
from ocr_app.options import PageOptions, RequestOptions
from ocr_app.service.ocr_service import OcrService

# The web page's page images: enough to see the boxes, small enough for a JSON answer.
PREVIEW_MAX_SIDE = 1000


@dataclass(frozen=True)
class PageAnswer:
    """What a runner returns for one page: its lines (boxes in the page's pixels) and its cache status."""

    lines: list[dict[str, Any]]
    cache: str = "MISS"  # HIT | MISS | COALESCED | BYPASS, as the X-Cache header says


PageRunner = Callable[[bytes, PageOptions], PageAnswer]


@dataclass(frozen=True)
class PageDispatch:
    """How an app runs document pages: set `app.extensions[PAGE_DISPATCH]` to replace the local default."""

    runner: PageRunner
    parallel: int = 1  # pages in flight at once for one document


PAGE_DISPATCH = "ocr_pages"


@dataclass(frozen=True)
class PageResult:
    number: int  # from 1
    width: int
    height: int
    source: str  # "ocr" or "pdf_text"
    lines: list[dict[str, Any]]
    cache: str = ""  # empty for a page read from its text layer
    preview: str | None = None  # a data: URL of a small JPEG of the page, when asked for


@dataclass(frozen=True)
class Recognition:
    """The answer to one upload: a plain image (kept byte-exact as today) or a document's pages."""

    document: bool
    pages: list[PageResult] = field(default_factory=list)
    data_json: bytes | None = None  # a plain image's lines, exactly as cached
    cache: str = "MISS"
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
        return PageResult(p.number, p.width, p.height, "ocr", answer.lines, answer.cache, self.preview)


class Document(Protocol):
    """A multi-page upload: sizes are checked in `plan` before any page is rendered."""

    page_count: int
    counted_all: bool  # False when counting stopped early (past every limit): page_count is then a floor

    def plan(self, numbers: list[int]) -> list[PagePlan]: ...
    def render(self, plan: PagePlan) -> Any: ...
    def text_lines(self, plan: PagePlan, words: bool) -> list[dict[str, Any]] | None: ...
    def close(self) -> None: ...


def local_runner(service: OcrService) -> PageRunner:
    """Pages OCRed in this worker through the service's cached path (cache key = page bytes + options)."""

    def run(data: bytes, options: PageOptions) -> PageAnswer:
        outcome = service.ocr(data, page=options)
        return PageAnswer(lines=json.loads(outcome.data_json), cache=outcome.cache)

    return run


def recognize_upload(service: OcrService, data: bytes, options: RequestOptions,
                     dispatch: PageDispatch | None = None) -> Recognition:
    """OCR one uploaded file, whatever its kind, as the request's options say.

    A document's pages go through `dispatch` (default: one at a time through this worker's cached path).
    """
    started = time.perf_counter()
    settings = service.settings
    page_options = replace(options.page, words=options.needs_words)
    document = open_document(data, settings, options)
    if document is None:
        outcome = service.ocr(data, page=page_options)
        return Recognition(document=False, data_json=outcome.data_json, cache=outcome.cache,
                           cost_time=outcome.cost_time)
    with closing(document):
        dispatch = dispatch or PageDispatch(local_runner(service))
        pages = ocr_document(prepare_pages(document, options, settings), page_options, dispatch.runner,
                             dispatch.parallel)
    for page in pages:
        service.metrics.pages.labels(source=page.source).inc()
    return Recognition(document=True, pages=pages, cache=combined_cache(pages),
                       cost_time=time.perf_counter() - started)


def load_pages(data: bytes, settings: Settings, options: RequestOptions) -> list[PageWork] | None:
    """Every selected page of a document, read or rendered now (for a queue of page jobs); None for an image."""
    document = open_document(data, settings, options)
    if document is None:
        return None
    with closing(document):
        return list(prepare_pages(document, options, settings))


def image_page(data: bytes, rec: Recognition) -> PageResult:
    """A plain image's answer as page 1, for the formats that need the page size (text, hOCR, Textract)."""
    width, height = oriented_size(data)
    return PageResult(1, width, height, "ocr", json.loads(rec.data_json or b"[]"), rec.cache)


def open_document(data: bytes, settings: Settings, options: RequestOptions) -> Document | None:
    """The upload as a document (PDF, TIFF with several frames), or None for a plain image."""
    if is_pdf(data):
        if len(data) > settings.max_upload_bytes:
            check_upload(data, settings)  # the same 413 as an image
        return PdfFile(data, settings, options.dpi, options.password)
    if sniff_format(data) == "TIFF" and len(data) <= settings.max_upload_bytes:
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
