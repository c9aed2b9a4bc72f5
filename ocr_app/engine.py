"""The OCR engine: PP-OCR det/cls/rec ONNX models from the rapidocr wheel, loaded once per process.

No Flask here. The engine never touches the network: every model path is explicit and
points inside the installed rapidocr package.
"""
from __future__ import annotations

import copy
import hashlib
import logging
import threading
import time
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from .allocator import tight_heap, trim
from .config import Settings
from .pipeline import PIPELINE_VERSION as PIPELINE_VERSION  # part of the cache key (registry.py too)
from .profiles import Profile, ProfileError, accurate_profile, load_sessions, plan, sha256_file, validate

log = logging.getLogger(__name__)


class EngineError(RuntimeError):
    """The models could not be loaded or run."""


@dataclass(frozen=True)
class Word:
    text: str
    confidence: float
    box: list[list[float]]


@dataclass(frozen=True)
class Line:
    text: str
    confidence: float
    box: list[list[float]]
    words: list[Word] | None = None  # only when the request asked for word boxes

    def to_dict(self) -> dict[str, Any]:
        item: dict[str, Any] = {"text": self.text, "confidence": self.confidence, "box": self.box}
        if self.words is not None:
            item["words"] = [{"text": w.text, "confidence": w.confidence, "box": w.box} for w in self.words]
        return item


@dataclass(frozen=True)
class OcrResult:
    lines: list[Line] = field(default_factory=list)
    elapsed: float = 0.0


def profile_digest(profile: Profile) -> str:
    """A short digest of the model bytes and settings, so a model change never serves stale cache entries."""
    h = hashlib.sha256(f"{profile.name}|{sorted(profile.det_params.items())}".encode())
    for path in profile.files():
        h.update(_digest_file(path).encode())
    return h.hexdigest()[:16]


@lru_cache(maxsize=16)
def _digest_file(path: Path) -> str:
    return sha256_file(path)


def _stage_options(settings: Settings) -> dict[str, Any]:
    """Each stage's ONNX Runtime options: recognition (and detection, if asked) get an arena of their own."""
    own = {"det": settings.det_arena, "rec": settings.rec_arena, "cls": False}
    return {stage: _session_options(settings, arena=not settings.ort_arena and own[stage]) for stage in own}


def _session_options(settings: Settings, arena: bool = False) -> Any:
    """ONNX Runtime options chosen for throughput per core and RSS, not rapidocr's defaults."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.intra_op_num_threads = settings.threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    # Without an arena every tensor is a malloc, and a big one a fresh mapping that faults its pages in
    # again on every node. Recognition runs a page as batches of lines whose tensors are nearly the same
    # size, so its own arena (OCR_REC_ARENA, kept through a job, emptied when the job ends: _ArenaSession)
    # pays most: 10-15% of the CPU of a dense page (docs/benchmarks.md). Detection's arena (OCR_DET_ARENA)
    # gains ~3% and keeps ~30 MiB after the warm-up; big detections are bounded by tight_heap instead.
    # OCR_ORT_ARENA=1 instead shares one arena between the worker's sessions, grown by what is asked
    # (kSameAsRequested) and shrunk after every run (_ShrinkingSession).
    opts.enable_cpu_mem_arena = settings.ort_arena or arena
    opts.enable_mem_pattern = False  # measured: no gain, and detection shapes vary per image
    if settings.ort_arena:
        _shared_cpu_arena()
        opts.add_session_config_entry("session.use_env_allocators", "1")
    # Spinning threads burn the core a sibling instance needs.
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    opts.add_session_config_entry("session.inter_op.allow_spinning", "0")
    return opts


@lru_cache(maxsize=1)
def _shared_cpu_arena() -> bool:
    """Register the worker's one CPU arena with ONNX Runtime (once per process, after fork)."""
    import onnxruntime as ort

    info = ort.OrtMemoryInfo("Cpu", ort.OrtAllocatorType.ORT_ARENA_ALLOCATOR, 0, ort.OrtMemType.DEFAULT)
    # max_mem 0 (no cap: a cap fails the run instead of bounding it), extend strategy 1 = kSameAsRequested
    ort.create_and_register_allocator(info, ort.OrtArenaCfg(0, 1, -1, -1))
    return True


def _shrink_options() -> Any:
    import onnxruntime as ort

    options = ort.RunOptions()
    options.add_run_config_entry("memory.enable_memory_arena_shrinkage", "cpu:0")
    return options


class _ShrinkingSession:
    """An InferenceSession whose runs hand the arena's free memory back when they end."""

    def __init__(self, session: Any) -> None:
        self._session = session
        self._options = _shrink_options()

    def run(self, output_names: Any, input_feed: Any, run_options: Any = None) -> Any:
        return self._session.run(output_names, input_feed, run_options or self._options)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._session, name)


class _ArenaSession:
    """A session with an arena of its own, kept from run to run and emptied by `release()` (_IdleRelease).

    Shrinking after every run would map and fault the same memory in again for each batch of lines
    (measured: 8% more CPU on a dense page); keeping it for good would hold a dense page's high-water
    mark (~190 MiB) in every idle worker. ONNX Runtime shrinks an arena only at the end of a run, so
    `release()` runs the model once on a tiny input with shrinkage on.
    """

    def __init__(self, session: Any) -> None:
        self._session = session
        self._options = _shrink_options()
        inputs = session.get_inputs()
        # fixed dims as the model says; the batch 1; any other free dim 32 (one detection/recognition cell)
        self._tiny = {i.name: np.zeros([d if isinstance(d, int) else (1 if k == 0 else 32)
                                        for k, d in enumerate(i.shape)], dtype=np.float32) for i in inputs}

    def run(self, output_names: Any, input_feed: Any, run_options: Any = None) -> Any:
        return self._session.run(output_names, input_feed, run_options)

    def release(self) -> None:
        self._session.run(None, self._tiny, self._options)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._session, name)


class _IdleRelease:
    """Empties a profile's own arenas once it has run no page for `after` seconds (0: after every page).

    A busy worker keeps recognition's arena from page to page (measured 5-10% less CPU than emptying it
    after each page); a worker that goes idle holds no more than before."""

    def __init__(self, arenas: list[_ArenaSession], lock: threading.Lock, after: float) -> None:
        self._arenas = arenas
        self._lock = lock
        self._after = after
        self._generation = 0

    def page_done(self) -> None:
        """Call with the worker's engine lock held, after each page."""
        if not self._arenas:
            return
        if self._after <= 0:
            self._release()
            return
        self._generation += 1
        timer = threading.Timer(self._after, self._expire, (self._generation,))
        timer.daemon = True
        timer.start()

    def _expire(self, generation: int) -> None:
        with self._lock:
            if generation == self._generation:  # no page ran since this timer was set
                self._release()
                trim()  # the arena's smaller regions went back to the heap: hand them to the OS too

    def _release(self) -> None:
        for arena in self._arenas:
            arena.release()


class _TightDetector:
    """Detection whose inputs above `pixels` (after the capped resize) run with every freed block of
    1 MiB or more unmapped at once (allocator.tight_heap): preprocessing, the model and post-processing,
    on a session without an arena.

    At the 1600 px cap detection holds ~290 MiB of live tensors, but left 530-640 MiB of RSS in a worker
    whose heap had served other pages before, and an arena ~440 MiB (measured). Same kernels, same answers;
    ~30% more CPU for that one detection."""

    def __init__(self, detector: Any, pixels: int, limit_side: int, max_side: int,
                 tight_session: Any = None) -> None:
        self._detector = detector
        self._pixels = pixels
        self._sides = (limit_side, max_side)
        self._tight_session = tight_session  # without an arena, when the detector's own session has one

    def __call__(self, img: np.ndarray) -> Any:
        h, w = _det_size(img.shape[0], img.shape[1], *self._sides)
        if h * w <= self._pixels:
            return self._detector(img)
        runner = self._detector.session  # rapidocr's wrapper; the engine lock keeps this swap to one page
        usual = runner.session
        if self._tight_session is not None:
            runner.session = self._tight_session
        try:
            with tight_heap():
                return self._detector(img)
        finally:
            runner.session = usual

    def __getattr__(self, name: str) -> Any:
        return getattr(self._detector, name)


def _det_size(h: int, w: int, limit_side: int, max_side: int) -> tuple[int, int]:
    """The detection input size: the short side lifted to `limit_side`, the long side never past `max_side`."""
    ratio = min(max(1.0, limit_side / max(1, min(h, w))), max_side / max(h, w))
    return max(32, int(round(h * ratio / 32) * 32)), max(32, int(round(w * ratio / 32) * 32))


def _capped_preprocess(base: Any, limit_side: int, max_side: int) -> Any:
    """Detection resize that lifts the short side to `limit_side` but never the long side past `max_side`.

    rapidocr's stock 'min' rule blows a 709x132 strip up to 3950x736 (430 MB measured); capping the
    long side keeps memory and time bounded while small text in normal photos still gets upscaled.
    """

    class CappedDetPreProcess(base):
        def resize(self, img: np.ndarray) -> np.ndarray | None:
            resize_h, resize_w = _det_size(img.shape[0], img.shape[1], limit_side, max_side)
            return cv2.resize(img, (resize_w, resize_h))

    return CappedDetPreProcess


class Engine:
    """One profile's PP-OCR pipeline. Build one per process (after fork); calls are serialized by a lock,
    shared by every engine of the worker so that one OCR job runs at a time whatever its profile."""

    def __init__(self, settings: Settings, profile: Profile | None = None,
                 lock: threading.Lock | None = None) -> None:
        self.settings = settings
        self.profile = profile or accurate_profile()
        self._lock = lock or threading.Lock()
        cv2.setNumThreads(1)
        started = time.perf_counter()
        self._ocr = self._build()
        self._ocr_words = self._with_word_boxes(self._ocr)
        log.info("engine %r loaded in %.2fs (%s; threads=%d, arena=%s)", self.profile.name,
                 time.perf_counter() - started, self.profile.models, settings.threads, settings.ort_arena)

    @property
    def cache_namespace(self) -> str:
        """What besides the image bytes decides the answer: profile, models, pipeline, detection limits and
        page orientation (OCR_ORIENTATION)."""
        s = self.settings
        return (f"{self.profile.name}:{profile_digest(self.profile)}:p{PIPELINE_VERSION}"
                f":d{s.det_limit_side}-{s.det_max_side}:o{s.orientation}")

    def _build(self) -> Any:
        profile, s = self.profile, self.settings
        try:
            # Each model loads once, with our options, and is checked before rapidocr sees it.
            sessions = validate(profile, load_sessions(profile, _stage_options(s)))
        except ProfileError as exc:
            raise EngineError(str(exc)) from exc
        try:
            from rapidocr import RapidOCR
            from rapidocr.ch_ppocr_det.utils import DetPreProcess

            params: dict[str, Any] = {
                "Global.log_level": "error",  # its own colored handler; "no text found" is not a warning
                "Global.use_cls": profile.cls is not None,
                "Det.model_path": str(profile.det),
                "Rec.model_path": str(profile.rec),
                "EngineConfig.onnxruntime.intra_op_num_threads": s.threads,
                "EngineConfig.onnxruntime.inter_op_num_threads": 1,
                "EngineConfig.onnxruntime.enable_cpu_mem_arena": s.ort_arena,
            }
            if profile.cls is not None:
                params["Cls.model_path"] = str(profile.cls)
            if profile.rec_dict is not None:
                params["Rec.rec_keys_path"] = str(profile.rec_dict)
            params.update({f"Det.{key}": value for key, value in profile.det_params.items()})
            ocr = RapidOCR(params=params)
            # Hand rapidocr the sessions built above (its "session" hook), then load the stages now
            # rather than lazily on the first request.
            for stage, section in (("det", ocr.cfg.Det), ("cls", ocr.cfg.Cls), ("rec", ocr.cfg.Rec)):
                if stage in sessions:
                    section._set_flag("allow_objects", True)
                    section.session = sessions[stage]
            ocr._load_det_model()
            if profile.cls is not None:
                ocr._load_cls_model()
            ocr._load_rec_model()
            det: Any = ocr.text_det
            capped = _capped_preprocess(DetPreProcess, s.det_limit_side, s.det_max_side)
            det.get_preprocess = lambda: capped(det.limit_side_len, det.limit_type, det.mean, det.std)
            self._idle = _IdleRelease(self._wrap_sessions(ocr), self._lock, s.arena_idle_seconds)
            return ocr
        except Exception as exc:  # a broken install must fail loudly at start-up, not per request
            raise EngineError(f"could not load the OCR models of profile {profile.name!r}: {exc}") from exc

    def _wrap_sessions(self, ocr: Any) -> list[_ArenaSession]:
        """Put each stage's arena policy around its session; returns the arenas to empty after a job."""
        s = self.settings
        stages = {"det": ocr.text_det, "cls": ocr.text_cls, "rec": ocr.text_rec}
        arenas: list[_ArenaSession] = []
        for name, stage in stages.items():
            if stage is None:
                continue
            if s.ort_arena:
                stage.session.session = _ShrinkingSession(stage.session.session)
            elif {"det": s.det_arena, "rec": s.rec_arena}.get(name, False):
                stage.session.session = _ArenaSession(stage.session.session)
                arenas.append(stage.session.session)
        if s.det_tight_pixels and not s.ort_arena:
            tight = None
            if s.det_arena:  # an arena's high-water mark is what a big detection must not leave: a second
                import onnxruntime as ort  # session of the model without one runs the big inputs

                tight = ort.InferenceSession(str(self.profile.det), sess_options=_session_options(s),
                                             providers=["CPUExecutionProvider"])
            ocr.text_det = _TightDetector(ocr.text_det, s.det_tight_pixels, s.det_limit_side, s.det_max_side,
                                          tight)
        return arenas

    @staticmethod
    def _with_word_boxes(ocr: Any) -> Any:
        """A second pipeline object that returns word boxes: a shallow copy, so it shares the loaded models
        and every other setting.

        Word boxes are a per-request choice; passing it to RapidOCR's __call__ would write it into the
        shared pipeline (STYLE rule 3), so each choice gets its own fixed pipeline instead.
        """
        words = copy.copy(ocr)
        words.return_word_box = True
        return words

    def recognize(self, bgr: np.ndarray, words: bool = False) -> OcrResult:
        """OCR one BGR image. Never pass per-request options to RapidOCR: they stick to the engine."""
        started = time.perf_counter()
        split = words
        with self._lock:
            try:
                out = self._ocr_words(bgr) if words else self._ocr(bgr)
            except IndexError:  # rapidocr's word lists can fall out of step with its lines: keep the lines
                if not words:
                    raise
                out, split = self._ocr(bgr), False
            finally:
                self._idle.page_done()
        lines: list[Line] = []
        if out is not None and getattr(out, "txts", None) and getattr(out, "boxes", None) is not None:
            per_line = _word_results(out) if split else ([[] for _ in out.txts] if words else None)
            for i, (box, text, score) in enumerate(zip(out.boxes, out.txts, out.scores, strict=False)):
                lines.append(Line(
                    text=str(text),
                    confidence=round(float(score), 4),
                    box=_points(box),
                    words=None if per_line is None else per_line[i],
                ))
        return OcrResult(lines=lines, elapsed=time.perf_counter() - started)

    def warm_up(self) -> OcrResult:
        """Run one OCR on a tiny synthetic image so the first real request doesn't pay for graph set-up."""
        img = np.full((64, 256, 3), 255, dtype=np.uint8)
        cv2.putText(img, "WARM UP", (8, 44), cv2.FONT_HERSHEY_SIMPLEX, 1.2, (0, 0, 0), 2)
        return self.recognize(img)


def build_engines(settings: Settings) -> dict[str, Engine]:
    """One engine per enabled profile, sharing the worker's lock; the default profile first."""
    try:
        enabled = plan(settings)
    except ProfileError as exc:
        raise EngineError(str(exc)) from exc
    lock = threading.Lock()
    order = [settings.profile] + [name for name in enabled if name != settings.profile]
    return {name: Engine(settings, enabled[name], lock) for name in order}


def _points(box: Any) -> list[list[float]]:
    return [[round(float(x), 1), round(float(y), 1)] for x, y in np.asarray(box).tolist()]


def _word_results(out: Any) -> list[list[Word]]:
    """rapidocr's word boxes, one list per line; a line it could not split keeps an empty list.

    rapidocr drops the word list of a line without word boxes, which shifts the rest: when the counts
    differ, every line gets an empty list rather than another line's words.
    """
    found = list(getattr(out, "word_results", None) or ())
    if len(found) != len(out.txts):
        return [[] for _ in out.txts]
    return [[Word(text=str(text), confidence=round(float(score), 4), box=_points(box))
             for text, score, box in line] for line in found]
