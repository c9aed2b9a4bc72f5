"""Redis result cache: versioned keys, TTL, single-flight across workers and instances, and a breaker.

The client never sees a cache failure: when Redis is down or slow, every call answers "no cache"
within OCR_REDIS_TIMEOUT and the breaker keeps later requests from waiting on it at all.
"""
from __future__ import annotations

import hashlib
import logging
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable

import redis

log = logging.getLogger(__name__)

KEY_PREFIX = "ocr:v1"
POLL_SECONDS = 0.02
_RELEASE_LOCK = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0"


def image_key(namespace: str, data: bytes) -> str:
    """sha256 of the bytes plus what else decides the answer (models, pipeline, options)."""
    return f"{KEY_PREFIX}:{namespace}:{hashlib.sha256(data).hexdigest()}"


class Breaker:
    """Stops calling a failing dependency for a while; the pause doubles up to `max_open`."""

    def __init__(self, base_open: float = 1.0, max_open: float = 30.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._base, self._max, self._clock = base_open, max_open, clock
        self._open_until = 0.0
        self._pause = base_open
        self._lock = threading.Lock()

    @property
    def is_open(self) -> bool:
        return self._clock() < self._open_until

    def success(self) -> None:
        with self._lock:
            if self._pause != self._base:
                log.info("cache: Redis is reachable again")
            self._pause = self._base
            self._open_until = 0.0

    def failure(self) -> None:
        with self._lock:
            if not self.is_open:
                log.warning("cache: Redis failed, serving uncached for %.1fs", self._pause)
                self._open_until = self._clock() + self._pause
                self._pause = min(self._pause * 2, self._max)


class LocalCache:
    """A small in-process LRU in front of Redis, bounded by bytes.

    Entries never go stale: a key names the image bytes, the models and the pipeline, so the answer for
    it cannot change. Hot images are then served without a Redis round trip.
    """

    def __init__(self, max_bytes: int, ttl: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.max_bytes = max_bytes
        self.ttl = ttl
        self._clock = clock
        self._items: OrderedDict[str, tuple[float, bytes]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, key: str) -> bytes | None:
        with self._lock:
            item = self._items.get(key)
            if item is None:
                return None
            expires, value = item
            if expires < self._clock():
                self._drop(key)
                return None
            self._items.move_to_end(key)
            return value

    def put(self, key: str, value: bytes) -> None:
        if len(value) > self.max_bytes // 8:
            return  # one huge answer must not flush everything else
        with self._lock:
            if key in self._items:
                self._drop(key)
            self._items[key] = (self._clock() + self.ttl, value)
            self._bytes += len(value)
            while self._bytes > self.max_bytes:
                self._drop(next(iter(self._items)))

    def _drop(self, key: str) -> None:
        _, value = self._items.pop(key)
        self._bytes -= len(value)


class ResultCache:
    """Stores serialized OCR results. Every method degrades to 'no cache' instead of raising."""

    def __init__(self, url: str, ttl: int, timeout: float, lock_ttl: float,
                 on_error: Callable[[], None] = lambda: None, local_bytes: int = 0) -> None:
        self.ttl = ttl
        self.lock_ttl = lock_ttl
        self._on_error = on_error
        self._breaker = Breaker()
        self._local = LocalCache(local_bytes, ttl) if local_bytes > 0 else None
        self._client: redis.Redis | None = None
        if url:
            self._client = redis.Redis.from_url(
                url, socket_timeout=timeout, socket_connect_timeout=timeout,
                health_check_interval=30, retry_on_timeout=False)

    @property
    def enabled(self) -> bool:
        """Whether results are shared through Redis (the local LRU alone is not a fleet cache)."""
        return self._client is not None

    def _call(self, fn: Callable[[redis.Redis], object]) -> object | None:
        if self._client is None or self._breaker.is_open:
            return None
        try:
            result = fn(self._client)
        except (redis.RedisError, OSError) as exc:
            log.debug("cache error: %s", exc)
            self._breaker.failure()
            self._on_error()
            return None
        self._breaker.success()
        return result

    def get(self, key: str) -> bytes | None:
        if self._local is not None and (value := self._local.get(key)) is not None:
            return value
        found = self._call(lambda r: r.get(key))
        if not isinstance(found, bytes):
            return None
        if self._local is not None:
            self._local.put(key, found)
        return found

    def put(self, key: str, value: bytes) -> None:
        if self._local is not None:
            self._local.put(key, value)
        self._call(lambda r: r.set(key, value, ex=self.ttl))

    def acquire(self, key: str) -> str | None:
        """Try to become the one request that computes `key`; returns a token, or None if another is."""
        if not self.enabled or self._breaker.is_open:
            return "local"  # no coordination possible: compute it ourselves
        token = uuid.uuid4().hex
        got = self._call(lambda r: r.set(f"{key}:lock", token, nx=True, px=int(self.lock_ttl * 1000)))
        if got is None and self._breaker.is_open:
            return "local"
        return token if got else None

    def release(self, key: str, token: str) -> None:
        if token == "local":
            return
        # Only delete our own lock: a slow leader must not free a successor's.
        self._call(lambda r: r.eval(_RELEASE_LOCK, 1, f"{key}:lock", token))

    def wait(self, key: str, timeout: float) -> bytes | None:
        """Wait for the leader's result; None when it gave up (lock gone, no result) or Redis failed."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pipe_result = self._call(lambda r: _get_and_exists(r, key, f"{key}:lock"))
            if not isinstance(pipe_result, list):
                return None
            value, locked = pipe_result
            if value is not None:
                return value if isinstance(value, bytes) else None
            if not locked:
                return None
            time.sleep(POLL_SECONDS)
        return None

    def ping(self) -> bool:
        return bool(self._call(lambda r: r.ping()))


def _get_and_exists(client: redis.Redis, key: str, lock: str) -> list[object]:
    """One round trip for the result and whether its leader still holds the lock."""
    pipe = client.pipeline()
    pipe.get(key)
    pipe.exists(lock)
    return list(pipe.execute())
