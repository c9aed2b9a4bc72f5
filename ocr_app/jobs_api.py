"""The /api/jobs blueprint: submit a document for later, ask about it from any instance, cancel it."""
from __future__ import annotations

from flask import Blueprint, Response, current_app, jsonify, request

from .api import read_image_bytes, wants_bypass
from .errors import JobStoreUnavailable
from .jobs import JobStore
from .pages import split_pages
from .service import OcrService

bp = Blueprint("jobs", __name__)


def _store() -> JobStore:
    store: JobStore | None = current_app.extensions.get("ocr_jobs")
    if store is None:
        raise JobStoreUnavailable("jobs need Redis and OCR_REDIS_URL is empty")
    return store


def _service() -> OcrService:
    service: OcrService = current_app.extensions["ocr"]
    return service


@bp.after_request
def _instance(resp: Response) -> Response:
    resp.headers["X-Instance"] = _service().settings.instance_id
    return resp


@bp.post("/api/jobs")
def submit() -> Response:
    """Takes what /api/ocr takes; answers 202 at once with the job's id and where to poll."""
    store = _store()
    upload = split_pages(read_image_bytes(), _service().settings)
    bypass = wants_bypass(request.headers.get("Cache-Control", ""), request.headers.get("Pragma", ""))
    job_id = store.submit(upload, bypass)
    resp = jsonify({"code": 0, "msg": "success", "job_id": job_id, "status": "queued",
                    "progress": {"done": 0, "total": len(upload.sizes)}})
    resp.status_code = 202
    resp.headers["Location"] = f"/api/jobs/{job_id}"
    return resp


@bp.get("/api/jobs/<job_id>")
def status(job_id: str) -> Response:
    return jsonify(_store().get(job_id).to_dict())


@bp.delete("/api/jobs/<job_id>")
def cancel(job_id: str) -> Response:
    status = _store().cancel(job_id)
    return jsonify({"code": 0, "msg": "success", "job_id": job_id, "status": status})
