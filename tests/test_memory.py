"""Bounded memory under hostile images: 36 MP noisy JPEGs at a real instance (quick version of the bench).

The engine's own working set for its largest input is fixed by the model and the allocator; what the
instance must guarantee is that big uploads and concurrency add no more than one decoded image to it.
"""
from __future__ import annotations

import io
import threading
import weakref
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import requests
from helpers import Proc, start_instance, worker_pids
from PIL import Image

from bench.bigimage import PeakRss, noisy_jpeg
from ocr_app.config import Settings
from ocr_app.documents.images import WORK_MAX_SIDE
from ocr_app.ops.metrics import Metrics
from ocr_app.results import Line, OcrResult
from ocr_app.service.cache import ResultCache
from ocr_app.service.ocr_service import OcrService

SIDE = 6000
CONCURRENT = 4
# The measured peak of four concurrent 36 MP uploads on one worker, plus room for a loaded machine
# (docs/api.md, "Memory").
PEAK_BOUND_MIB = 680


@pytest.fixture(scope="module")
def big_jpeg() -> bytes:
    """A 36 MP JPEG of noise with a few text bands: ~19 MB, the worst a phone-sized limit lets through."""
    return noisy_jpeg(7, SIDE)


@pytest.fixture(scope="module")
def one_worker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proc]:
    proc = start_instance(tmp_path_factory.mktemp("memory"), extra_env={
        "OCR_WORKERS": "1", "OCR_MAX_UPLOAD_MB": "32", "OCR_REDIS_URL": "", "OCR_CONSUL_ADDR": ""})
    yield proc
    proc.stop()


def post_big(instance: Proc, data: bytes) -> requests.Response:
    # no-cache: every request runs the model (the same bytes would otherwise be answered from the cache)
    return requests.post(f"{instance.extra['url']}/api/ocr", data=data, timeout=300,
                         headers={"Content-Type": "image/jpeg", "Cache-Control": "no-cache"})


class CountedSlots:
    """The service's decode slots, counting the jobs that wait for one."""

    def __init__(self, slots: threading.BoundedSemaphore, changed: threading.Condition) -> None:
        self._slots = slots
        self._changed = changed
        self.waiting = 0

    def __enter__(self) -> None:
        with self._changed:
            self.waiting += 1
            self._changed.notify_all()
        self._slots.acquire()
        with self._changed:
            self.waiting -= 1
            self._changed.notify_all()

    def __exit__(self, *exc: object) -> None:
        self._slots.release()


class SlowEngine:
    """Stands in for the engine to observe the service: how many decoded images are alive at once.

    Each call holds its image until every other job is done or waits for a decode slot (or a generous
    timeout), so any job the slots failed to stop reaches its decode and shows up while it is held."""

    cache_namespace = "slow"

    def __init__(self, jobs: int) -> None:
        self.jobs = jobs
        self.alive = 0
        self.most_alive = 0
        self.holding = 0  # calls inside recognize
        self.returned = 0
        self.changed = threading.Condition()
        self.slots: CountedSlots | None = None

    def _gone(self) -> None:
        with self.changed:
            self.alive -= 1
            self.changed.notify_all()

    def _others_settled(self) -> bool:
        waiting = self.slots.waiting if self.slots is not None else 0
        return self.returned + self.holding + waiting >= self.jobs

    def recognize(self, bgr: np.ndarray) -> OcrResult:
        with self.changed:
            self.alive += 1
            self.holding += 1
            self.most_alive = max(self.most_alive, self.alive)
            self.changed.notify_all()
            self.changed.wait_for(self._others_settled, timeout=30)
            self.holding -= 1
            self.returned += 1
            self.changed.notify_all()
        weakref.finalize(bgr, self._gone)
        return OcrResult(lines=[Line(text="x", confidence=1.0, box=[[0, 0], [1, 0], [1, 1], [0, 1]])])


@pytest.mark.parametrize("slots", [1, 2])
def test_decode_slots_bound_the_decoded_images_a_worker_holds(slots: int) -> None:
    settings = Settings.from_env({}, decode_slots=slots, redis_url="", warmup=False)
    engine = SlowEngine(jobs=8)
    service = OcrService(settings, Metrics(), ResultCache("", ttl=60, timeout=0.1, lock_ttl=5.0),
                         engine_factory=lambda _: engine)  # type: ignore[arg-type,return-value]
    service.start(background=False)
    engine.slots = CountedSlots(service.decode_slots, engine.changed)
    service.decode_slots = engine.slots  # type: ignore[assignment]
    buf = io.BytesIO()
    Image.new("RGB", (3000, 3000), "white").save(buf, "JPEG")
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda _: service.ocr(buf.getvalue(), bypass_cache=True).data_json, range(8)))
    assert len(answers) == 8 and all(b'"text":"x"' in a for a in answers)
    assert engine.most_alive == slots, f"{engine.most_alive} decoded images alive at once with {slots} slot(s)"
    assert engine.alive == 0, "every decoded image is freed once its job is done"


def test_concurrent_36mp_jpegs_stay_bounded_and_answer(one_worker: Proc, big_jpeg: bytes) -> None:
    workers = worker_pids(one_worker.pid)
    resp = post_big(one_worker, big_jpeg)
    assert resp.status_code == 200, resp.text
    found = " ".join(line["text"] for line in resp.json()["data"])
    assert "HOSTILE" in found and "LINE" in found, found
    boxes = [p for line in resp.json()["data"] for p in line["box"]]
    assert max(x for x, _ in boxes) > WORK_MAX_SIDE, "boxes come back in the 6000 px image's coordinates"

    with PeakRss(workers) as together, ThreadPoolExecutor(CONCURRENT) as pool:
        answers = list(pool.map(lambda _: post_big(one_worker, big_jpeg), range(CONCURRENT)))
    assert [r.status_code for r in answers] == [200] * CONCURRENT
    assert all(r.json()["data"] == resp.json()["data"] for r in answers)
    assert worker_pids(one_worker.pid) == workers, "no worker died or was replaced"
    assert together.max_mib <= PEAK_BOUND_MIB, (
        f"{CONCURRENT} concurrent 36 MP uploads peaked at {together.max_mib:.0f} MiB (bound {PEAK_BOUND_MIB})")

