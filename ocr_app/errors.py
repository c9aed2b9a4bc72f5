"""Typed errors raised inside the app, and the one handler that turns any exception into JSON.

Codes are stable: the first three digits are the HTTP status, the rest tell cases apart.
"""
from __future__ import annotations

import logging
from typing import Any

from flask import Flask, Response, jsonify
from werkzeug.exceptions import HTTPException

log = logging.getLogger(__name__)


class OcrError(Exception):
    """An error with an HTTP status, a stable code and a message that says what the limit is."""

    status = 400
    code = 40000
    retry_after: int | None = None

    def __init__(self, msg: str) -> None:
        super().__init__(msg)
        self.msg = msg


class MissingImage(OcrError):
    code = 40001

    def __init__(self, msg: str = "no image: send multipart field 'image' (or 'file', 'image_file'), "
                 "a raw image body, or JSON {\"image_base64\": ...}") -> None:
        super().__init__(msg)


class MalformedRequest(OcrError):
    code = 40002


class BadBase64(OcrError):
    code = 40003

    def __init__(self, msg: str = "image_base64 is not valid base64") -> None:
        super().__init__(msg)


class PayloadTooLarge(OcrError):
    status = 413
    code = 41301

    def __init__(self, limit_mb: float) -> None:
        super().__init__(f"the upload is larger than the {limit_mb:g} MB limit (OCR_MAX_UPLOAD_MB)")


class UnsupportedImage(OcrError):
    status = 415
    code = 41501

    def __init__(self, msg: str = "not an allowed image format: send JPEG, PNG, BMP, WebP or TIFF") -> None:
        super().__init__(msg)


class UnsupportedContentType(OcrError):
    status = 415
    code = 41502


class UndecodableImage(OcrError):
    status = 422
    code = 42201


class ImageTooLarge(OcrError):
    status = 422
    code = 42202

    def __init__(self, width: int | None, height: int | None, max_pixels: int) -> None:
        size = f"{width}x{height} " if width else ""
        super().__init__(f"the image {size}has more than the {max_pixels:,} pixel limit (OCR_MAX_PIXELS)")


class ImageTooSmall(OcrError):
    status = 422
    code = 42203

    def __init__(self, width: int, height: int, min_side: int) -> None:
        super().__init__(f"the image {width}x{height} is too small: both sides must be at least {min_side} px")


class NotReady(OcrError):
    status = 503
    code = 50301
    retry_after = 2

    def __init__(self, msg: str = "the instance is starting: the OCR engine is not loaded yet") -> None:
        super().__init__(msg)


class Overloaded(OcrError):
    status = 503
    code = 50302
    retry_after = 1

    def __init__(self, limit: int) -> None:
        super().__init__(f"the instance is busy: more than {limit} OCR jobs are queued (OCR_MAX_QUEUE)")


class Draining(OcrError):
    status = 503
    code = 50303
    retry_after = 1

    def __init__(self) -> None:
        super().__init__("the instance is shutting down")


class UnknownProfile(OcrError):
    code = 40010

    def __init__(self, name: str, valid: list[str]) -> None:
        super().__init__(f"unknown profile {name[:64]!r}: use one of {', '.join(valid)} (OCR_PROFILES)")
        self.valid = valid


# Werkzeug's own errors (routing, parsing) keep the JSON shape with codes of their own.
_HTTP_CODES = {400: 40002, 404: 40401, 405: 40501, 413: 41301, 415: 41502}


def error_response(status: int, code: int, msg: str, retry_after: int | None = None) -> Response:
    resp = jsonify({"code": code, "msg": msg, "data": []})
    resp.status_code = status
    if retry_after is not None:
        resp.headers["Retry-After"] = str(retry_after)
    return resp


def register_error_handlers(app: Flask, max_upload_mb: float) -> None:
    """One place where exceptions become the JSON error shape; nothing escapes as an HTML 500."""

    @app.errorhandler(OcrError)
    def _ocr_error(exc: OcrError) -> Response:
        return error_response(exc.status, exc.code, exc.msg, exc.retry_after)

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> Response:
        status = exc.code or 500
        if status == 413:
            return error_response(413, 41301, str(PayloadTooLarge(max_upload_mb)))
        msg = exc.description or exc.name
        return error_response(status, _HTTP_CODES.get(status, status * 100), str(msg))

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Any:
        log.exception("unexpected error")
        return error_response(500, 50001, "internal error: the failure was logged")
