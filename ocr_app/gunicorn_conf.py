"""Gunicorn settings and hooks for one instance.

    gunicorn -c python:ocr_app.gunicorn_conf "ocr_app:create_app()"


Only wiring lives here: settings come from ocr_app.config, the master's preparation from ocr_app.ops.startup,
registration from ocr_app.ops.registry.
"""
from __future__ import annotations

import os
import shutil
import signal
import threading
import time
from typing import Any

from ocr_app.config import ConfigError, Settings
from ocr_app.ops import startup
from ocr_app.ops.logs import gunicorn_logger_class
from ocr_app.ops.registry import Registration

# Read once; importing this module changes nothing (the environment, the allocator, the profile check and
# the runtime folder are on_starting's work, before any worker forks).
_settings = Settings.from_env()

bind = [_settings.bind]
workers = _settings.workers
worker_class = "gthread"
# One thread per OCR job the worker may hold plus spare threads, so /ready, /metrics and cache hits
# never queue behind OCR work (a slow /ready would take a busy instance out of Consul).
threads = _settings.max_queue + 1 + _settings.http_threads
timeout = _settings.timeout
# Recycle a worker after this many requests (0: never), bounding slow growth of its heap. The jitter
# (default a tenth) keeps workers from restarting together; the master keeps the socket, so nothing is refused.
max_requests = _settings.max_requests
max_requests_jitter = (_settings.max_requests_jitter or _settings.max_requests // 10) if max_requests else 0
graceful_timeout = _settings.graceful_timeout
# Longer than the gateway's upstream keepalive_timeout (4 s), so nginx closes idle connections first;
# short, because gthread holds an idle connection this long before a graceful stop can finish.
keepalive = 5
preload_app = False  # one engine per worker, built after fork
proc_name = f"ocr-fleet:{_settings.instance_id}"
worker_tmp_dir = "/dev/shm" if os.path.isdir("/dev/shm") else None
control_socket_disable = True  # one fixed socket path would be shared by every instance on the host
accesslog = None  # the app writes one access line per request (ocr_app.ops.logs), the gateway its own
errorlog = "-"
loglevel = _settings.log_level
logger_class = gunicorn_logger_class(_settings) or "gunicorn.glogging.Logger"  # JSON: gunicorn's lines too


def when_ready(server: Any) -> None:
    """Register in Consul once the listeners are up (workers warm up before /ready passes)."""
    registration = Registration(_settings)
    server.ocr_registration = registration
    registration.start()


def on_starting(server: Any) -> None:
    """Prepare the instance before any worker forks (ops.startup.prepare: it may re-execute the master once
    for OCR_ALLOCATOR), then replace the master's SIGTERM handler with one that drains before stopping."""
    try:
        runtime = server.ocr_runtime = startup.prepare(_settings)
    except ConfigError as exc:
        raise SystemExit(f"error: {exc}") from None
    original = server.handle_term

    def handle_term() -> None:
        registration = getattr(server, "ocr_registration", None)
        if registration is not None:
            registration.deregister()
        (runtime / "draining").touch()
        server.log.info("draining: out of the registry, serving for %.1fs more", _settings.drain_seconds)
        deadline = time.monotonic() + _settings.drain_seconds
        while time.monotonic() < deadline:
            time.sleep(0.1)
        original()

    server.handle_term = handle_term


def post_worker_init(worker: Any) -> None:
    """Workers drain on SIGTERM too: a process-group SIGTERM (systemd, killpg) reaches them directly.

    The first SIGTERM keeps serving for what is left of the drain window, counted from when the instance
    started draining (the flag file's age), so a master that already drained doesn't make workers wait
    again. A second SIGTERM or the timer then runs gunicorn's own graceful exit.
    """
    graceful_exit = worker.handle_exit
    timer: list[threading.Timer] = []

    def handle_term(sig: int, frame: Any) -> None:
        if timer:
            timer[0].cancel()
            graceful_exit(sig, frame)
            return
        flag = startup.runtime_dir() / "draining"
        if not flag.exists():
            flag.touch()
        remaining = _settings.drain_seconds - (time.time() - flag.stat().st_mtime)
        if remaining <= 0:
            graceful_exit(sig, frame)
            return
        timer.append(threading.Timer(remaining, graceful_exit, (sig, frame)))
        timer[0].daemon = True
        timer[0].start()

    signal.signal(signal.SIGTERM, handle_term)


def worker_exit(server: Any, worker: Any) -> None:
    """A stopping worker takes no more job pages; the one in hand finishes or is claimed elsewhere."""
    from ocr_app.http.app_services import job_workers_of

    consumers = job_workers_of(getattr(worker, "wsgi", None))
    if consumers is not None:
        consumers.stop()


def child_exit(server: Any, worker: Any) -> None:
    """A dead worker's live gauges stop counting, and its "engine loaded" marker goes."""
    # Imported here: prometheus_client settles on multiprocess mode when imported, after on_starting set it.
    from ocr_app.ops.metrics import mark_worker_dead

    mark_worker_dead(worker.pid)
    (server.ocr_runtime / "ready" / str(worker.pid)).unlink(missing_ok=True)


def on_exit(server: Any) -> None:
    """Out of the catalog, and the runtime folder removed when it was a temporary one of ours."""
    registration = getattr(server, "ocr_registration", None)
    if registration is not None:
        registration.deregister()
    if not _settings.runtime_dir:
        shutil.rmtree(server.ocr_runtime, ignore_errors=True)
