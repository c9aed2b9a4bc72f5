"""The Redis cache against a real server: TTL, single-flight locks, and degrading when Redis is gone."""
from __future__ import annotations

import threading
import time
from pathlib import Path

import redis
from helpers import Proc, free_port, start_redis

from ocr_app.service.cache import Breaker, ResultCache, image_key


def make(url: str, errors: list[int] | None = None) -> ResultCache:
    return ResultCache(url, ttl=60, timeout=0.2, lock_ttl=5.0,
                       on_error=lambda: errors.append(1) if errors is not None else None)


def test_keys_are_versioned_by_namespace_and_content() -> None:
    assert image_key("m1:p1", b"a") != image_key("m2:p1", b"a") != image_key("m1:p1", b"b")
    assert image_key("ns", b"a").startswith("ocr:v1:ns:")


def test_put_get_and_ttl(redis_server: Proc) -> None:
    cache = make(str(redis_server.extra["url"]))
    cache.put("ocr:test:ttl", b"[]")
    assert cache.get("ocr:test:ttl") == b"[]"
    redis_client = redis.Redis.from_url(str(redis_server.extra["url"]))
    assert 0 < int(redis_client.ttl("ocr:test:ttl")) <= 60


def test_single_flight_one_leader_and_waiters_get_its_result(redis_server: Proc) -> None:
    cache = make(str(redis_server.extra["url"]))
    key = f"ocr:test:sf:{time.time()}"
    token = cache.acquire(key)
    assert token and token != "local"
    assert cache.acquire(key) is None, "a second request must wait, not compute"
    got: list[bytes | None] = []
    waiter = threading.Thread(target=lambda: got.append(cache.wait(key, 5)))
    waiter.start()
    cache.put(key, b'[{"text":"x"}]')
    cache.release(key, token)
    waiter.join(5)
    assert got == [b'[{"text":"x"}]']


def test_waiter_gives_up_when_the_leader_fails(redis_server: Proc) -> None:
    cache = make(str(redis_server.extra["url"]))
    key = f"ocr:test:fail:{time.time()}"
    token = cache.acquire(key)
    assert token
    threading.Timer(0.2, cache.release, (key, token)).start()
    started = time.monotonic()
    assert cache.wait(key, 5) is None
    assert time.monotonic() - started < 4, "the waiter notices the lock is gone instead of timing out"


def test_release_only_frees_our_own_lock(redis_server: Proc) -> None:
    cache = make(str(redis_server.extra["url"]))
    key = f"ocr:test:own:{time.time()}"
    token = cache.acquire(key)
    assert token
    cache.release(key, "someone-else")
    assert cache.acquire(key) is None


def test_redis_down_degrades_to_no_cache(tmp_path: Path) -> None:
    redis = start_redis(tmp_path / "redis")
    errors: list[int] = []
    cache = make(str(redis.extra["url"]), errors)
    assert cache.ping()
    redis.stop()
    assert cache.get("k") is None
    cache.put("k", b"v")
    assert cache.acquire("k") == "local", "without Redis every request computes for itself"
    assert errors, "failures are reported for the metrics"
    calls_before = len(errors)
    for _ in range(20):
        cache.get("k")
    assert len(errors) == calls_before, "the open breaker stops calls to a dead Redis"


def test_unreachable_redis_answers_quickly() -> None:
    cache = make(f"redis://127.0.0.1:{free_port()}/0")
    started = time.monotonic()
    assert cache.get("k") is None
    assert time.monotonic() - started < 2


def test_breaker_backs_off_and_recovers() -> None:
    now = [0.0]
    breaker = Breaker(base_open=1.0, max_open=4.0, clock=lambda: now[0])
    breaker.failure()
    assert breaker.is_open
    now[0] = 1.1
    assert not breaker.is_open
    breaker.failure()
    now[0] = 2.5
    assert breaker.is_open, "the second pause is twice as long"
    now[0] = 3.2
    breaker.success()
    breaker.failure()
    now[0] = 4.3
    assert not breaker.is_open, "success resets the pause"


def test_local_lru_is_bounded_by_bytes_and_expires() -> None:
    from ocr_app.service.cache import LocalCache

    now = [0.0]
    lru = LocalCache(max_bytes=100, ttl=10, clock=lambda: now[0])
    for i in range(10):
        lru.put(f"k{i}", b"x" * 12)
    assert lru.get("k0") is None and lru.get("k9") == b"x" * 12, "oldest entries go first"
    lru.put("huge", b"y" * 50)
    assert lru.get("huge") is None, "an entry over 1/8 of the budget is not kept"
    now[0] = 11
    assert lru.get("k9") is None, "entries expire with the Redis TTL"


def test_local_layer_answers_without_redis(redis_server: Proc) -> None:
    cache = ResultCache(str(redis_server.extra["url"]), ttl=60, timeout=0.2, lock_ttl=5.0, local_bytes=1 << 20)
    key = f"ocr:test:local:{time.time()}"
    cache.put(key, b"[1]")
    redis.Redis.from_url(str(redis_server.extra["url"])).delete(key)
    assert cache.get(key) == b"[1]"
