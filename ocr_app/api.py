"""The /api/ocr blueprint: turns the three accepted input forms into bytes and the outcome into JSON."""
from __future__ import annotations

import base64
import binascii
import json
import time

from flask import Blueprint, Response, current_app, g, jsonify, request

from .errors import BadBase64, MalformedRequest, MissingImage, UnsupportedContentType
from .service import OcrService, Outcome

FILE_FIELDS = ("image", "file", "image_file")
RAW_TYPES = ("application/octet-stream",)

bp = Blueprint("api", __name__)


def _service() -> OcrService:
    service: OcrService = current_app.extensions["ocr"]
    return service


@bp.before_request
def _start() -> None:
    g.ocr_started = time.perf_counter()
    _service().metrics.inflight.inc()


@bp.after_request
def _count(resp: Response) -> Response:
    _service().metrics.observe_request(resp.status_code,
                                       time.perf_counter() - g.get("ocr_started", time.perf_counter()))
    resp.headers["X-Instance"] = _service().settings.instance_id
    return resp


@bp.teardown_request
def _done(exc: BaseException | None) -> None:
    _service().metrics.inflight.dec()


@bp.post("/api/ocr")
def ocr() -> Response:
    """OCR one image: multipart, raw image body, or JSON with base64."""
    service = _service()
    data = read_image_bytes()
    bypass = wants_bypass(request.headers.get("Cache-Control", ""), request.headers.get("Pragma", ""))
    outcome = service.ocr(data, bypass_cache=bypass, profile=requested_profile())
    resp = Response(success_body(outcome, service.settings.instance_id), status=200, mimetype="application/json")
    resp.headers["X-Cache"] = outcome.cache
    resp.headers["X-OCR-Profile"] = outcome.profile
    return resp


@bp.get("/api/profiles")
def profiles() -> Response:
    """The profiles this instance serves: models, runtime, precision, and the default."""
    return jsonify(_service().describe_profiles())


def requested_profile() -> str | None:
    """`?profile=NAME`, else a "profile" form field or JSON member; None means the instance default."""
    name = request.args.get("profile")
    if not name and request.mimetype == "multipart/form-data":
        name = request.form.get("profile")
    if not name and request.is_json:
        payload = request.get_json(silent=True)
        name = payload.get("profile") if isinstance(payload, dict) else None
        if name is not None and not isinstance(name, str):
            raise MalformedRequest('JSON field "profile" must be a string')
    return name or None


def success_body(outcome: Outcome, instance_id: str) -> bytes:
    """The 200 body, spliced from the cached JSON of the lines rather than re-serialized."""
    return b"".join((
        b'{"code":0,"msg":"success","data":', outcome.data_json,
        b',"cost_time":', f"{outcome.cost_time:.4f}".encode(),
        b',"cached":', b"true" if outcome.cache in ("HIT", "COALESCED") else b"false",
        b',"instance":', json.dumps(instance_id).encode(),
        b',"profile":', json.dumps(outcome.profile).encode(), b"}",
    ))


def wants_bypass(cache_control: str, pragma: str) -> bool:
    """`Cache-Control: no-cache` (or the HTTP/1.0 Pragma) runs the model even for a known image."""
    return "no-cache" in cache_control.lower() or pragma.lower() == "no-cache"


def is_raw_image_type(mimetype: str) -> bool:
    return mimetype.startswith("image/") or mimetype in RAW_TYPES


def read_image_bytes() -> bytes:
    """The uploaded image's bytes, from whichever input form the client used."""
    mimetype = request.mimetype
    if mimetype == "multipart/form-data":
        return _from_multipart()
    if is_raw_image_type(mimetype):
        return request.get_data(cache=False)
    if mimetype == "application/json" or mimetype.endswith("+json"):
        return _from_json()
    if not mimetype and not request.content_length:
        raise MissingImage()
    raise UnsupportedContentType(
        f"Content-Type {mimetype or '(none)'!r} is not accepted: use multipart/form-data, image/*, "
        "application/octet-stream or application/json")


def _from_multipart() -> bytes:
    if "boundary" not in request.mimetype_params:
        raise MalformedRequest("multipart body without a boundary")
    files = request.files
    for name in FILE_FIELDS:
        upload = files.get(name)
        if upload is not None:
            return upload.read()
    for name in FILE_FIELDS:
        if name in request.form:
            raise MissingImage(f"field '{name}' was sent as text, not as a file: use -F '{name}=@photo.jpg'")
    sent = sorted(set(files) | set(request.form))
    if sent:
        raise MissingImage(f"no image field: got {', '.join(sent)}; send the image as field 'image'")
    raise MissingImage("the multipart body has no image part (empty or malformed): send field 'image'")


def _from_json() -> bytes:
    payload = request.get_json(silent=True)
    if not isinstance(payload, dict):
        raise MalformedRequest('the body is not a JSON object: send {"image_base64": "..."}')
    encoded = payload.get("image_base64")
    if not isinstance(encoded, str) or not encoded.strip():
        raise MissingImage('JSON field "image_base64" is missing or empty')
    if encoded.startswith("data:"):
        _, sep, encoded = encoded.partition(",")
        if not sep:
            raise BadBase64("the data: URL has no ',' before its base64 payload")
    compact = "".join(encoded.split())
    compact += "=" * (-len(compact) % 4)
    try:
        return base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError):
        raise BadBase64() from None

