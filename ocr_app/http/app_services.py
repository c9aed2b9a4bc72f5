"""The objects one app runs on, in one typed record under one key of `app.extensions` (Flask's convention).

Routes, the worker's exit hook and tests reach them through `services_of`, never by string keys.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from flask import Flask, current_app

from ocr_app.documents.pages import PageDispatch
from ocr_app.jobs.consumers import JobWorkers
from ocr_app.jobs.fanout import PageFanout
from ocr_app.jobs.store import JobStore
from ocr_app.service.ocr_service import OcrService

EXTENSION = "ocr_fleet"


@dataclass
class AppServices:
    """What create_app builds for one worker's app."""

    ocr: OcrService
    fanout: PageFanout
    jobs: JobStore | None = None  # None without Redis (OCR_REDIS_URL empty)
    job_workers: JobWorkers | None = None  # this worker's consumer threads, when it runs any
    page_dispatch: PageDispatch | None = None  # set to run documents' pages some other way (a test seam)

    def install(self, app: Flask) -> None:
        app.extensions[EXTENSION] = self


def services_of(app: Any = None) -> AppServices:
    """The services of `app` (default: the app of the current request)."""
    services: AppServices = (current_app if app is None else app).extensions[EXTENSION]
    return services


def job_workers_of(app: Any) -> JobWorkers | None:
    """The consumer threads of a worker's app, or None (no app, no Redis, or no consumers)."""
    services: AppServices | None = getattr(app, "extensions", {}).get(EXTENSION)
    return None if services is None else services.job_workers
