"""Async jobs on a Redis Stream with a consumer group: one stream entry per page. The store is here;
the consumer threads are in job_consumers.py.

Why Streams and not RQ: the engine lives in the gunicorn workers, so the consumers are threads there
that reuse it; RQ would need worker processes of its own with a second copy of the models. A page is
the unit of work, so a SIGKILLed instance loses at most the pages it held, and XAUTOCLAIM hands them
to another consumer once they have been idle OCR_JOB_CLAIM_SECONDS. Every write is idempotent (a
page's result is stored with HSETNX), so a page done twice counts once.

Keys (all expire OCR_JOB_TTL seconds, the accepting instance's, after the job's last change):
    ocr:job:<id>          hash: status, progress, pages (sizes, sources), options, params, error, times
    ocr:job:<id>:input    hash: page number -> the page's image bytes, removed once the page is done
    ocr:job:<id>:results  hash: page number -> that page's lines (JSON); r:<page> -> its recognizer
    ocr:job:<id>:original string: a format=pdf job's upload (decrypted), the searchable PDF's source;
                          dropped with the results on cancel and failure
"""
from __future__ import annotations

import json
import logging
import time
import uuid
from dataclasses import dataclass
from typing import Any, cast

import redis

from ocr_app.errors import JobNotFound, JobQueueFull, JobStoreUnavailable

log = logging.getLogger(__name__)

STREAM = "ocr:jobs"
GROUP = "ocr"
PREFIX = "ocr:job:"
BLOCK_MS = 1000
MAX_ATTEMPTS = 3  # deliveries of one page before the job fails (a page that kills its worker)
FINISHED = ("done", "failed", "cancelled")

# Stores a page's result once, counts it, and finishes the job on its last page; a no-op when the job
# is gone, cancelled or failed. KEYS: job, results, input, original. ARGV: page, lines, ttl, now, and the
# recognizer that read it as JSON ("" for none; kept beside the lines as field r:<page>).
_COMPLETE_PAGE = """
local st = redis.call('hget', KEYS[1], 'status')
if (not st) or st == 'cancelled' or st == 'failed' then return -1 end
if redis.call('hsetnx', KEYS[2], ARGV[1], ARGV[2]) == 1 then
  if ARGV[5] and ARGV[5] ~= '' then redis.call('hset', KEYS[2], 'r:' .. ARGV[1], ARGV[5]) end
  local done = redis.call('hincrby', KEYS[1], 'done', 1)
  if done >= tonumber(redis.call('hget', KEYS[1], 'total')) then
    redis.call('hset', KEYS[1], 'status', 'done')
  end
end
redis.call('hset', KEYS[1], 'updated', ARGV[4])
redis.call('hdel', KEYS[3], ARGV[1])
local ttl = redis.call('hget', KEYS[1], 'ttl') or ARGV[3]
for i = 1, 4 do redis.call('expire', KEYS[i], ttl) end
return 1
"""
# A page starts: queued -> running, and the job's keys live OCR_JOB_TTL from now. KEYS as above.
_START = """
if redis.call('hget', KEYS[1], 'status') == 'queued' then
  redis.call('hset', KEYS[1], 'status', 'running', 'updated', ARGV[1])
end
local ttl = redis.call('hget', KEYS[1], 'ttl') or ARGV[2]
for i = 1, 4 do redis.call('expire', KEYS[i], ttl) end
return 1
"""
# queued/running -> failed with the page's error; its data, partial results and original go. KEYS as above.
# ARGV: code, msg, now, ttl.
_FAIL = """
local st = redis.call('hget', KEYS[1], 'status')
if st ~= 'queued' and st ~= 'running' then return 0 end
redis.call('hset', KEYS[1], 'status', 'failed', 'error_code', ARGV[1], 'error_msg', ARGV[2], 'updated', ARGV[3])
redis.call('del', KEYS[2], KEYS[3], KEYS[4])
redis.call('expire', KEYS[1], redis.call('hget', KEYS[1], 'ttl') or ARGV[4])
return 1
"""



def job_key(job_id: str) -> str:
    return f"{PREFIX}{job_id}"


def input_key(job_id: str) -> str:
    return f"{PREFIX}{job_id}:input"


def _results_key(job_id: str) -> str:
    return f"{PREFIX}{job_id}:results"


def original_key(job_id: str) -> str:
    return f"{PREFIX}{job_id}:original"


def _keys(job_id: str) -> list[str]:
    """The keys the Lua scripts take, in their order."""
    return [job_key(job_id), _results_key(job_id), input_key(job_id), original_key(job_id)]


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
    # when done: number, w, h, source, lines, and the recognizer that read it (None: none named, or a text layer)
    pages: list[tuple[int, int, int, str, list[dict[str, Any]], dict[str, Any] | None]] | None
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
               params: dict[str, str], profile: str = "", original: bytes | None = None) -> str:
        """Store the pages (and `original`, the upload a format=pdf job's PDF is made from), and queue one
        stream entry per page to OCR; returns the job id."""
        try:
            return self._submit(pages, document, words, bypass, params, profile, original)
        except (redis.RedisError, OSError) as exc:
            raise JobStoreUnavailable(str(exc)) from None

    def _submit(self, pages: list[JobPage], document: bool, words: bool, bypass: bool,
                params: dict[str, str], profile: str, original: bytes | None) -> str:
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
            "done": len(read), "words": int(words), "bypass": int(bypass), "profile": profile, "created": now,
            # the accepting instance's OCR_JOB_TTL: whichever instance runs a page, the job keeps this one
            "ttl": self.ttl,
            "updated": now,
            "params": json.dumps(params),
            "pages": json.dumps([[p.number, p.width, p.height, "ocr" if p.image is not None else "pdf_text"]
                                 for p in pages]),
        })
        for name, mapping in ((input_key(job_id), {p.number: p.image for p in to_ocr}),
                              (_results_key(job_id), read)):
            if mapping:
                pipe.hset(name, mapping=mapping)  # type: ignore[arg-type]
                pipe.expire(name, self.ttl)
        if original is not None:
            pipe.set(original_key(job_id), original, ex=self.ttl)
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
            pages = [(int(n), int(w), int(h), str(src), json.loads(results[str(n).encode()]),
                      json.loads(results.get(f"r:{n}".encode(), b"null")))
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
            meta = self._meta(job_id)  # 404 for an unknown job
            pipe = self.client.pipeline(transaction=True)
            pipe.hset(job_key(job_id), mapping={"status": "cancelled", "updated": time.time()})
            pipe.delete(_results_key(job_id), input_key(job_id), original_key(job_id))
            pipe.expire(job_key(job_id), int(meta.get("ttl") or self.ttl))
            pipe.execute()
        except (redis.RedisError, OSError) as exc:
            raise JobStoreUnavailable(str(exc)) from None
        return "cancelled"

    def original(self, job_id: str) -> bytes | None:
        """A format=pdf job's upload as kept at submission; None when it is gone (or there never was one)."""
        try:
            return cast("bytes | None", self.client.get(original_key(job_id)))
        except (redis.RedisError, OSError) as exc:
            raise JobStoreUnavailable(str(exc)) from None

    def _meta(self, job_id: str) -> dict[str, str]:
        raw = self.client.hgetall(job_key(job_id)) if _valid_id(job_id) else {}
        if not raw:
            raise JobNotFound(job_id)
        return {as_text(k): as_text(v) for k, v in raw.items()}

    # used by the consumers
    def fail(self, job_id: str, code: int, msg: str) -> None:
        """Fail a job that is still queued or running (never one already cancelled or finished)."""
        self._fail(keys=_keys(job_id), args=[code, msg, time.time(), self.ttl])

    def complete_page(self, job_id: str, page: int, lines: bytes, recognizer: dict[str, Any] | None = None) -> None:
        self._complete(keys=_keys(job_id), args=[page, lines, self.ttl, time.time(),
                                                 json.dumps(recognizer) if recognizer else ""])

    def start_page(self, job_id: str) -> None:
        self._start(keys=_keys(job_id), args=[time.time(), self.ttl])


def _valid_id(job_id: str) -> bool:
    return len(job_id) == 32 and all(c in "0123456789abcdef" for c in job_id)


def as_text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
