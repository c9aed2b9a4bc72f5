"""Liveness, readiness, metrics, the OpenAPI document and the upload page: the endpoints around the API."""
from __future__ import annotations

import json
from functools import lru_cache

from flask import Blueprint, Response, current_app, jsonify

from ocr_app.errors import Draining, NotReady
from ocr_app.http.app_services import services_of
from ocr_app.http.openapi import document

bp = Blueprint("health", __name__)


@bp.get("/health")
def health() -> Response:
    """Liveness: the worker answers. Never depends on the engine, Redis or Consul."""
    return jsonify({"status": "ok", "instance": services_of().ocr.settings.instance_id})


@bp.get("/ready")
def ready() -> Response:
    """Readiness: 200 once the engine is warm, and only while not draining."""
    service = services_of().ocr
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
    m = services_of().ocr.metrics
    return Response(m.render(), mimetype=m.content_type.split(";")[0],
                    headers={"Content-Type": m.content_type})


@bp.get("/openapi.json")
def openapi() -> Response:
    """The OpenAPI 3.1 document of this API (ocr_app/http/openapi.py)."""
    return Response(_openapi_json(), mimetype="application/json")


@lru_cache(maxsize=1)
def _openapi_json() -> bytes:
    return json.dumps(document(), ensure_ascii=False, indent=1).encode()


@bp.get("/")
def index() -> Response:
    """The upload page."""
    return current_app.send_static_file("index.html")
