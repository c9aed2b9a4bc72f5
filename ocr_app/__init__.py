"""OCR Fleet instance: a Flask app that serves PP-OCR over HTTP.

Gunicorn loads ``ocr_app:create_app()`` in each worker (never preloaded), so every worker builds
its own engine after fork.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from ocr_app.config import Settings

if TYPE_CHECKING:
    from flask import Flask

    from ocr_app.engine.rapid import Engine
    from ocr_app.http.app_services import AppServices
    from ocr_app.options import PageOptions

__all__ = ["create_app", "Settings"]


def create_app(config: Settings | Mapping[str, Any] | None = None, *, load_engine: bool = True,
               background: bool = True,
               engine_factory: Callable[[Settings], Engine | dict[str, Engine]] | None = None) -> Flask:
    """Build the app. Settings come from defaults < OCR_* environment < `config` overrides.

    `engine_factory` builds the worker's engines, one per enabled profile (the real PP-OCR ones by default);
    tests pass a fake that builds one, which then serves the default profile.
    """
    # Imported here so that loading ocr_app.config (the gunicorn master does) stays light.
    from flask import Flask

    from ocr_app.engine.factory import build_engines
    from ocr_app.http import api, health, jobs_api
    from ocr_app.http.app_services import AppServices
    from ocr_app.http.fastpath import CacheHitFastPath
    from ocr_app.http.handlers import register_error_handlers
    from ocr_app.jobs.fanout import PageFanout
    from ocr_app.ops.logs import AccessLog, configure_logging
    from ocr_app.ops.metrics import Metrics
    from ocr_app.service.cache import ResultCache
    from ocr_app.service.ocr_service import OcrService

    settings = config if isinstance(config, Settings) else Settings.from_env(**dict(config or {}))
    log_handler = configure_logging(settings)

    app = Flask(__name__, static_folder="http/static")
    # Room for base64 (4/3) and multipart framing; the image itself is checked against the exact limit.
    app.config["MAX_CONTENT_LENGTH"] = int(settings.max_upload_bytes * 4 / 3) + 64 * 1024
    app.config["MAX_FORM_MEMORY_SIZE"] = app.config["MAX_CONTENT_LENGTH"]
    app.json.ensure_ascii = False  # type: ignore[attr-defined]

    metrics = Metrics()
    cache = ResultCache(settings.redis_url, ttl=settings.cache_ttl, timeout=settings.redis_timeout,
                        lock_ttl=float(settings.timeout), local_bytes=int(settings.local_cache_mb * 2**20),
                        on_error=lambda: metrics.cache.labels(result="error").inc())
    service = OcrService(settings, metrics, cache, engine_factory or build_engines)
    services = AppServices(service, PageFanout(settings.gateway_url, per_doc=settings.fanout_pages,
                                               per_worker=settings.fanout_inflight,
                                               read_timeout=float(settings.timeout)))
    services.install(app)

    app.register_blueprint(api.bp)
    app.register_blueprint(health.bp)
    app.register_blueprint(jobs_api.bp)
    register_error_handlers(app, settings.max_upload_mb)
    fast = CacheHitFastPath(app.wsgi_app, service)
    access = AccessLog(fast, settings.instance_id, log_handler, settings.log_format)
    app.wsgi_app = access  # type: ignore[method-assign]
    if load_engine:
        service.start(background=background)
    if background:
        metrics.start_rss_sampler()
    _start_jobs(services, consumers=load_engine)
    return app


def _start_jobs(services: AppServices, consumers: bool) -> None:
    """The job store, and this worker's consumer threads (after fork: gunicorn never preloads us)."""
    from ocr_app.jobs.consumers import JobWorkers
    from ocr_app.jobs.store import JobStore

    service = services.ocr
    settings = service.settings
    if not settings.redis_url:
        return
    store = JobStore.from_url(settings.redis_url, ttl=settings.job_ttl, max_pending=settings.job_max_pending,
                              timeout=settings.redis_timeout)
    services.jobs = store

    def run_page(data: bytes, options: PageOptions) -> tuple[bytes, dict[str, Any] | None]:
        outcome = service.ocr(data, page=options)
        return outcome.data_json, outcome.recognizer

    if consumers and settings.job_consumers:
        workers = JobWorkers(store, settings.instance_id, settings.job_consumers, settings.job_claim_seconds,
                             run_page=run_page,
                             can_take=service.idle, draining=lambda: service.draining,
                             on_page=lambda outcome: service.metrics.job_pages.labels(result=outcome).inc())
        services.job_workers = workers
        workers.start()
