"""The /api/ocr blueprint: turns the three accepted input forms into bytes and the outcome into JSON."""
from __future__ import annotations

import base64
import binascii
import json
import logging
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import replace
from itertools import chain, compress, tee

from flask import Blueprint, Response, current_app, g, jsonify, request

from ocr_app.config import Settings
from ocr_app.documents.formats import CONTENT_TYPES, as_hocr, as_text, as_textract, document_body
from ocr_app.documents.pages import DocumentResult, PageDispatch, open_document, upload_format
from ocr_app.documents.searchable import searchable_pdf
from ocr_app.errors import (
    BadBase64,
    FormatNeedsOneFile,
    JsonTooDeep,
    MalformedRequest,
    MissingImage,
    OcrError,
    TooManyFiles,
    UnsupportedContentType,
)
from ocr_app.http.app_services import services_of
from ocr_app.jobs.fanout import PAGE_HEADER
from ocr_app.ops.logs import PROFILE_KEY
from ocr_app.options import RequestOptions, parse_options
from ocr_app.service.documents import image_page, local_runner, read_document
from ocr_app.service.ocr_service import OcrService, Outcome

log = logging.getLogger(__name__)

FILE_FIELDS = ("image", "file", "image_file")
RAW_TYPES = ("application/octet-stream",)
DOCUMENT_TYPES = ("application/pdf", "application/x-pdf")
# The JSON form is one flat object; 32 levels leave room for any wrapping a client adds and stay far below
# the depth (about 1,000) where Python's parser, which recurses once per level, gives up.
JSON_MAX_DEPTH = 32
# Arrays and objects a body may hold: a flat object needs a handful, a batch of images a few dozen; a
# 20 MB body of [] pairs would cost the parser ~600 MB.
JSON_MAX_CONTAINERS = 1000

bp = Blueprint("api", __name__)


def recognize(service: OcrService, data: bytes, options: RequestOptions) -> Outcome | DocumentResult:
    """One upload: a plain image goes straight to the service; a document (PDF, multi-page TIFF) page by page."""
    started = time.perf_counter()
    fmt = upload_format(data)  # sniffed once, and passed on
    document = open_document(data, service.settings, options, fmt)
    if document is None:
        return service.ocr(data, page=options.page_options, fmt=fmt)
    with closing(document), _dispatch(service) as dispatch:
        return read_document(service, document, options, dispatch, started)


@contextmanager
def _dispatch(service: OcrService) -> Iterator[PageDispatch]:
    """How this request's document pages run: as the fan-out decides, unless the app installed its own."""
    services = services_of()
    if services.page_dispatch is not None:
        yield services.page_dispatch
        return

    def count(where: str) -> None:
        service.metrics.fanout_pages.labels(where=where).inc()

    with services.fanout.dispatch(local_runner(service), is_page=PAGE_HEADER in request.headers,
                                  request_id=request.headers.get("X-Request-ID", ""), on_page=count) as dispatch:
        yield dispatch


@bp.before_request
def _start() -> None:
    g.ocr_started = time.perf_counter()
    services_of().ocr.metrics.inflight.inc()


@bp.after_request
def _count(resp: Response) -> Response:
    service = services_of().ocr
    service.metrics.observe_request(resp.status_code, time.perf_counter() - g.get("ocr_started", time.perf_counter()))
    resp.headers["X-Instance"] = service.settings.instance_id
    return resp


@bp.teardown_request
def _done(exc: BaseException | None) -> None:
    services_of().ocr.metrics.inflight.dec()


@bp.post("/api/ocr")
def ocr() -> Response:
    """OCR one image or document (multipart, raw body, or JSON with base64), or a multipart batch."""
    service = services_of().ocr
    # A big body is read only when the worker can take it (OCR_READ_AHEAD_MB); a document's page never
    # waits, as its document may hold this worker's slot while it waits for the page, and a body over
    # the upload limit is refused at once.
    length = request.content_length
    waits = PAGE_HEADER not in request.headers and (length or 0) <= current_app.config["MAX_CONTENT_LENGTH"]
    with service.uploads.reading(length if waits else None):
        return _ocr(service)


def _ocr(service: OcrService) -> Response:
    uploads, params = read_uploads()
    bypass = wants_bypass(request.headers.get("Cache-Control", ""), request.headers.get("Pragma", ""))
    options = parse_options(params, service.settings, bypass_cache=bypass)
    profile = service.profile_name(options.page.profile)  # 400 at once if unknown, before any work
    # the instance's default language filled in, and a missing pack a 400 now, before any work
    options = replace(options, page=service.page_language(options.page, profile))
    request.environ[PROFILE_KEY] = profile  # for the access log
    if len(uploads) > service.settings.max_batch:
        raise TooManyFiles(len(uploads), service.settings.max_batch)
    if len(uploads) > 1:
        if options.format != "json":
            raise FormatNeedsOneFile(options.format)
        return _batch(service, uploads, options, profile)
    _, data = uploads[0]
    result = recognize(service, data, options)
    resp = Response(answer_body(result, data, options, service.settings), status=200,
                    content_type=CONTENT_TYPES[options.format])
    resp.headers["X-Cache"] = result.cache
    resp.headers["X-OCR-Profile"] = profile
    return resp


@bp.get("/api/profiles")
def profiles() -> Response:
    """The profiles this instance serves: models, runtime, precision, and the default."""
    return jsonify(services_of().ocr.describe_profiles())


@bp.get("/api/languages")
def languages() -> Response:
    """Every language code: name, script, route and engine, whether it is installed here, and its pack."""
    return jsonify(services_of().ocr.describe_languages())


def answer_body(result: Outcome | DocumentResult, data: bytes, options: RequestOptions, settings: Settings) -> bytes:
    """The body in the requested format; a plain image in JSON keeps today's exact bytes."""
    if options.format == "json":
        if isinstance(result, DocumentResult):
            return document_body(result, settings.instance_id, settings.engine)
        return success_body(result, settings.instance_id)
    pages = result.pages if isinstance(result, DocumentResult) else [image_page(data, result)]
    if options.format == "text":
        return as_text(pages).encode()
    if options.format == "hocr":
        return as_hocr(pages).encode()
    if options.format == "pdf":
        return searchable_pdf(data, pages, options, settings)
    return json.dumps(as_textract(pages), ensure_ascii=False, separators=(",", ":")).encode()


def _batch(service: OcrService, uploads: list[tuple[str, bytes]], options: RequestOptions,
           profile: str) -> Response:
    """One entry per file, in order; a bad file gets its own error entry and the others still run."""
    parts = []
    for name, data in uploads:
        try:
            body = answer_body(recognize(service, data, options), data, options, service.settings)
        except OcrError as exc:
            body = json.dumps({"code": exc.code, "msg": exc.msg, "data": []}, ensure_ascii=False,
                              separators=(",", ":")).encode()
        except Exception:  # one file's bug must not lose the others' answers
            log.exception("unexpected error on a file of a batch")
            body = b'{"code":50001,"msg":"internal error: the failure was logged","data":[]}'
        parts.append(body[:-1] + b',"filename":' + json.dumps(name, ensure_ascii=False).encode() + b"}")
    resp = Response(b'{"code":0,"msg":"success","results":[' + b",".join(parts) + b"]}", status=200,
                    mimetype="application/json")
    resp.headers["X-OCR-Profile"] = profile
    return resp


def success_body(outcome: Outcome, instance_id: str) -> bytes:
    """The 200 body, spliced from the cached JSON of the lines rather than re-serialized."""
    return b"".join((
        b'{"code":0,"msg":"success","data":', outcome.data_json,
        b',"cost_time":', f"{outcome.cost_time:.4f}".encode(),
        b',"cached":', b"true" if outcome.cache in ("HIT", "COALESCED") else b"false",
        b',"instance":', json.dumps(instance_id).encode(),
        b',"profile":', json.dumps(outcome.profile).encode(),
        b',"engine":', json.dumps(outcome.engine).encode(),
        *((b',"recognizer":', json.dumps(outcome.recognizer, ensure_ascii=False).encode())
          if outcome.recognizer is not None else ()),
        b"}",
    ))


def wants_bypass(cache_control: str, pragma: str) -> bool:
    """`Cache-Control: no-cache` (or the HTTP/1.0 Pragma) runs the model even for a known image."""
    return "no-cache" in cache_control.lower() or pragma.lower() == "no-cache"


def is_raw_image_type(mimetype: str) -> bool:
    return mimetype.startswith("image/") or mimetype in RAW_TYPES


def read_uploads() -> tuple[list[tuple[str, bytes]], dict[str, str]]:
    """The uploaded files (name, bytes) and the request's parameters, from whichever form was used.

    Parameters come from the query string, overridden by multipart form fields or JSON keys.
    """
    params = {k: v for k, v in request.args.items()}
    mimetype = request.mimetype
    if mimetype == "multipart/form-data":
        uploads = _from_multipart()
        params.update({k: v for k, v in request.form.items() if k not in FILE_FIELDS})
        return uploads, params
    if is_raw_image_type(mimetype) or mimetype in DOCUMENT_TYPES:
        return [("", request.get_data(cache=False))], params
    if mimetype == "application/json" or mimetype.endswith("+json"):
        data, extra = _from_json()
        params.update(extra)
        return [("", data)], params
    if not mimetype and not request.content_length:
        raise MissingImage()
    raise UnsupportedContentType(
        f"Content-Type {mimetype or '(none)'!r} is not accepted: use multipart/form-data, image/*, "
        "application/pdf, application/octet-stream or application/json")


def _from_multipart() -> list[tuple[str, bytes]]:
    if "boundary" not in request.mimetype_params:
        raise MalformedRequest("multipart body without a boundary")
    files = request.files
    uploads = [(upload.filename or name, upload.read()) for name in FILE_FIELDS for upload in files.getlist(name)]
    if uploads:
        return uploads
    for name in FILE_FIELDS:
        if name in request.form:
            raise MissingImage(f"field '{name}' was sent as text, not as a file: use -F '{name}=@photo.jpg'")
    sent = sorted(set(files) | set(request.form))
    if sent:
        raise MissingImage(f"no image field: got {', '.join(sent)}; send the image as field 'image'")
    raise MissingImage("the multipart body has no image part (empty or malformed): send field 'image'")


def parse_json_body(data: bytes, max_depth: int = JSON_MAX_DEPTH) -> object:
    """The body's JSON value, or None when it is not JSON; deeper than max_depth is JsonTooDeep, never the
    parser's RecursionError (a 500): a body of 20 MB of "[" is refused as soon as the parser gives up."""
    containers = data.count(b"[") + data.count(b"{")  # an upper bound: brackets in strings count too
    if containers > JSON_MAX_CONTAINERS:
        raise JsonTooDeep(max_depth, JSON_MAX_CONTAINERS)
    try:
        value = json.loads(data)
    except RecursionError:
        raise JsonTooDeep(max_depth, JSON_MAX_CONTAINERS) from None
    except ValueError:  # not JSON, or not UTF-8/16/32 (UnicodeDecodeError is a ValueError)
        return None
    # Each level opens one bracket, so a body with few of them (any real request) needs no walk.
    if containers > max_depth and nested_deeper_than(value, max_depth):
        raise JsonTooDeep(max_depth, JSON_MAX_CONTAINERS)
    return value


_CONTAINER = frozenset((dict, list)).__contains__


def nested_deeper_than(value: object, limit: int) -> bool:
    """Whether arrays and objects nest more than `limit` deep in a parsed JSON value: walked one level at
    a time with no recursion, the scalars of a level filtered out at C speed."""
    level = [value] if _CONTAINER(type(value)) else []
    for _ in range(limit):
        if not level:
            return False
        lists = [c for c in level if type(c) is list]
        dicts = [c for c in level if type(c) is dict]
        items, types = tee(chain(chain.from_iterable(lists), chain.from_iterable(map(dict.values, dicts))))
        level = list(compress(items, map(_CONTAINER, map(type, types))))
    return bool(level)


def _from_json() -> tuple[bytes, dict[str, str]]:
    payload = parse_json_body(request.get_data(cache=False))
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
        data = base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError):
        raise BadBase64() from None
    return data, {k: _param(v) for k, v in payload.items() if k != "image_base64" and v is not None}


def _param(value: object) -> str:
    """JSON values as the query string would carry them (true -> "1")."""
    if isinstance(value, bool):
        return "1" if value else "0"
    return str(value)

