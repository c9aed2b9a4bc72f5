"""The /api/ocr blueprint: turns the three accepted input forms into bytes and the outcome into JSON."""
from __future__ import annotations

import base64
import binascii
import json
import time

from flask import Blueprint, Response, current_app, g, request

from .errors import BadBase64, MalformedRequest, MissingImage, UnsupportedContentType
from .fanout import PAGE_HEADER, PageFanout, gateway_runner
from .images import sniff_format
from .pages import PageAnswer, PageOptions, Upload, assemble, ocr_pages, split_pages
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
    if sniff_format(data) == "TIFF":
        upload = split_pages(data, service.settings)
        if upload.document:
            return _document(service, upload, bypass)
    outcome = service.ocr(data, bypass_cache=bypass)
    resp = Response(success_body(outcome, service.settings.instance_id), status=200, mimetype="application/json")
    resp.headers["X-Cache"] = outcome.cache
    return resp


def _document(service: OcrService, upload: Upload, bypass: bool) -> Response:
    """OCR every page, spread over the fleet unless this request is itself a page of a document."""
    started = time.perf_counter()
    fanout: PageFanout = current_app.extensions["ocr_fanout"]

    def local(data: bytes, options: PageOptions) -> PageAnswer:
        outcome = service.ocr(data, bypass_cache=options.bypass_cache)
        return json.loads(outcome.data_json), outcome.cache

    def count(where: str) -> None:
        service.metrics.document_pages.labels(where=where).inc()

    with fanout.document(allowed=PAGE_HEADER not in request.headers) as parallel:
        runner = gateway_runner(fanout, local, lambda lines, cache: (lines, cache),
                                request.headers.get("X-Request-ID", ""), count) if parallel else local
        answers = ocr_pages(upload, runner, PageOptions(bypass_cache=bypass), parallel)
    if not parallel:
        service.metrics.document_pages.labels(where="local").inc(len(answers))
    body = assemble(True, [(p.number, p.width, p.height) for p in upload.sizes], [lines for lines, _ in answers])
    body.update(cost_time=round(time.perf_counter() - started, 4), instance=service.settings.instance_id)
    return Response(json.dumps(body, ensure_ascii=False, separators=(",", ":")), status=200,
                    mimetype="application/json")


def success_body(outcome: Outcome, instance_id: str) -> bytes:
    """The 200 body, spliced from the cached JSON of the lines rather than re-serialized."""
    return b"".join((
        b'{"code":0,"msg":"success","data":', outcome.data_json,
        b',"cost_time":', f"{outcome.cost_time:.4f}".encode(),
        b',"cached":', b"true" if outcome.cache in ("HIT", "COALESCED") else b"false",
        b',"instance":', json.dumps(instance_id).encode(), b"}",
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

