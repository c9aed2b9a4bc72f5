"""Liveness, readiness, metrics and the upload page: the endpoints around the API."""
from __future__ import annotations

from flask import Blueprint, Response, current_app, jsonify

from .errors import Draining, NotReady
from .service import OcrService

bp = Blueprint("health", __name__)


def _service() -> OcrService:
    service: OcrService = current_app.extensions["ocr"]
    return service


@bp.get("/health")
def health() -> Response:
    """Liveness: the worker answers. Never depends on the engine, Redis or Consul."""
    return jsonify({"status": "ok", "instance": _service().settings.instance_id})


@bp.get("/ready")
def ready() -> Response:
    """Readiness: 200 once the engine is warm, and only while not draining."""
    service = _service()
    if service.draining:
        raise Draining()
    if not service.ready:
        reason = service.load_error or (
            f"OCR engines loaded in {service.ready_workers()} of {service.settings.workers} workers")
        raise NotReady(f"not ready: {reason}")
    return jsonify({"status": "ready", "instance": service.settings.instance_id,
                    "cache": service.cache.enabled})


@bp.get("/metrics")
def metrics() -> Response:
    m = _service().metrics
    return Response(m.render(), mimetype=m.content_type.split(";")[0],
                    headers={"Content-Type": m.content_type})


@bp.get("/")
def index() -> Response:
    """The upload page."""
    return current_app.send_static_file("index.html")
