"""The OpenAPI 3.1 document of the instance's API, kept beside the code and served at GET /openapi.json.

Routes are written out by hand (a test compares them with the app's url_map); error codes are generated
from the typed errors in errors.py, so a new error class is documented without touching this file.
To document a new route, add its path item to PATHS (or a parameter to OCR_PARAMETERS); shared shapes
go in SCHEMAS and are referenced as `ref("Name")`. An error response lists every code of its status unless
`error_response(..., codes=(...))` names the ones it can really carry (as `x-error-codes`).
"""
from __future__ import annotations

import copy
from importlib import metadata
from typing import Any

from ocr_app.errors import HTTP_CODES, INTERNAL_ERROR, OcrError, error_classes

# Codes only the gateway (nginx) answers with; listed so a client can handle every code it may see.
# The gateway's answers are written in nginx/nginx.conf.tmpl (and the API keys' in fleetctl/gateway/access.py).
GATEWAY_CODES = {
    40070: (400, "a request nginx cannot parse, or a header line over 8 KB (large_client_header_buffers)"),
    40071: (400, "plain HTTP sent to the gateway's HTTPS port"),
    40170: (401, "FLEET_AUTH: no API key"),
    40171: (401, "FLEET_AUTH: the API key is unknown or revoked"),
    40470: (404, "FLEET_AUTH: /metrics is not served through the gateway"),
    40570: (405, "TRACE or CONNECT, which the gateway refuses"),
    41170: (411, "a length is required (nginx reads chunked bodies, so it does not ask for one today)"),
    41470: (414, "the request line is longer than 8 KB (large_client_header_buffers)"),
    42970: (429, "over the client's rate limit (keys create --rate, FLEET_RATE); Retry-After says when"),
    50070: (500, "an internal error in the gateway, written to its error log"),
    50170: (501, "a Transfer-Encoding other than chunked"),
    50201: (502, "bad gateway: no OCR instance answered"),
    50301: (503, "no OCR instance is available"),
    50401: (504, "the OCR instance timed out: 5 s to connect, 300 s to answer"),
    50570: (505, "an HTTP version other than 1.0 and 1.1"),
}
# Werkzeug's routing and parsing errors, mapped in handlers.py.
HTTP_ERROR_TEXT = {
    40002: "malformed request", 40401: "unknown path", 40501: "method not allowed for this path",
    41301: "the body is larger than OCR_MAX_UPLOAD_MB", 41502: "Content-Type not accepted",
}


def ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def json_content(schema: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


def error_response(description: str, retry_after: bool = False, codes: tuple[int, ...] = ()) -> dict[str, Any]:
    """An error response; its codes are `codes`, or every code of its status when none are given."""
    response: dict[str, Any] = {"description": description, "content": json_content(ref("Error")), "headers": {}}
    if codes:
        response["x-error-codes"] = list(codes)
    if retry_after:
        response["headers"]["Retry-After"] = {"description": "seconds to wait before retrying",
                                              "schema": {"type": "integer"}}
    return response


def error_codes() -> list[tuple[int, int, str, str]]:
    """(code, status, name, meaning) for every code a client can get, sorted by code."""
    found: dict[int, tuple[int, int, str, str]] = {}
    for cls in error_classes():
        if cls is OcrError:
            continue
        meaning = (cls.__doc__ or cls.__name__).strip().splitlines()[0]
        found.setdefault(cls.code, (cls.code, cls.status, cls.__name__, meaning))
    for status, code in HTTP_CODES.items():
        found.setdefault(code, (code, status, "HTTPError", HTTP_ERROR_TEXT.get(code, "")))
    found.setdefault(INTERNAL_ERROR, (INTERNAL_ERROR, 500, "InternalError", "a bug: logged with its traceback"))
    for code, (status, meaning) in GATEWAY_CODES.items():
        if code in found:  # the gateway answers with an instance's code: say both
            known = found[code]
            found[code] = (*known[:3], f"{known[3]} At the gateway: {meaning}.")
        else:
            found[code] = (code, status, "Gateway", meaning)
    return sorted(found.values())


def codes_for(status: int, only: list[int] | None = None) -> list[tuple[int, str]]:
    """(code, name) of the codes of `status`, or of `only` when given."""
    return [(code, name) for code, st, name, _ in error_codes() if st == status and (not only or code in only)]


BOX = {"type": "array", "minItems": 4, "maxItems": 4, "description": "corners clockwise from top left, in "
       "pixels of the uploaded image after EXIF orientation (of the rendered page, for a document)",
       "items": {"type": "array", "minItems": 2, "maxItems": 2, "items": {"type": "number"}}}
CONFIDENCE = {"type": "number", "minimum": 0, "maximum": 1}
ENGINE_SCHEMA = {"enum": ["rapidocr", "paddleocr"], "description": "the instance's OCR_ENGINE that produced the answer"}
FLAG = {"type": "string", "enum": ["1", "0", "true", "false", "yes", "no", "on", "off"]}

SCHEMAS: dict[str, Any] = {
    "Word": {
        "type": "object", "required": ["text", "confidence", "box"],
        "properties": {"text": {"type": "string"}, "confidence": CONFIDENCE, "box": BOX},
    },
    "Line": {
        "type": "object", "required": ["text", "confidence", "box"],
        "properties": {
            "text": {"type": "string"},
            "confidence": CONFIDENCE,
            "box": BOX,
            "words": {"type": "array", "items": ref("Word"), "description": "with words=1 (or format=hocr, "
                      "textract): the line's words, in the same coordinates"},
            "page": {"type": "integer", "minimum": 1, "description": "in a document's data: the line's page"},
        },
    },
    "Page": {
        "type": "object", "required": ["page", "width", "height", "source", "data"],
        "properties": {
            "page": {"type": "integer", "minimum": 1},
            "width": {"type": "integer", "minimum": 1, "description": "rendered pixels: the space of the boxes"},
            "height": {"type": "integer", "minimum": 1},
            "source": {"enum": ["ocr", "pdf_text"], "description": "the model, or the PDF's own text layer"},
            "data": {"type": "array", "items": ref("Line")},
            "preview": {"type": "string", "description": "with preview=1: a data: URL of a small JPEG of the page"},
        },
    },
    "DocumentResult": {
        "type": "object", "required": ["code", "msg", "pages", "data", "cost_time", "cached", "instance"],
        "description": "a PDF or multi-page TIFF: its selected pages, and every line again in data with its page",
        "properties": {
            "code": {"const": 0}, "msg": {"const": "success"},
            "pages": {"type": "array", "items": ref("Page")},
            "data": {"type": "array", "items": ref("Line")},
            "cost_time": {"type": "number"}, "cached": {"type": "boolean"}, "instance": {"type": "string"},
            "engine": ENGINE_SCHEMA,
        },
    },
    "BatchResult": {
        "type": "object", "required": ["code", "msg", "results"],
        "description": "several files in one multipart request: one entry per file, in order, each with its "
                       "part's filename",
        "properties": {
            "code": {"const": 0}, "msg": {"const": "success"},
            "results": {"type": "array", "items": {
                "anyOf": [ref("OcrResult"), ref("DocumentResult"), ref("Error")],
                "properties": {"filename": {"type": "string"}}, "required": ["filename"]}},
        },
    },
    "TextractResult": {
        "type": "object", "required": ["DocumentMetadata", "Blocks"],
        "description": "format=textract: the response of AWS Textract's DetectDocumentText (PAGE, LINE and WORD "
                       "blocks; geometry as 0-1 ratios of the page, confidence 0-100)",
        "properties": {
            "DocumentMetadata": {"type": "object", "properties": {"Pages": {"type": "integer"}}},
            "Blocks": {"type": "array", "items": {"type": "object", "required": ["BlockType", "Id", "Geometry"],
                                                  "properties": {"BlockType": {"enum": ["PAGE", "LINE", "WORD"]}}}},
            "DetectDocumentTextModelVersion": {"type": "string"},
        },
    },
    "OcrResult": {
        "type": "object", "required": ["code", "msg", "data", "cost_time", "cached", "instance"],
        "properties": {
            "code": {"const": 0}, "msg": {"const": "success"},
            "data": {"type": "array", "items": ref("Line"), "description": "lines top to bottom, left to right"},
            "cost_time": {"type": "number", "description": "seconds the instance spent, cache lookup included"},
            "cached": {"type": "boolean"},
            "instance": {"type": "string"},
            "profile": {"type": "string", "description": "the engine profile that produced the answer"},
            "engine": ENGINE_SCHEMA,
            "recognizer": ref("Recognizer"),
        },
    },
    "Recognizer": {
        "type": "object", "required": ["lang", "engine", "route"],
        "description": "which language and recognizer read the page (`engine` beside it is still OCR_ENGINE)",
        "properties": {
            "lang": {"type": ["string", "null"], "description": "the ISO 639-1 codes read, e.g. `ru` or `de,en`; "
                     "null: no lang asked, the profile's own languages"},
            "engine": {"enum": ["rapidocr", "paddleocr", "tesseract"], "description": "who recognized the text"},
            "route": {"enum": ["ppocr", "tesseract", "lines"], "description": "`ppocr`: PP-OCR alone; "
                      "`tesseract`: Tesseract's own layout; `lines`: PP-OCR's line boxes read by Tesseract"},
            "script": {"type": "string", "description": "lang=auto: the script Tesseract's OSD found"},
            "right_to_left": {"type": "boolean", "description": "Arabic, Hebrew: lines ordered right to left"},
        },
    },
    "Languages": {
        "type": "object", "required": ["default", "auto", "languages"],
        "properties": {
            "default": {"type": ["string", "null"], "description": "OCR_LANG: the lang of requests without one"},
            "auto": {"type": "boolean", "description": "lang=auto can find scripts here (Tesseract's OSD data)"},
            "tesseract": {"type": ["string", "null"], "description": "libtesseract's version; null: none here"},
            "loaded": {"type": "array", "items": {"type": "string"},
                       "description": "the Tesseract language sets this worker holds (at most OCR_LANGS_LOADED)"},
            "languages": {"type": "array", "items": {
                "type": "object",
                "required": ["code", "name", "script", "route", "engine", "installed", "package", "install"],
                "properties": {
                    "code": {"type": "string", "description": "ISO 639-1"},
                    "tesseract": {"type": "string", "description": "Tesseract's code(s), also accepted by lang="},
                    "name": {"type": "string"}, "script": {"type": "string"},
                    "right_to_left": {"type": "boolean"},
                    "route": {"enum": ["ppocr", "tesseract", "lines"], "description": "the default route"},
                    "engine": {"type": "string", "description": "who reads it on that route"},
                    "installed": {"type": "boolean", "description": "this instance reads it now"},
                    "package": {"type": "string", "description": "the Debian package with its Tesseract data"},
                    "install": {"type": "string", "description": "the fleetctl command that installs it"},
                    "basis": {"type": "string", "description": "the measurement the route rests on"},
                }}},
        },
    },
    "Profiles": {
        "type": "object", "required": ["default", "profiles"],
        "properties": {
            "default": {"type": "string"}, "loaded": {"type": "boolean"},
            "profiles": {"type": "array", "items": {
                "type": "object", "required": ["name", "models", "runtime", "precision"],
                "properties": {"name": {"type": "string"}, "models": {"type": "string"},
                               "runtime": {"type": "string"}, "precision": {"type": "string"}}}},
            "cpu": {"type": "object", "description": "CPU flags offered and what the instance chose"},
        },
    },
    "Job": {
        "type": "object", "required": ["code", "msg", "job_id", "status", "progress"],
        "properties": {
            "code": {"const": 0}, "msg": {"const": "success"},
            "job_id": {"type": "string", "pattern": "^[0-9a-f]{32}$"},
            "status": {"enum": ["queued", "running", "done", "failed", "cancelled"]},
            "progress": {"type": "object", "required": ["done", "total"],
                         "properties": {"done": {"type": "integer"}, "total": {"type": "integer"}}},
            "created": {"type": "number", "description": "Unix time of the submission"},
            "updated": {"type": "number", "description": "Unix time of the last change"},
            "result": {"description": "when done: the answer /api/ocr gives (without cost_time and instance)",
                       "oneOf": [{"type": "object", "required": ["code", "msg", "data"],
                                  "properties": {"code": {"const": 0}, "msg": {"const": "success"},
                                                 "data": {"type": "array", "items": ref("Line")}}},
                                 ref("DocumentResult")]},
            "result_url": {"type": "string", "description": "a done format=pdf job's PDF, in place of `result`: "
                           "/api/jobs/{job_id}/result.pdf"},
            "error": {"type": "object", "required": ["code", "msg"], "description": "when failed: the page's error",
                      "properties": {"code": {"type": "integer"}, "msg": {"type": "string"}}},
        },
    },
    "Error": {
        "type": "object", "required": ["code", "msg", "data"],
        "properties": {
            "code": ref("ErrorCode"),
            "msg": {"type": "string", "description": "what went wrong, naming the limit or setting"},
            "data": {"type": "array", "maxItems": 0},
        },
    },
    "Health": {
        "type": "object", "required": ["status", "instance"],
        "properties": {"status": {"const": "ok"}, "instance": {"type": "string"}},
    },
    "Ready": {
        "type": "object", "required": ["status", "instance", "cache"],
        "properties": {"status": {"const": "ready"}, "instance": {"type": "string"},
                       "cache": {"type": "boolean", "description": "results are shared through Redis"}},
    },
    "Base64Image": {
        "type": "object", "required": ["image_base64"],
        "description": "the query parameters may also be sent as keys beside image_base64",
        "properties": {"image_base64": {"type": "string", "description": "base64, a data: URL prefix allowed"}},
    },
    "MultipartImage": {
        "type": "object", "description": "a file field: image (or its aliases file, image_file), repeated for a "
                                         "batch (up to OCR_MAX_BATCH); the query parameters may also be form fields",
        "properties": {name: {"type": "string", "contentMediaType": "application/octet-stream"}
                       for name in ("image", "file", "image_file")},
    },
}

OCR_PARAMETERS: list[dict[str, Any]] = [
    {"name": "Cache-Control", "in": "header", "schema": {"type": "string"},
     "description": "`no-cache` skips the cache lookup and runs the model; the result is still stored"},
    {"name": "Pragma", "in": "header", "schema": {"type": "string"}, "description": "`no-cache`, as above"},
    {"name": "X-Client", "in": "header", "schema": {"type": "string"},
     "description": "who is calling; written to the access log as `client`"},
    {"name": "format", "in": "query",
     "schema": {"enum": ["json", "text", "hocr", "textract", "pdf"], "default": "json"},
     "description": "the answer's shape: JSON, plain text in reading order, hOCR, AWS Textract blocks, or a "
                    "searchable PDF (the upload with an invisible text layer; one file, not a batch)"},
    {"name": "profile", "in": "query", "schema": {"type": "string"},
     "description": "the engine profile (`accurate`, `fast`, or an own model's folder name); default OCR_PROFILE"},
    {"name": "lang", "in": "query", "schema": {"type": "string", "maxLength": 64},
     "description": "the page's language(s): ISO 639-1 (`de`, `ru`, `ar`) or Tesseract codes (`deu`), several "
                    "joined by commas (`de,en`, at most 8), or `auto` (the script found per page); default "
                    "OCR_LANG (none: the profile's own languages). GET /api/languages lists them"},
    {"name": "route", "in": "query", "schema": {"enum": ["ppocr", "tesseract", "lines"]},
     "description": "with lang=CODE: how the page is read, instead of the language's default route"},
    {"name": "words", "in": "query", "schema": FLAG, "description": "adds each line's words with their boxes"},
    {"name": "pages", "in": "query", "schema": {"type": "string", "pattern": "^[0-9, -]+$"},
     "description": "document pages to read, from 1, e.g. `1-3,7` (at most OCR_MAX_PAGES)"},
    {"name": "dpi", "in": "query", "schema": {"type": "integer", "minimum": 36, "default": 200},
     "description": "PDF render resolution, at most OCR_PDF_MAX_DPI"},
    {"name": "pdf_text", "in": "query", "schema": {"enum": ["auto", "never"], "default": "auto"},
     "description": "`auto`: a PDF page with a text layer answers from it without the model"},
    {"name": "password", "in": "query", "schema": {"type": "string"},
     "description": "opens an encrypted PDF (better sent as a form field or JSON key)"},
    {"name": "preview", "in": "query", "schema": FLAG,
     "description": "each document page also carries a small JPEG of itself"},
]

JOB_ID: dict[str, Any] = {"name": "job_id", "in": "path", "required": True, "schema": {"type": "string"},
                          "description": "the id POST /api/jobs answered"}

PATHS: dict[str, Any] = {
    "/api/ocr": {"post": {
        "operationId": "ocr", "summary": "Recognize the text in an image, a document, or a batch of files",
        "description": "JPEG, PNG, BMP, WebP or TIFF images and PDF or multi-page TIFF documents, sniffed from "
                       "the bytes. Sent as multipart (the field repeated for a batch), as the raw body, or as "
                       "JSON with base64.",
        "parameters": OCR_PARAMETERS,
        "requestBody": {"required": True, "content": {
            "multipart/form-data": {"schema": ref("MultipartImage")},
            "image/*": {"schema": {"type": "string", "contentMediaType": "image/*"}},
            "application/pdf": {"schema": {"type": "string", "contentMediaType": "application/pdf"}},
            "application/octet-stream": {"schema": {"type": "string", "contentMediaType": "application/octet-stream"}},
            "application/json": {"schema": ref("Base64Image")},
        }},
        "responses": {
            "200": {"description": "the lines found (an empty list when there is no text): an image's, a "
                                   "document's pages, a batch's results, or the format asked for",
                    "content": {
                        "application/json": {"schema": {"anyOf": [ref("OcrResult"), ref("DocumentResult"),
                                                                  ref("BatchResult"), ref("TextractResult")]}},
                        "text/plain": {"schema": {"type": "string", "description": "format=text"}},
                        "text/html": {"schema": {"type": "string", "description": "format=hocr (hOCR XHTML)"}},
                        "application/pdf": {"schema": {
                            "type": "string", "contentMediaType": "application/pdf",
                            "description": "format=pdf: the PDF as sent (an image: a PDF of its own, at its dpi, "
                                           "300 when it states none) with an invisible text layer on every "
                                           "OCRed page; never encrypted, even when the upload was; at most "
                                           "OCR_PDF_MAX_OUTPUT_MB and OCR_PDF_MAX_WORDS words"}},
                    },
                    "headers": {
                        "X-Cache": {"schema": {"enum": ["HIT", "MISS", "COALESCED", "BYPASS"]},
                                    "description": "where the answer came from (format=pdf: its pages; the "
                                                   "PDF itself is never cached whole)"},
                        "X-Instance": {"schema": {"type": "string"}, "description": "the instance that answered"},
                        "X-OCR-Profile": {"schema": {"type": "string"},
                                          "description": "the engine profile that produced the answer"},
                    }},
            "400": error_response("no image, a malformed request, a bad parameter, or a language that is "
                                  "unknown, not installed or not read by the profile"),
            "405": error_response("POST only"),
            "413": error_response("the body is larger than OCR_MAX_UPLOAD_MB, too many files in a batch, or "
                                  "format=pdf over OCR_PDF_MAX_OUTPUT_MB or OCR_PDF_MAX_WORDS"),
            "415": error_response("not an accepted image or document format, or Content-Type"),
            "422": error_response("the image or document cannot be decoded, is too large or too small, or "
                                  "breaks a document limit, or Tesseract took longer than OCR_TESS_TIMEOUT_MS"),
            "500": error_response("a bug: logged with its traceback"),
            "503": error_response("starting, busy (OCR_MAX_QUEUE) or, at the gateway, no instance", True,
                                  (50301, 50302)),
        },
    }},
    "/api/jobs": {"post": {
        "operationId": "submitJob", "summary": "Queue an image or document for OCR and answer at once",
        "description": "Takes what /api/ocr takes. The upload is checked first, so a bad file gets the same "
                       "4xx as on /api/ocr. Each page is one entry of a Redis Stream that every instance reads.",
        "parameters": [*OCR_PARAMETERS],
        "requestBody": {"required": True, "content": {
            "multipart/form-data": {"schema": ref("MultipartImage")},
            "image/*": {"schema": {"type": "string", "contentMediaType": "image/*"}},
            "application/octet-stream": {"schema": {"type": "string", "contentMediaType": "application/octet-stream"}},
            "application/json": {"schema": ref("Base64Image")},
        }},
        "responses": {
            "202": {"description": "queued", "content": json_content(ref("Job")),
                    "headers": {"Location": {"schema": {"type": "string"}, "description": "/api/jobs/{job_id}"}}},
            "400": error_response("no image or a malformed request"),
            "413": error_response("the body is larger than OCR_MAX_UPLOAD_MB"),
            "415": error_response("not an accepted image format or Content-Type"),
            "422": error_response("the image or a page cannot be decoded, or is too large"),
            "503": error_response("the job store is unavailable, or the job queue is full", True, (50350, 50351)),
        },
    }},
    "/api/jobs/{job_id}": {
        "get": {
            "operationId": "getJob", "parameters": [JOB_ID],
            "summary": "A job's status and progress, and its result once done",
            "responses": {"200": {"description": "the job", "content": json_content(ref("Job"))},
                          "404": error_response("no such job, or it expired (OCR_JOB_TTL)", codes=(40450,)),
                          "503": error_response("the job store is unavailable", True, (50350,))},
        },
        "delete": {
            "operationId": "cancelJob", "parameters": [JOB_ID],
            "summary": "Cancel a job: its remaining pages are skipped, its result dropped",
            "responses": {"200": {"description": "cancelled", "content": json_content({
                "type": "object", "required": ["code", "msg", "job_id", "status"],
                "properties": {"code": {"const": 0}, "msg": {"const": "success"}, "job_id": {"type": "string"},
                               "status": {"const": "cancelled"}}})},
                          "404": error_response("no such job, or it expired (OCR_JOB_TTL)", codes=(40450,)),
                          "503": error_response("the job store is unavailable", True, (50350,))},
        },
    },
    "/api/jobs/{job_id}/result.pdf": {"get": {
        "operationId": "getJobPdf", "parameters": [JOB_ID],
        "summary": "A done format=pdf job's searchable PDF: its upload with the recognized text as a layer",
        "description": "Made on request, by any instance, from the upload the job kept (an encrypted PDF "
                       "decrypted at submission) and the job's pages. GET /api/jobs/{job_id} gives its "
                       "`result_url` once the job is done.",
        "responses": {"200": {"description": "the searchable PDF", "content": {
                          "application/pdf": {"schema": {"type": "string", "contentMediaType": "application/pdf"}}}},
                      "404": error_response("no such job, or it expired (OCR_JOB_TTL)", codes=(40450,)),
                      "409": error_response("the job is not done yet (Retry-After), or was not submitted with "
                                            "format=pdf", True, (40950, 40951)),
                      "410": error_response("the job failed or was cancelled, or its upload is gone",
                                            codes=(41051, 41052)),
                      "413": error_response("the PDF would pass OCR_PDF_MAX_OUTPUT_MB, or its text layer "
                                            "OCR_PDF_MAX_WORDS", codes=(41332, 41333)),
                      "503": error_response("the job store is unavailable", True, (50350,))},
    }},
    "/api/languages": {"get": {
        "operationId": "languages",
        "summary": "Every language code: name, script, route and engine, whether it is installed, its pack",
        "responses": {"200": {"description": "the languages", "content": json_content(ref("Languages"))}},
    }},
    "/api/profiles": {"get": {
        "operationId": "profiles", "summary": "The engine profiles served: models, runtime, precision, CPU",
        "responses": {"200": {"description": "the profiles", "content": json_content(ref("Profiles"))}},
    }},
    "/health": {"get": {
        "operationId": "health", "summary": "Liveness: the worker answers (never waits for the engine)",
        "responses": {"200": {"description": "alive", "content": json_content(ref("Health"))}},
    }},
    "/ready": {"get": {
        "operationId": "ready",
        "summary": "Readiness: every worker's engine is loaded and the instance is not draining",
        "responses": {"200": {"description": "ready", "content": json_content(ref("Ready"))},
                      "503": error_response("loading or draining", True, (50301, 50303))},
    }},
    "/metrics": {"get": {
        "operationId": "metrics", "summary": "Prometheus metrics, summed over the instance's workers",
        "responses": {"200": {"description": "Prometheus text format",
                              "content": {"text/plain": {"schema": {"type": "string"}}}}},
    }},
    "/openapi.json": {"get": {
        "operationId": "openapi", "summary": "This document",
        "responses": {"200": {"description": "OpenAPI 3.1", "content": json_content({"type": "object"})}},
    }},
    "/": {"get": {
        "operationId": "index", "summary": "The upload page",
        "responses": {"200": {"description": "HTML", "content": {"text/html": {"schema": {"type": "string"}}}}},
    }},
}


def document() -> dict[str, Any]:
    """The whole document; a fresh copy each call, so a caller may change it."""
    codes = error_codes()
    schemas = copy.deepcopy(SCHEMAS)
    schemas["ErrorCode"] = {
        "description": "stable error codes: the first three digits are the HTTP status",
        "oneOf": [{"const": code, "title": name, "description": f"HTTP {status}: {meaning}"}
                  for code, status, name, meaning in codes],
    }
    paths = copy.deepcopy(PATHS)
    for item in paths.values():
        for operation in item.values():
            # Every request may carry an id and every answer echoes it (ocr_app/ops/logs.py).
            operation.setdefault("parameters", []).append({"$ref": "#/components/parameters/X-Request-ID"})
            for status, response in operation["responses"].items():
                response.setdefault("headers", {})["X-Request-ID"] = {"$ref": "#/components/headers/X-Request-ID"}
                if status.isdigit() and int(status) >= 400:
                    listed = codes_for(int(status), response.get("x-error-codes"))
                    response["x-error-codes"] = [code for code, _ in listed]
                    response["description"] += ". Codes: " + ", ".join(f"`{code}` {name}" for code, name in listed)
    return {
        "openapi": "3.1.0",
        "info": {"title": "OCR Fleet instance API", "version": _version(),
                 "description": "Every instance serves this API; the gateway forwards it unchanged. "
                                "Errors are JSON `{code, msg, data: []}` with a stable code (see ErrorCode); "
                                "any unknown path answers 404 with code 40401."},
        "servers": [{"url": "/"}],
        "paths": paths,
        "components": {
            "schemas": schemas,
            "headers": {"X-Request-ID": {
                "description": "the request's id: the one sent (printable ASCII, up to 128 characters), else a "
                               "new one; written to the gateway's and the instance's access logs",
                "schema": {"type": "string"}}},
            "parameters": {"X-Request-ID": {
                "name": "X-Request-ID", "in": "header", "required": False,
                "description": "an id for this request (the gateway sets one); echoed in the response and "
                               "written to the access logs. Up to 128 printable ASCII characters, no spaces",
                "schema": {"type": "string", "pattern": "^[!-~]{1,128}$"}}},
        },
    }


def _version() -> str:
    try:
        return metadata.version("ocr-fleet")
    except metadata.PackageNotFoundError:
        return "0+unknown"
