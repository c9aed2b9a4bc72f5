"""Prometheus metrics that add up across gunicorn workers (prometheus_client multiprocess mode).

Multiprocess mode is on when PROMETHEUS_MULTIPROC_DIR is set before prometheus_client is imported;
ops.startup sets it in the gunicorn master. Without it (tests, flask run) the metrics are per process.
"""
from __future__ import annotations

import os
import threading

import psutil
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 16, 32, 64, 128)
CACHE_RESULTS = ("hit", "miss", "coalesced", "bypass", "error")
JOB_PAGE_RESULTS = ("done", "failed", "retried", "taken_over")


def multiprocess_dir() -> str | None:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


class Metrics:
    """The instance's metrics, owned by one app (kept in app.extensions, not module globals)."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter("ocr_requests", "OCR API requests by HTTP status", ["status"], registry=r)
        self.latency = Histogram("ocr_request_seconds", "OCR API request latency", buckets=LATENCY_BUCKETS,
                                 registry=r)
        self.inference = Histogram("ocr_inference_seconds", "Time spent in the OCR engine",
                                   buckets=LATENCY_BUCKETS, registry=r)
        self.engine_runs = Counter("ocr_engine_runs", "Images the engine has processed", registry=r)
        self.cache = Counter("ocr_cache_events", "Cache outcomes", ["result"], registry=r)
        self.inflight = Gauge("ocr_inflight_requests", "OCR API requests being served", registry=r,
                              multiprocess_mode="livesum")
        self.rejections = Counter("ocr_rejections", "Requests refused with 503", ["reason"], registry=r)
        self.pages = Counter("ocr_document_pages", "Document pages answered, by where their text came from",
                             ["source"], registry=r)
        # One series per live worker (label pid in multiprocess mode); a dead worker's series goes with it.
        self.worker_rss = Gauge("ocr_worker_rss_bytes", "Resident memory of each gunicorn worker", registry=r,
                                multiprocess_mode="liveall")
        # CPU seconds the live workers have used: its rate is the autoscaler's guard against shrinking a busy fleet.
        self.worker_cpu = Gauge("ocr_worker_cpu_seconds", "CPU time (user+system) used by the live workers",
                                registry=r, multiprocess_mode="livesum")
        self._process = psutil.Process()
        self.fanout_pages = Counter("ocr_fanout_pages", "Document pages OCRed, by whether they went to the fleet",
                                    ["where"], registry=r)
        self.job_pages = Counter("ocr_job_pages", "Job pages this instance's consumers handled", ["result"],
                                 registry=r)
        for where in ("fleet", "local"):
            self.fanout_pages.labels(where=where)
        for outcome in JOB_PAGE_RESULTS:
            self.job_pages.labels(result=outcome)
        for result in CACHE_RESULTS:  # export zeros so dashboards and ratios never miss a series
            self.cache.labels(result=result)
        for reason in ("queue_full", "not_ready"):
            self.rejections.labels(reason=reason)
        for source in ("ocr", "pdf_text"):
            self.pages.labels(source=source)

    def observe_request(self, status: int, seconds: float) -> None:
        self.requests.labels(status=str(status)).inc()
        self.latency.observe(seconds)

    def sample_rss(self) -> None:
        """Record this worker's RSS and CPU time now (each worker writes its own; /metrics reads them all)."""
        try:
            self.worker_rss.set(self._process.memory_info().rss)
            cpu = self._process.cpu_times()
            self.worker_cpu.set(cpu.user + cpu.system)
        except psutil.Error:
            pass

    def start_rss_sampler(self, interval: float = 5.0) -> threading.Event:
        """Refresh the RSS gauge every `interval` seconds, so idle workers report it too; set the event to stop."""
        stop = threading.Event()

        def run() -> None:
            while not stop.is_set():
                self.sample_rss()
                stop.wait(interval)

        threading.Thread(target=run, name="rss-sampler", daemon=True).start()
        return stop

    def render(self) -> bytes:
        """Exposition text: summed over live and dead workers in multiprocess mode."""
        self.sample_rss()  # the answering worker's value is current; the others are at most one interval old
        path = multiprocess_dir()
        if path is None:
            return generate_latest(self.registry)
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=path)
        return generate_latest(registry)


def mark_worker_dead(pid: int) -> None:
    """Called from gunicorn's child_exit so a dead worker's live gauges stop counting."""
    if multiprocess_dir():
        multiprocess.mark_process_dead(pid)
