"""Raw-body cache hits served below Flask: a warm request then costs little more than HTTP parsing.

Only the hit is short-cut. Anything else (a miss, multipart, JSON, errors) goes to the Flask app with
the body it was sent, so there is one implementation of the API and this is only a lookup in front.
Why: Flask's request machinery was most of what a warm hit cost.
"""
from __future__ import annotations

import io
import time
from collections.abc import Callable, Iterable
from typing import Any

from ocr_app.http.api import is_raw_image_type, success_body, wants_bypass
from ocr_app.service.ocr_service import OcrService

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class CacheHitFastPath:
    """WSGI middleware in front of the Flask app for `POST /api/ocr` with a raw image body."""

    def __init__(self, app: WSGIApp, service: OcrService) -> None:
        self.app = app
        self.service = service

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if not self._candidate(environ):
            return self.app(environ, start_response)
        started = time.perf_counter()
        length = int(environ["CONTENT_LENGTH"])
        data = environ["wsgi.input"].read(length)
        outcome = self.service.lookup(data, started)  # no query string: the default profile
        if outcome is None:
            environ["wsgi.input"] = io.BytesIO(data)  # the Flask app reads the same body
            return self.app(environ, start_response)
        body = success_body(outcome, self.service.settings.instance_id)
        start_response("200 OK", [
            ("Content-Type", "application/json"), ("Content-Length", str(len(body))),
            ("X-Cache", outcome.cache), ("X-Instance", self.service.settings.instance_id),
            ("X-OCR-Profile", outcome.profile),
        ])
        self.service.metrics.observe_request(200, time.perf_counter() - started)
        return [body]

    def _candidate(self, environ: dict[str, Any]) -> bool:
        if environ.get("REQUEST_METHOD") != "POST" or environ.get("PATH_INFO") != "/api/ocr":
            return False
        if environ.get("QUERY_STRING"):
            return False  # options (words, format, ...) change the answer: only the plain request is short-cut
        mimetype = environ.get("CONTENT_TYPE", "").split(";", 1)[0].strip().lower()
        if not is_raw_image_type(mimetype):
            return False
        if wants_bypass(environ.get("HTTP_CACHE_CONTROL", ""), environ.get("HTTP_PRAGMA", "")):
            return False
        length = environ.get("CONTENT_LENGTH") or ""
        return length.isdigit() and 0 < int(length) <= self.service.settings.max_upload_bytes

