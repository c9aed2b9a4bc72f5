"""A document's pages spread over the fleet: each page goes back through the gateway as an image.

The gateway balances the pages (least_conn), retries a busy instance's 503 elsewhere, and each page
is cached by its own hash like any image. No loops: a page request carries PAGE_HEADER and is always
OCRed where it lands. No deadlock: a worker fans out at most `docs` documents at once (the rest run
locally), each with at most `per_doc` pages in flight, and pages never wait on anything but an engine.
"""
from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import requests

from .errors import PageFailed

log = logging.getLogger(__name__)

PAGE_HEADER = "X-OCR-Page"
CONNECT_TIMEOUT = 2.0

LocalRunner = Callable[[bytes, bool], bytes]  # page bytes, bypass cache -> the page's lines as JSON


class PageFanout:
    """Runs pages through the gateway, falling back to `local` when the gateway can't take one."""

    def __init__(self, gateway_url: str, local: LocalRunner, per_doc: int, per_worker: int,
                 read_timeout: float) -> None:
        self.gateway_url = gateway_url.rstrip("/")
        self.local = local
        self.per_doc = per_doc
        self.read_timeout = read_timeout
        self._slots = threading.BoundedSemaphore(per_worker)  # pages this worker has out at once
        self._docs = threading.BoundedSemaphore(max(1, per_worker // per_doc))

    def run(self, pages: list[bytes], bypass: bool, request_id: str = "") -> list[bytes]:
        """Every page's lines (JSON), in page order."""
        if not self.gateway_url or len(pages) < 2 or not self._docs.acquire(blocking=False):
            return [self.local(page, bypass) for page in pages]
        try:
            with ThreadPoolExecutor(max_workers=min(self.per_doc, len(pages)),
                                    thread_name_prefix="page") as pool:
                futures = [pool.submit(self._one, number, page, bypass, request_id)
                           for number, page in enumerate(pages, start=1)]
                return [f.result() for f in futures]
        finally:
            self._docs.release()

    def _one(self, number: int, page: bytes, bypass: bool, request_id: str) -> bytes:
        with self._slots:
            remote = self._remote(number, page, bypass, request_id)
        return remote if remote is not None else self.local(page, bypass)

    def _remote(self, number: int, page: bytes, bypass: bool, request_id: str) -> bytes | None:
        """The page's lines from the fleet, or None to run it here (gateway away, or the fleet busy)."""
        headers = {"Content-Type": "application/octet-stream", PAGE_HEADER: str(number)}
        if bypass:
            headers["Cache-Control"] = "no-cache"
        if request_id:
            headers["X-Request-ID"] = request_id
        try:
            resp = requests.post(f"{self.gateway_url}/api/ocr", data=page, headers=headers,
                                        timeout=(CONNECT_TIMEOUT, self.read_timeout))
        except requests.RequestException as exc:
            log.warning("fan-out: page %d runs locally, the gateway failed: %s", number, exc)
            return None
        if resp.status_code == 200:
            try:
                return json.dumps(resp.json()["data"], ensure_ascii=False, separators=(",", ":")).encode()
            except (ValueError, KeyError, TypeError):
                log.warning("fan-out: page %d runs locally, the gateway's answer was not OCR JSON", number)
                return None
        if resp.status_code >= 500:  # 503: every instance the gateway tried was full; ours decides now
            return None
        raise _page_error(number, resp)


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
