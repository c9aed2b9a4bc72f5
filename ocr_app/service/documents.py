"""A document read through the service: its pages run through this worker's cached path or the fleet's
runner, and are counted in the service's metrics. The page machinery itself (documents/) knows no service."""
from __future__ import annotations

import json
import time

from ocr_app.documents.images import oriented_size
from ocr_app.documents.pages import (
    Document,
    DocumentResult,
    PageAnswer,
    PageDispatch,
    PageResult,
    PageRunner,
    combined_cache,
    ocr_document,
    prepare_pages,
)
from ocr_app.options import PageOptions, RequestOptions
from ocr_app.service.ocr_service import OcrService, Outcome


def local_runner(service: OcrService) -> PageRunner:
    """Pages OCRed in this worker through the service's cached path (cache key = page bytes + options)."""

    def run(data: bytes, options: PageOptions) -> PageAnswer:
        outcome = service.ocr(data, page=options)
        return PageAnswer(lines=json.loads(outcome.data_json), cache=outcome.cache, recognizer=outcome.recognizer)

    return run


def read_document(service: OcrService, document: Document, options: RequestOptions, dispatch: PageDispatch,
                  started: float) -> DocumentResult:
    """OCR a document's selected pages through `dispatch`, as the request's options say (`started`: when
    the request's work began, for its cost_time)."""
    pages = ocr_document(prepare_pages(document, options, service.settings), options.page_options,
                         dispatch.runner, dispatch.parallel)
    for page in pages:
        service.metrics.pages.labels(source=page.source).inc()
    return DocumentResult(pages=pages, cache=combined_cache(pages), cost_time=time.perf_counter() - started)


def image_page(data: bytes, outcome: Outcome) -> PageResult:
    """A plain image's answer as page 1, for the formats that need the page size (text, hOCR, Textract)."""
    width, height = oriented_size(data)
    return PageResult(1, width, height, "ocr", json.loads(outcome.data_json), outcome.cache)
