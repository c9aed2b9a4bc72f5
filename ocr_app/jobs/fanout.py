"""A document's pages spread over the fleet: each page goes back through the gateway as an image.

`PageFanout.dispatch` is the one place that decides whether a document's pages fan out and how many
are in flight; the document loader only runs what it is given.

The gateway balances the pages (least_conn), retries a busy instance's 503 elsewhere, and each page
is cached by its own hash like any image. No loops: a page request carries PAGE_HEADER and is always
OCRed where it lands. No deadlock: a worker fans out at most `per_worker / per_doc` documents at once
(the others run locally, through the worker's bounded queue), each with at most `per_doc` pages in
flight, and a page request never waits on anything but an engine.
"""
from __future__ import annotations

import itertools
import logging
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager

import requests

from ocr_app.documents.pages import PageAnswer, PageDispatch, PageRunner
from ocr_app.errors import PageFailed
from ocr_app.options import PageOptions

log = logging.getLogger(__name__)

PAGE_HEADER = "X-OCR-Page"
CONNECT_TIMEOUT = 2.0


class PageFanout:
    """Sends pages through the gateway; `fetch` answers None whenever a page should run locally."""

    def __init__(self, gateway_url: str, per_doc: int, per_worker: int, read_timeout: float) -> None:
        self.gateway_url = gateway_url.rstrip("/")
        self.per_doc = per_doc
        self.read_timeout = read_timeout
        self._slots = threading.BoundedSemaphore(per_worker)  # pages this worker has out at once
        self._docs = threading.BoundedSemaphore(max(1, per_worker // per_doc))

    @contextmanager
    def document(self, allowed: bool = True) -> Iterator[int]:
        """How many of this document's pages may be in flight through the gateway; 0: run them here."""
        if not self.gateway_url or not allowed or not self._docs.acquire(blocking=False):
            yield 0
            return
        try:
            yield self.per_doc
        finally:
            self._docs.release()

    @contextmanager
    def dispatch(self, local: PageRunner, *, is_page: bool, request_id: str = "",
                 on_page: Callable[[str], None] = lambda where: None) -> Iterator[PageDispatch]:
        """How one document's pages run: through the gateway, `per_doc` in flight, when a gateway is set,
        the request is not itself a page and this worker may fan out one more document; else here, one
        at a time, through `local`. `on_page` hears "fleet" or "local" for each page."""
        with self.document(allowed=not is_page) as parallel:
            if not parallel:
                def counted(data: bytes, options: PageOptions) -> PageAnswer:
                    on_page("local")
                    return local(data, options)

                yield PageDispatch(counted)
                return
            yield PageDispatch(gateway_runner(self, local, request_id, on_page), parallel)

    def fetch(self, data: bytes, number: int, bypass: bool, query: Mapping[str, str] | None = None,
              request_id: str = "") -> PageAnswer | None:
        """One page's lines, X-Cache and recognizer from the fleet; None to run it here (gateway away, fleet
        busy)."""
        headers = {"Content-Type": "application/octet-stream", PAGE_HEADER: str(number)}
        if bypass:
            headers["Cache-Control"] = "no-cache"
        if request_id:
            headers["X-Request-ID"] = request_id
        try:
            with self._slots:
                resp = requests.post(f"{self.gateway_url}/api/ocr", params=dict(query or {}), data=data,
                                     headers=headers, timeout=(CONNECT_TIMEOUT, self.read_timeout))
        except requests.RequestException as exc:
            log.warning("fan-out: page %d runs locally, the gateway failed: %s", number, exc)
            return None
        if resp.status_code == 200:
            try:
                body = resp.json()
                lines, recognizer = body["data"], body.get("recognizer")
            except (ValueError, KeyError, TypeError, AttributeError):
                log.warning("fan-out: page %d runs locally, the gateway's answer was not OCR JSON", number)
                return None
            return PageAnswer(lines, resp.headers.get("X-Cache", "MISS"),
                              recognizer if isinstance(recognizer, dict) else None)
        if resp.status_code >= 500:  # 503: every instance the gateway tried was full; ours decides now
            return None
        raise _page_error(number, resp)


def gateway_runner(fanout: PageFanout, local: PageRunner, request_id: str = "",
                   on_page: Callable[[str], None] = lambda where: None) -> PageRunner:
    """A page runner for the document loader: each page through the gateway, or `local` when it can't.

    Pages are numbered in the order the runner is called, for the page header and the logs.
    """
    numbers = itertools.count(1)

    def run(data: bytes, options: PageOptions) -> PageAnswer:
        got = fanout.fetch(data, next(numbers), options.bypass_cache, options.to_query(), request_id)
        on_page("local" if got is None else "fleet")
        return local(data, options) if got is None else got

    return run


def _page_error(number: int, resp: requests.Response) -> PageFailed:
    """A 4xx for a page we rendered ourselves: pass its status, code and message on."""
    try:
        body = resp.json()
        code, msg = int(body["code"]), str(body["msg"])
    except (ValueError, KeyError, TypeError):
        code, msg = resp.status_code * 100, resp.text[:200]
    error = PageFailed(f"page {number}: {msg}")
    error.status, error.code = resp.status_code, code
    return error
