"""The /api/jobs blueprint: submit a file for later, ask about it from any instance, cancel it, and fetch a
format=pdf job's searchable PDF (rendered on request from the kept upload and the job's pages)."""
from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

from flask import Blueprint, Response, jsonify, request

from ocr_app.documents.images import decode_image
from ocr_app.documents.pages import DocumentResult, PageResult, load_pages, upload_format
from ocr_app.documents.searchable import searchable_pdf
from ocr_app.errors import (
    JobEnded,
    JobNeedsOneFile,
    JobNotDone,
    JobNotPdf,
    JobOriginalExpired,
    JobStoreUnavailable,
)
from ocr_app.http.api import answer_body, read_uploads, wants_bypass
from ocr_app.http.app_services import services_of
from ocr_app.jobs.originals import kept_original
from ocr_app.jobs.store import JobPage, JobStore, JobView
from ocr_app.options import parse_options
from ocr_app.service.ocr_service import Outcome

bp = Blueprint("jobs", __name__)

# Parameters a job keeps to answer in the format asked for; the password never reaches Redis.
KEPT_PARAMS = ("format", "words", "pages", "dpi", "pdf_text")
PER_REQUEST = ("cost_time", "cached", "instance")


def _language(lang: str, route: str) -> dict[str, str]:
    """The job's lang and route, canonical ("de,en"), for its pages' consumers (none: the profile's own)."""
    return {key: value for key, value in (("lang", lang), ("route", route)) if value}


def _store() -> JobStore:
    store = services_of().jobs
    if store is None:
        raise JobStoreUnavailable("jobs need Redis and OCR_REDIS_URL is empty")
    return store


@bp.after_request
def _instance(resp: Response) -> Response:
    resp.headers["X-Instance"] = services_of().ocr.settings.instance_id
    return resp


@bp.post("/api/jobs")
def submit() -> Response:
    """Takes what /api/ocr takes (one file); checks it, answers 202 at once with the job's id."""
    store = _store()
    settings = services_of().ocr.settings
    uploads, params = read_uploads()
    if len(uploads) != 1:
        raise JobNeedsOneFile(len(uploads))
    bypass = wants_bypass(request.headers.get("Cache-Control", ""), request.headers.get("Pragma", ""))
    options = replace(parse_options(params, settings, bypass_cache=bypass), preview=False)
    profile = services_of().ocr.profile_name(options.page.profile)  # 400 at once if unknown
    # the language too (unknown, not installed here, not read by the profile): its pages run with it anywhere
    page = services_of().ocr.page_language(options.page, profile)
    _, data = uploads[0]
    fmt = upload_format(data)  # sniffed once, and passed on
    works = load_pages(data, settings, options, fmt)  # every page checked and rendered before anything is queued
    if works is None:
        image = decode_image(data, settings, fmt)
        pages = [JobPage(1, image.width, image.height, data)]
    else:
        pages = [JobPage(w.plan.number, w.plan.width, w.plan.height, w.image, w.lines) for w in works]
    # A PDF is made from the upload itself, so a format=pdf job keeps it (an encrypted PDF decrypted).
    original = (kept_original(data, fmt, options.password, settings.max_upload_bytes, settings.max_upload_mb)
                if options.format == "pdf" else None)
    kept = {k: v for k, v in params.items() if k in KEPT_PARAMS}
    job_id = store.submit(pages, document=works is not None, words=options.needs_words, bypass=bypass,
                          params={**kept, "profile": profile, **_language(page.lang, page.route)}, profile=profile,
                          original=original)
    done = sum(p.image is None for p in pages)
    resp = jsonify({"code": 0, "msg": "success", "job_id": job_id, "status": "queued" if done < len(pages)
                    else "done", "progress": {"done": done, "total": len(pages)}})
    resp.status_code = 202
    resp.headers["Location"] = f"/api/jobs/{job_id}"
    return resp


@bp.get("/api/jobs/<job_id>")
def status(job_id: str) -> Response:
    view = _store().get(job_id)
    if _format(view) == "pdf":  # a PDF is not inlined: the answer says where it is
        body = view.to_dict()
        if view.status == "done":
            body["result_url"] = f"/api/jobs/{job_id}/result.pdf"
        return jsonify(body)
    return jsonify(view.to_dict(_result(view) if view.pages is not None else None))


@bp.get("/api/jobs/<job_id>/result.pdf")
def result_pdf(job_id: str) -> Response:
    """A done format=pdf job's searchable PDF: its upload with the job's text as an invisible layer."""
    store = _store()
    view = store.get(job_id)  # 404 for an unknown or expired job
    fmt = _format(view)
    if fmt != "pdf":
        raise JobNotPdf(job_id, fmt)
    if view.status in ("failed", "cancelled"):
        raise JobEnded(job_id, view.status)
    if view.status != "done":
        raise JobNotDone(job_id, view.status, view.done, view.total)
    original = store.original(job_id)
    if original is None:
        raise JobOriginalExpired(job_id)
    settings = services_of().ocr.settings
    body = searchable_pdf(original, _pages(view), parse_options(view.params, settings), settings)
    resp = Response(body, status=200, mimetype="application/pdf")
    resp.headers["Content-Disposition"] = f'attachment; filename="{job_id}.pdf"'
    return resp


@bp.delete("/api/jobs/<job_id>")
def cancel(job_id: str) -> Response:
    status = _store().cancel(job_id)
    return jsonify({"code": 0, "msg": "success", "job_id": job_id, "status": status})


def _result(view: JobView) -> Any:
    """The answer /api/ocr would have given, in the job's format: JSON as an object, text and hOCR as a string."""
    settings = services_of().ocr.settings
    options = parse_options(view.params, settings)
    pages = _pages(view)
    profile = view.params.get("profile") or settings.profile
    answer: Outcome | DocumentResult
    if view.document or options.format != "json":
        answer = DocumentResult(pages=pages)
    else:
        answer = Outcome(json.dumps(pages[0].lines if pages else []).encode(), "MISS", 0.0, profile, settings.engine,
                         pages[0].recognizer if pages else None)
    body = answer_body(answer, b"", options, settings)
    if options.format not in ("json", "textract"):
        return body.decode()
    result = json.loads(body)
    for key in PER_REQUEST:  # they describe a request, not the job (its pages ran on many instances)
        result.pop(key, None)
    return result


def _pages(view: JobView) -> list[PageResult]:
    return [PageResult(n, w, h, source, lines, recognizer=recognizer)
            for n, w, h, source, lines, recognizer in view.pages or []]


def _format(view: JobView) -> str:
    """The format the job was submitted with, spelled as parse_options reads it."""
    return view.params.get("format", "json").strip().lower() or "json"
