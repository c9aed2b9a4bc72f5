"""The job consumers of one gunicorn worker: threads of the Redis Stream's consumer group.

A consumer takes a page only while its worker runs no other OCR, so synchronous requests wait behind at
most one job page; it first claims pages a dead or stalled consumer held (XAUTOCLAIM), then reads new
ones. Started after fork (create_app), stopped by the worker's exit hook; a draining worker takes no page.
"""
from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Any, cast

import redis

from ocr_app.errors import JobPageExpired, JobPageRepeatedlyFailed, OcrError
from ocr_app.jobs.store import BLOCK_MS, FINISHED, GROUP, MAX_ATTEMPTS, STREAM, JobStore, as_text, input_key, job_key
from ocr_app.options import PageOptions

log = logging.getLogger(__name__)

# page bytes, options -> the page's lines as JSON, and which language and recognizer read it (or None)
PageRunner = Callable[[bytes, PageOptions], tuple[bytes, dict[str, Any] | None]]


class Consumer:
    """One consumer thread of the group: takes a page when its worker is idle, OCRs it, records it."""

    def __init__(self, store: JobStore, name: str, run_page: PageRunner, claim_seconds: float,
                 can_take: Callable[[], bool], stop: threading.Event,
                 on_page: Callable[[str], None] = lambda outcome: None,
                 draining: Callable[[], bool] = lambda: False) -> None:
        self.store = store
        self.draining = draining
        self.on_page = on_page  # done | failed | retried | taken_over, for the metrics
        self.name = name
        self.run_page = run_page
        self.claim_ms = int(claim_seconds * 1000)
        self.can_take = can_take
        self.stop = stop
        self._next_claim = 0.0

    def loop(self) -> None:
        backoff = 0.5
        while not self.stop.is_set():
            if not self.can_take():
                self.stop.wait(0.05)
                continue
            try:
                entry = self._next_entry()
                backoff = 0.5
            except (redis.RedisError, OSError) as exc:  # Redis away: wait, then try again
                log.debug("jobs: %s", exc)
                self.stop.wait(backoff)
                backoff = min(backoff * 2, 10.0)
                continue
            if entry is None:
                continue
            if self.draining():  # it came in while we were draining: leave it pending for another consumer
                log.info("jobs: draining, page entry %s left for another instance", entry[0])
                continue
            self._handle(*entry)

    def _next_entry(self) -> tuple[str, dict[str, str], bool] | None:
        """The next page: one claimed from a dead or stalled consumer first, else a new one."""
        client = self.store.client
        if time.monotonic() >= self._next_claim:  # pages whose consumer died or stalled
            self._next_claim = time.monotonic() + max(self.claim_ms / 2000, 0.5)
            claimed = self._call_group(lambda: client.xautoclaim(
                STREAM, GROUP, self.name, min_idle_time=self.claim_ms, start_id="0-0", count=1))
            if claimed and claimed[1]:
                entry_id, fields = claimed[1][0]
                if fields:  # a deleted entry comes back empty
                    return (*_decode(entry_id, fields), True)
        got = self._call_group(lambda: client.xreadgroup(GROUP, self.name, {STREAM: ">"}, count=1,
                                                         block=BLOCK_MS))
        if not got:
            return None
        entry_id, fields = got[0][1][0]
        return (*_decode(entry_id, fields), False)

    def _call_group(self, fn: Callable[[], Any]) -> Any:
        try:
            return fn()
        except redis.ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise
            self.store.ensure_group()  # Redis restarted empty
            return fn()

    def _handle(self, entry_id: str, fields: dict[str, str], redelivered: bool) -> None:
        store, client = self.store, self.store.client
        job_id, page = fields.get("job", ""), int(fields.get("page", "0") or 0)
        if redelivered:
            log.info("jobs: took over page %s of job %s from a stalled or dead consumer", page, job_id)
            self.on_page("taken_over")
        try:
            status, bypass, words, profile, params = client.hmget(job_key(job_id), "status", "bypass", "words",
                                                                  "profile", "params")
            kept = json.loads(params) if params else {}  # lang and route, as checked at submission
            if status is not None and as_text(status) not in FINISHED:
                attempts = client.hincrby(job_key(job_id), f"attempts:{page}", 1)
                if attempts > MAX_ATTEMPTS:
                    error = JobPageRepeatedlyFailed(page, MAX_ATTEMPTS)
                    store.fail(job_id, error.code, error.msg)
                    self.on_page("failed")
                # A redelivered page's first consumer died, maybe holding the page's single-flight lock in
                # the cache: compute it rather than wait for that lock to time out.
                elif not self._run(job_id, page, PageOptions(words=words == b"1", profile=as_text(profile or b""),
                                                             bypass_cache=bypass == b"1" or redelivered,
                                                             lang=str(kept.get("lang", "")),
                                                             route=str(kept.get("route", "")))):
                    client.hincrby(job_key(job_id), f"attempts:{page}", -1)
                    self.on_page("retried")
                    self.stop.wait(1.0)
                    return  # left pending: claimed again once idle, here or elsewhere
            client.xack(STREAM, GROUP, entry_id)
            client.xdel(STREAM, entry_id)
        except (redis.RedisError, OSError) as exc:
            # Unacknowledged: the entry stays pending and is claimed again later.
            log.warning("jobs: page %s of %s left for a retry: %s", page, job_id, exc)

    def _run(self, job_id: str, page: int, options: PageOptions) -> bool:
        """OCR one page and record it; False when the worker could not take it now (503)."""
        data = cast("bytes | None", self.store.client.hget(input_key(job_id), str(page)))
        if data is None:
            expired = JobPageExpired(page)
            self.store.fail(job_id, expired.code, expired.msg)
            return True
        self.store.start_page(job_id)
        try:
            lines, recognizer = self.run_page(data, options)
        except OcrError as exc:
            if exc.status == 503:
                return False
            self.store.fail(job_id, exc.code, f"page {page}: {exc.msg}")
            self.on_page("failed")
            return True
        self.store.complete_page(job_id, page, lines, recognizer)
        self.on_page("done")
        return True


def _decode(entry_id: Any, fields: dict[Any, Any]) -> tuple[str, dict[str, str]]:
    return as_text(entry_id), {as_text(k): as_text(v) for k, v in fields.items()}


class JobWorkers:
    """The consumer threads of one gunicorn worker: started after fork, stopped on drain or exit."""

    def __init__(self, store: JobStore, instance_id: str, count: int, claim_seconds: float,
                 run_page: PageRunner, can_take: Callable[[], bool],
                 on_page: Callable[[str], None] = lambda outcome: None,
                 draining: Callable[[], bool] = lambda: False) -> None:
        self.stop_event = threading.Event()
        self.threads = [
            threading.Thread(
                target=Consumer(store, f"{instance_id}/{os.getpid()}/{n}", run_page, claim_seconds,
                                can_take, self.stop_event, on_page, draining).loop,
                name=f"job-consumer-{n}", daemon=True)
            for n in range(count)
        ]

    def start(self) -> None:
        for thread in self.threads:
            thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Finish the page in hand (bounded), take no more; unfinished pages are claimed elsewhere."""
        self.stop_event.set()
        deadline = time.monotonic() + timeout
        for thread in self.threads:
            thread.join(max(0.0, deadline - time.monotonic()))
