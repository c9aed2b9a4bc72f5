"""The OCR service of one worker: engine lifecycle, admission control, cache and single-flight.

Flask-free so it can be driven from tests and the bench; api.py only adapts HTTP to it.
"""
from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ocr_app.config import ConfigError, Settings
from ocr_app.documents.images import check_upload, decode_image
from ocr_app.engine.catalog import plan
from ocr_app.engine.factory import build_engines, build_tesseract, tessdata_dir
from ocr_app.engine.orientation import PageOrientation
from ocr_app.engine.rapid import Engine
from ocr_app.engine.tesseract import Tesseract
from ocr_app.errors import NotReady, OcrError, Overloaded, UnknownProfile
from ocr_app.models import cpu
from ocr_app.models.profiles import ProfileError
from ocr_app.ops.metrics import Metrics
from ocr_app.options import PageOptions, parse_lang
from ocr_app.service.cache import ResultCache, image_key
from ocr_app.service.languages import AUTO, NO_JAPANESE, LanguageRouter, Recognizer
from ocr_app.service.reader import PageReader, serialize_lines

log = logging.getLogger(__name__)

# How long a request waits for its worker's engine to load before it gets 503 + Retry-After.
LOAD_WAIT_SECONDS = 30.0


@dataclass(frozen=True)
class Outcome:
    data_json: bytes  # the serialized list of lines, as cached
    cache: str  # HIT | MISS | COALESCED | BYPASS
    cost_time: float
    profile: str = "accurate"
    engine: str = "rapidocr"  # OCR_ENGINE of the instance that answers
    recognizer: dict[str, Any] | None = None  # which language and recognizer read it (service/languages.py)


class Admission:
    """Bounds the OCR jobs one worker holds (1 running + `max_queue` waiting); the rest get 503 at once,
    so the gateway can retry them on another instance instead of letting them pile up here."""

    def __init__(self, max_queue: int) -> None:
        self.limit = max_queue + 1
        self.max_queue = max_queue
        self._count = 0
        self._lock = threading.Lock()

    def __enter__(self) -> Admission:
        with self._lock:
            if self._count >= self.limit:
                raise Overloaded(self.max_queue)
            self._count += 1
        return self

    def __exit__(self, *exc: object) -> None:
        with self._lock:
            self._count -= 1

    @property
    def in_use(self) -> int:
        """Jobs admitted now: running, waiting for a decode slot or for the engine."""
        return self._count


class UploadSlots:
    """Request bodies above `min_bytes` are read only inside one of `slots` (OCR_READ_AHEAD_MB).

    Jobs waiting for a decode slot would each hold their upload; a big body left unread waits in the
    gateway's buffer instead (nginx buffers request bodies, and resends one on another instance if this
    worker is still busy after proxy_send_timeout)."""

    def __init__(self, slots: int, min_bytes: int) -> None:
        self.min_bytes = min_bytes
        self.waiting = 0  # big requests waiting for a slot, their bodies unread
        self._slots = threading.BoundedSemaphore(slots)
        self._count = threading.Lock()

    @contextmanager
    def reading(self, length: int | None) -> Iterator[None]:
        """Hold a slot around a request of `length` body bytes when it is big (None: not limited)."""
        if not self.min_bytes or length is None or length <= self.min_bytes:
            yield
            return
        with self._count:
            self.waiting += 1
        try:
            self._slots.acquire()
        finally:
            with self._count:
                self.waiting -= 1
        try:
            yield
        finally:
            self._slots.release()


class OcrService:
    """One per worker process. The engine loads in the background so /health answers at once."""

    def __init__(self, settings: Settings, metrics: Metrics, cache: ResultCache,
                 engine_factory: Callable[[Settings], Engine | dict[str, Engine]] = build_engines,
                 tesseract_factory: Callable[[Settings], Tesseract | None] = build_tesseract) -> None:
        self.settings = settings
        try:
            self.default_lang = parse_lang(settings.lang)
        except OcrError as exc:
            raise ConfigError(f"OCR_LANG={settings.lang[:64]!r}: {exc.msg}") from None
        # Tesseract loads its languages lazily, on a page's first need: building it here costs nothing.
        self.tesseract = tesseract_factory(settings)
        self.router = LanguageRouter(self.tesseract, tessdata_dir(settings) if self.tesseract else None,
                                     settings.engine)
        self.metrics = metrics
        self.cache = cache
        self.admission = Admission(settings.max_queue)
        # Queued jobs hold only their upload bytes; a decoded image exists only inside a slot.
        self.decode_slots = threading.BoundedSemaphore(settings.decode_slots)
        self.uploads = UploadSlots(settings.decode_slots, settings.read_ahead_bytes)
        self.reader = PageReader(settings)  # the page pipeline, shared with the bench
        self._engine_factory = engine_factory
        self.load_wait = LOAD_WAIT_SECONDS
        self._engine: Engine | None = None  # the default profile's; set once every profile is loaded
        self._engines: dict[str, Engine] = {}
        self._load_error: str | None = None
        self._loaded = threading.Event()
        self._drain_flag = Path(settings.runtime_dir, "draining") if settings.runtime_dir else None
        self._ready_dir = Path(settings.runtime_dir, "ready") if settings.runtime_dir else None

    # lifecycle
    def start(self, background: bool = True) -> None:
        if background:
            threading.Thread(target=self._load, name="engine-loader", daemon=True).start()
        else:
            self._load()

    def _load(self) -> None:
        try:
            cpu.log_decision(self.settings.cpu_flags)
            built = self._engine_factory(self.settings)
            # a factory may build one engine (tests' fakes): it then serves every enabled profile
            engines = built if isinstance(built, dict) else dict.fromkeys(plan(self.settings), built)
            if self.settings.warmup:
                for engine in {id(e): e for e in engines.values()}.values():
                    engine.warm_up()
            self.reader.trim()  # hand back what model loading and the warm-up freed
            self._engines = engines
            self._engine = engines[self.settings.profile]
            if self._ready_dir is not None:
                self._ready_dir.mkdir(parents=True, exist_ok=True)
                (self._ready_dir / str(os.getpid())).touch()
        except Exception as exc:  # reported by /ready; the worker stays up to say why
            self._load_error = str(exc)
            log.exception("OCR engine failed to load")
        finally:
            self._loaded.set()

    @property
    def orientation(self) -> PageOrientation | None:
        """The page orientation classifier (None with OCR_ORIENTATION=off)."""
        return self.reader.orientation

    @property
    def load_error(self) -> str | None:
        return self._load_error

    @property
    def draining(self) -> bool:
        return self._drain_flag is not None and self._drain_flag.exists()

    @property
    def ready(self) -> bool:
        """Ready once every worker of the instance has its engine, so no request meets a cold worker.

        From then on a worker recycled by OCR_MAX_REQUESTS does not make the instance unready (the gateway
        would drop it for nothing): requests that reach the new worker wait for its engine.
        """
        if self.draining or self._load_error:
            return False
        if self._ready_dir is None:
            return self._engine is not None
        warm = self._ready_dir.with_name("warm")  # cleared by the master at start
        if warm.exists():
            return True
        if self._engine is not None and self.ready_workers() >= self.settings.workers:
            warm.touch()
            return True
        return False

    def idle(self) -> bool:
        """Loaded, not draining and running no OCR: the only time a job consumer takes a page."""
        return self._engine is not None and self.admission.in_use == 0 and not self.draining

    def ready_workers(self) -> int:
        """Workers whose engine is loaded: marker files of live processes (the master removes dead ones)."""
        if self._ready_dir is None:
            return int(self._engine is not None)
        if not self._ready_dir.is_dir():  # no worker has loaded yet (the master clears it at start)
            return 0
        count = 0
        for marker in self._ready_dir.iterdir():
            try:
                os.kill(int(marker.name), 0)
                count += 1
            except (ValueError, ProcessLookupError, PermissionError):
                continue
        return count

    # requests
    @property
    def engines(self) -> dict[str, Engine]:
        """The loaded engine of every enabled profile (empty while loading)."""
        return self._engines

    def profile_name(self, requested: str | None) -> str:
        """The profile a request runs: its own choice if enabled, else the instance default."""
        if not requested:
            return self.settings.profile
        if self._engines and requested not in self._engines:
            raise UnknownProfile(requested, list(self._engines))
        return requested

    def describe_profiles(self) -> dict[str, object]:
        """What GET /api/profiles answers: the default and each enabled profile (planned if still loading)."""
        enabled = {name: engine.profile for name, engine in self._engines.items() if hasattr(engine, "profile")}
        if not enabled:
            try:
                enabled = plan(self.settings)
            except ProfileError as exc:
                return {"default": self.settings.profile, "profiles": [], "error": str(exc)}
        return {"default": self.settings.profile, "loaded": bool(self._engines),
                "profiles": [profile.describe() for profile in enabled.values()],
                "cpu": cpu.decide(self.settings.cpu_flags)}

    def ocr(self, data: bytes, bypass_cache: bool = False, page: PageOptions | None = None,
            fmt: str | None = None) -> Outcome:
        """OCR the uploaded bytes, answering from the cache when it can (keyed by the bytes and `page`).

        `fmt` is the image format the caller already sniffed from these bytes (None: sniffed here)."""
        page = page or PageOptions()
        bypass_cache = bypass_cache or page.bypass_cache
        started = time.perf_counter()
        if self._engine is None:  # this worker is still loading (a sibling may already be ready): wait a bit
            self._loaded.wait(self.load_wait)
        if self._engine is None:
            self.metrics.rejections.labels(reason="not_ready").inc()
            if self._load_error:
                raise NotReady(f"the OCR engine failed to load: {self._load_error}")
            raise NotReady()
        name = self.profile_name(page.profile)
        page = self.page_language(page, name)
        engine = self._engines[name]
        fmt = check_upload(data, self.settings, fmt)
        key = self._key(engine, page, data)
        if bypass_cache:
            data_json, chosen = self._run(engine, data, page, fmt)
            self._store(key, data_json, page, chosen)
            return self._outcome(data_json, "BYPASS", started, name, chosen)
        hit = self.lookup(data, started, key, name, page)
        if hit is not None:
            return hit
        token = self.cache.acquire(key)
        if token is None:  # another request is computing this image: wait for its answer
            waited = self.cache.wait(key, self.cache.lock_ttl)
            known = self._cached_recognizer(key, page)
            if waited is not None and known is not None:
                return self._outcome(waited, "COALESCED", started, name, known)
            token = "local"
        try:
            data_json, chosen = self._run(engine, data, page, fmt)
            self._store(key, data_json, page, chosen)
        finally:
            self.cache.release(key, token)
        return self._outcome(data_json, "MISS", started, name, chosen)

    def page_language(self, page: PageOptions, profile: str) -> PageOptions:
        """The page's options with the instance's default language filled in, checked against what this
        instance has installed: a 400 now, before any work, for a missing pack or profile."""
        if not page.lang and self.default_lang:
            page = replace(page, lang=self.default_lang)
        self.router.check(page.lang, page.route, profile)
        return page

    def _key(self, engine: Engine, page: PageOptions, data: bytes) -> str:
        """The cache key: the engine's namespace, the page options, Tesseract's version when it may read."""
        suffix = page.cache_suffix()
        if page.lang and self.tesseract is not None:
            suffix += f":t={self.tesseract.version}"
        return image_key(engine.cache_namespace + suffix, data)

    def _store(self, key: str, data_json: bytes, page: PageOptions, chosen: Recognizer | None) -> None:
        self.cache.put(key, data_json)
        if page.lang == AUTO and chosen is not None:  # what auto chose depends on the image: kept beside it
            self.cache.put(key + ":rec", json.dumps(chosen.to_dict()).encode())

    def _cached_recognizer(self, key: str, page: PageOptions) -> Recognizer | None:
        """The recognizer of a cached answer: fixed by the options, or (lang=auto) stored beside it."""
        if page.lang != AUTO:
            return self.router.planned(page.lang, page.route) or _plain(self)
        raw = self.cache.get(key + ":rec")
        if raw is None:
            return None
        try:
            return Recognizer.from_dict(json.loads(raw))
        except (ValueError, TypeError, AttributeError):
            return None

    def lookup(self, data: bytes, started: float, key: str | None = None,
               profile: str | None = None, page: PageOptions | None = None) -> Outcome | None:
        """The cached answer for these bytes, profile and page options, if any: the whole of a warm request.

        None (so the full path runs and explains) for an unknown profile or while loading."""
        name = profile or self.settings.profile
        engine = self._engines.get(name)
        if engine is None or not data:
            return None
        if page is None:
            page = PageOptions(lang=self.default_lang)
        key = key or self._key(engine, page, data)
        chosen = self._cached_recognizer(key, page)
        if chosen is None:
            return None
        cached = self.cache.get(key)
        return None if cached is None else self._outcome(cached, "HIT", started, name, chosen)

    def _run(self, engine: Engine, data: bytes, page: PageOptions,
             fmt: str | None = None) -> tuple[bytes, Recognizer]:
        # lang=auto on a Japanese page under a profile without Japanese: read by one that has it
        fallback = None
        if self.profile_name(page.profile) in NO_JAPANESE:
            fallback = next((e for n, e in self._engines.items() if n not in NO_JAPANESE), None)
        reading = None
        if page.lang:
            reading = self.router.reading(engine, page.lang, page.route, page.words, fallback)
        try:
            with self.admission, self.decode_slots:
                image = decode_image(data, self.settings, fmt)
                result = self.reader.read(engine, image, words=page.words, reading=reading)
                del image  # free the pixels before the slot opens for the next job
        except Overloaded:
            self.metrics.rejections.labels(reason="queue_full").inc()
            raise
        finally:
            self.reader.trim()
        self.metrics.inference.observe(result.elapsed)
        self.metrics.engine_runs.inc()
        chosen = reading.chosen if reading is not None and reading.chosen is not None else _plain(self)
        return serialize_lines(result), chosen

    def describe_languages(self) -> dict[str, Any]:
        """What GET /api/languages answers."""
        return self.router.describe(self.default_lang)

    def _outcome(self, data_json: bytes, cache: str, started: float, profile: str,
                 chosen: Recognizer | None = None) -> Outcome:
        self.metrics.cache.labels(result=cache.lower()).inc()
        return Outcome(data_json=data_json, cache=cache, cost_time=time.perf_counter() - started, profile=profile,
                       engine=self.settings.engine, recognizer=(chosen or _plain(self)).to_dict())


def _plain(service: OcrService) -> Recognizer:
    """The recognizer of a page read with no lang: the profile's PP-OCR, as before languages."""
    return Recognizer(None, service.settings.engine, "ppocr")

