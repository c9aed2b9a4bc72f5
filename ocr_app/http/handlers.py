"""The one place where exceptions become the JSON error shape: nothing escapes as an HTML 500."""
from __future__ import annotations

import logging
from typing import Any

from flask import Flask, Response, jsonify, request
from werkzeug.exceptions import HTTPException

from ocr_app.errors import HTTP_CODES, INTERNAL_ERROR, OcrError, PayloadTooLarge
from ocr_app.ops.logs import ERROR_CODE_KEY

log = logging.getLogger(__name__)


def error_response(status: int, code: int, msg: str, retry_after: int | None = None) -> Response:
    """The JSON error shape; the code also goes to the request's access line."""
    request.environ[ERROR_CODE_KEY] = code
    resp = jsonify({"code": code, "msg": msg, "data": []})
    resp.status_code = status
    if retry_after is not None:
        resp.headers["Retry-After"] = str(retry_after)
    return resp


def register_error_handlers(app: Flask, max_upload_mb: float) -> None:
    """Typed errors keep their status and code; Werkzeug's get codes of their own; the rest is a 500."""

    @app.errorhandler(OcrError)
    def _ocr_error(exc: OcrError) -> Response:
        return error_response(exc.status, exc.code, exc.msg, exc.retry_after)

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> Response:
        status = exc.code or 500
        if status == 413:
            too_large = PayloadTooLarge(max_upload_mb)
            return error_response(too_large.status, too_large.code, too_large.msg)
        msg = exc.description or exc.name
        return error_response(status, HTTP_CODES.get(status, status * 100), str(msg))

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Any:
        log.exception("unexpected error")
        return error_response(500, INTERNAL_ERROR, "internal error: the failure was logged")
