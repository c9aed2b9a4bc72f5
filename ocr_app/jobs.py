"""Async jobs on a Redis Stream with a consumer group: one stream entry per page.

Why Streams and not RQ: the engine lives in the gunicorn workers, so the consumers are threads there
that reuse it; RQ would need worker processes of its own with a second copy of the models. A page is
the unit of work, so a SIGKILLed instance loses at most the pages it held, and XAUTOCLAIM hands them
to another consumer once they have been idle OCR_JOB_CLAIM_SECONDS. Every write is idempotent (a
page's result is stored with HSETNX), so a page done twice counts once.

Keys (all expire OCR_JOB_TTL seconds after the job's last change):
    ocr:job:<id>          hash: status, progress, pages (sizes, sources), options, params, error, times
    ocr:job:<id>:input    hash: page number -> the page's image bytes, removed once the page is done
    ocr:job:<id>:results  hash: page number -> that page's lines (JSON)
"""
from __future__ import annotations

import json
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

import redis

from .errors import (
    JobNotFound,
    JobPageExpired,
    JobPageRepeatedlyFailed,
    JobQueueFull,
    JobStoreUnavailable,
    OcrError,
)
from .options import PageOptions

log = logging.getLogger(__name__)

STREAM = "ocr:jobs"
GROUP = "ocr"
PREFIX = "ocr:job:"
BLOCK_MS = 1000
MAX_ATTEMPTS = 3  # deliveries of one page before the job fails (a page that kills its worker)
STATUSES = ("queued", "running", "done", "failed", "cancelled")
FINISHED = ("done", "failed", "cancelled")

# Stores a page's result once, counts it, and finishes the job on its last page; a no-op when the job
# is gone, cancelled or failed. KEYS: job, results, input. ARGV: page, lines, ttl, now.
_COMPLETE_PAGE = """
local st = redis.call('hget', KEYS[1], 'status')
if (not st) or st == 'cancelled' or st == 'failed' then return -1 end
if redis.call('hsetnx', KEYS[2], ARGV[1], ARGV[2]) == 1 then
  local done = redis.call('hincrby', KEYS[1], 'done', 1)
  if done >= tonumber(redis.call('hget', KEYS[1], 'total')) then
    redis.call('hset', KEYS[1], 'status', 'done')
  end
end
redis.call('hset', KEYS[1], 'updated', ARGV[4])
redis.call('hdel', KEYS[3], ARGV[1])
for i = 1, 3 do redis.call('expire', KEYS[i], ARGV[3]) end
return 1
"""
# A page starts: queued -> running, and the job's keys live OCR_JOB_TTL from now. KEYS as above.
_START = """
if redis.call('hget', KEYS[1], 'status') == 'queued' then
  redis.call('hset', KEYS[1], 'status', 'running', 'updated', ARGV[1])
end
for i = 1, 3 do redis.call('expire', KEYS[i], ARGV[2]) end
return 1
"""
# queued/running -> failed with the page's error; its data and partial results go. KEYS as above.
# ARGV: code, msg, now, ttl.
_FAIL = """
local st = redis.call('hget', KEYS[1], 'status')
if st ~= 'queued' and st ~= 'running' then return 0 end
redis.call('hset', KEYS[1], 'status', 'failed', 'error_code', ARGV[1], 'error_msg', ARGV[2], 'updated', ARGV[3])
redis.call('del', KEYS[2], KEYS[3])
redis.call('expire', KEYS[1], ARGV[4])
return 1
"""

PageRunner = Callable[[bytes, PageOptions], bytes]  # page bytes, options -> the page's lines as JSON


def job_key(job_id: str) -> str:
    return f"{PREFIX}{job_id}"


def _input_key(job_id: str) -> str:
    return f"{PREFIX}{job_id}:input"


def _results_key(job_id: str) -> str:
    return f"{PREFIX}{job_id}:results"


@dataclass(frozen=True)
class JobPage:
    """One page of a job as submitted: its size, and its lines when a text layer already gave them."""

    number: int
    width: int
    height: int
    image: bytes | None  # to OCR; None when `lines` came from the text layer
    lines: list[dict[str, Any]] | None = None


@dataclass(frozen=True)
class JobView:
    """A job as stored: what GET /api/jobs/<id> shows, and what its result is made from once done."""

    job_id: str
    status: str
    done: int
    total: int
    created: float
    updated: float
    document: bool
    params: dict[str, str]  # the request's parameters (no password), to answer in the format asked for
    pages: list[tuple[int, int, int, str, list[dict[str, Any]]]] | None  # when done: number, w, h, source, lines
    error: dict[str, Any] | None

    def to_dict(self, result: Any = None) -> dict[str, Any]:
        body: dict[str, Any] = {
            "code": 0, "msg": "success", "job_id": self.job_id, "status": self.status,
            "progress": {"done": self.done, "total": self.total},
            "created": self.created, "updated": self.updated,
        }
        if result is not None:
            body["result"] = result
        if self.error is not None:
            body["error"] = self.error
        return body


class JobStore:
    """Submit, inspect and cancel jobs. Any Redis failure becomes JobStoreUnavailable (503)."""

    def __init__(self, client: redis.Redis, ttl: int, max_pending: int) -> None:
        self.client = client
        self.ttl = ttl
        self.max_pending = max_pending
        self._complete = client.register_script(_COMPLETE_PAGE)
        self._start = client.register_script(_START)
        self._fail = client.register_script(_FAIL)

    @classmethod
    def from_url(cls, url: str, ttl: int, max_pending: int, timeout: float) -> JobStore:
        # Longer than a blocking XREADGROUP, short to connect so a dead Redis answers 503 quickly.
        client = redis.Redis.from_url(url, socket_timeout=BLOCK_MS / 1000 + timeout + 1,
                                      socket_connect_timeout=max(timeout, 0.5), health_check_interval=30)
        return cls(client, ttl, max_pending)

    def ensure_group(self) -> None:
        try:
            self.client.xgroup_create(STREAM, GROUP, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    def submit(self, pages: list[JobPage], document: bool, words: bool, bypass: bool,
               params: dict[str, str]) -> str:
        """Store the pages, and queue one stream entry per page to OCR; returns the job id."""
        try:
            return self._submit(pages, document, words, bypass, params)
        except (redis.RedisError, OSError) as exc:
            raise JobStoreUnavailable(str(exc)) from None

    def _submit(self, pages: list[JobPage], document: bool, words: bool, bypass: bool,
                params: dict[str, str]) -> str:
        to_ocr = [p for p in pages if p.image is not None]
        if self.client.xlen(STREAM) + len(to_ocr) > self.max_pending:
            raise JobQueueFull(self.max_pending)
        self.ensure_group()
        job_id = uuid.uuid4().hex
        now = time.time()
        key = job_key(job_id)
        read = {p.number: json.dumps(p.lines, ensure_ascii=False) for p in pages if p.image is None}
        pipe = self.client.pipeline(transaction=True)
        pipe.hset(key, mapping={
            "status": "queued" if to_ocr else "done", "document": int(document), "total": len(pages),
            "done": len(read), "words": int(words), "bypass": int(bypass), "created": now, "updated": now,
            "params": json.dumps(params),
            "pages": json.dumps([[p.number, p.width, p.height, "ocr" if p.image is not None else "pdf_text"]
                                 for p in pages]),
        })
        for name, mapping in ((_input_key(job_id), {p.number: p.image for p in to_ocr}),
                              (_results_key(job_id), read)):
            if mapping:
                pipe.hset(name, mapping=mapping)  # type: ignore[arg-type]
                pipe.expire(name, self.ttl)
        pipe.expire(key, self.ttl)
        for page in to_ocr:
            pipe.xadd(STREAM, {"job": job_id, "page": page.number})
        pipe.execute()
        return job_id

    def get(self, job_id: str) -> JobView:
        try:
            meta = self._meta(job_id)
            results = self.client.hgetall(_results_key(job_id)) if meta["status"] == "done" else {}
        except (redis.RedisError, OSError) as exc:
            raise JobStoreUnavailable(str(exc)) from None
        pages = None
        if meta["status"] == "done":
            pages = [(int(n), int(w), int(h), str(src), json.loads(results[str(n).encode()]))
                     for n, w, h, src in json.loads(meta["pages"])]
        error = None
        if meta.get("error_code"):
            error = {"code": int(meta["error_code"]), "msg": meta.get("error_msg", "")}
        return JobView(job_id=job_id, status=meta["status"], done=int(meta["done"]), total=int(meta["total"]),
                       created=float(meta["created"]), updated=float(meta["updated"]),
                       document=meta["document"] == "1", params=json.loads(meta.get("params", "{}")),
                       pages=pages, error=error)

    def cancel(self, job_id: str) -> str:
        """Stop a job: its remaining pages are skipped and any result is dropped. Returns the status."""
        try:
            self._meta(job_id)  # 404 for an unknown job
            pipe = self.client.pipeline(transaction=True)
            pipe.hset(job_key(job_id), mapping={"status": "cancelled", "updated": time.time()})
            pipe.delete(_results_key(job_id), _input_key(job_id))
            pipe.expire(job_key(job_id), self.ttl)
            pipe.execute()
        except (redis.RedisError, OSError) as exc:
            raise JobStoreUnavailable(str(exc)) from None
        return "cancelled"

    def _meta(self, job_id: str) -> dict[str, str]:
        raw = self.client.hgetall(job_key(job_id)) if _valid_id(job_id) else {}
        if not raw:
            raise JobNotFound(job_id)
        return {_text(k): _text(v) for k, v in raw.items()}

    # used by the consumers
    def fail(self, job_id: str, code: int, msg: str) -> None:
        """Fail a job that is still queued or running (never one already cancelled or finished)."""
        self._fail(keys=[job_key(job_id), _results_key(job_id), _input_key(job_id)],
                   args=[code, msg, time.time(), self.ttl])

    def complete_page(self, job_id: str, page: int, lines: bytes) -> None:
        self._complete(keys=[job_key(job_id), _results_key(job_id), _input_key(job_id)],
                       args=[page, lines, self.ttl, time.time()])

    def start_page(self, job_id: str) -> None:
        self._start(keys=[job_key(job_id), _results_key(job_id), _input_key(job_id)], args=[time.time(), self.ttl])


def _valid_id(job_id: str) -> bool:
    return len(job_id) == 32 and all(c in "0123456789abcdef" for c in job_id)


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
            status, bypass, words = client.hmget(job_key(job_id), "status", "bypass", "words")
            if status is not None and _text(status) not in FINISHED:
                attempts = client.hincrby(job_key(job_id), f"attempts:{page}", 1)
                if attempts > MAX_ATTEMPTS:
                    error = JobPageRepeatedlyFailed(page, MAX_ATTEMPTS)
                    store.fail(job_id, error.code, error.msg)
                    self.on_page("failed")
                # A redelivered page's first consumer died, maybe holding the page's single-flight lock in
                # the cache: compute it rather than wait for that lock to time out.
                elif not self._run(job_id, page, PageOptions(words=words == b"1",
                                                             bypass_cache=bypass == b"1" or redelivered)):
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
        data = cast("bytes | None", self.store.client.hget(_input_key(job_id), str(page)))
        if data is None:
            expired = JobPageExpired(page)
            self.store.fail(job_id, expired.code, expired.msg)
            return True
        self.store.start_page(job_id)
        try:
            lines = self.run_page(data, options)
        except OcrError as exc:
            if exc.status == 503:
                return False
            self.store.fail(job_id, exc.code, f"page {page}: {exc.msg}")
            self.on_page("failed")
            return True
        self.store.complete_page(job_id, page, lines)
        self.on_page("done")
        return True


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _decode(entry_id: Any, fields: dict[Any, Any]) -> tuple[str, dict[str, str]]:
    return _text(entry_id), {_text(k): _text(v) for k, v in fields.items()}


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
