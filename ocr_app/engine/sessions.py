"""ONNX Runtime sessions of the engine and their memory policy: options, arenas and tight big detections.

No Flask, no rapidocr: engine/rapid.py puts these around the sessions rapidocr runs. Every policy here keeps
the same kernels, so none changes an answer (tests/test_accurate_identity.py checks each against stock).
"""
from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from ocr_app.config import Settings
from ocr_app.engine.allocator import tight_heap, trim
from ocr_app.engine.late_resize import cache_dir, rewritten, verified
from ocr_app.models.profiles import Profile, ProfileError

log = logging.getLogger(__name__)


def stage_options(settings: Settings) -> dict[str, Any]:
    """Each stage's ONNX Runtime options: recognition (and detection, if asked) get an arena of their own."""
    own = {"det": settings.det_arena, "rec": settings.rec_arena, "cls": False}
    return {stage: session_options(settings, arena=not settings.ort_arena and own[stage]) for stage in own}


def session_options(settings: Settings, arena: bool = False) -> Any:
    """ONNX Runtime options chosen for throughput per core and RSS, not rapidocr's defaults."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.intra_op_num_threads = settings.threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    # Without an arena every tensor is a malloc, and a big one a fresh mapping that faults its pages in
    # again on every node. Detection and recognition each get an arena of their own (OCR_DET_ARENA,
    # OCR_REC_ARENA), kept while pages keep coming and emptied when the profile goes idle (ArenaSession,
    # IdleRelease; docs/benchmarks.md). Big detections run on a session without one (TightDetector).
    # OCR_ORT_ARENA=1 instead shares one arena between the worker's sessions, grown by what is asked
    # (kSameAsRequested) and shrunk after every run.
    opts.enable_cpu_mem_arena = settings.ort_arena or arena
    opts.enable_mem_pattern = False  # detection shapes vary per image
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


class ShrinkingSession:
    """An InferenceSession whose runs hand the arena's free memory back when they end."""

    def __init__(self, session: Any) -> None:
        self._session = session
        self._options = _shrink_options()

    def run(self, output_names: Any, input_feed: Any, run_options: Any = None) -> Any:
        return self._session.run(output_names, input_feed, run_options or self._options)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._session, name)


class ArenaSession:
    """A session with an arena of its own, kept from run to run and emptied by `release()` (IdleRelease).

    Shrinking after every run would fault the same memory in again for each batch of lines; keeping it for
    good would hold a dense page's high-water mark in every idle worker. ONNX Runtime shrinks an arena only
    at the end of a run, so `release()` runs the model once on a tiny input with shrinkage on.
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


class Releasable(Protocol):
    """Memory a session keeps between runs and can hand back: an ArenaSession, or an OpenVINO model."""

    def release(self) -> None: ...


class IdleRelease:
    """Empties a profile's own arenas once it has run no page for `after` seconds (0: after every page).

    A busy worker keeps recognition's arena from page to page (cheaper than emptying it after each page);
    a worker that goes idle holds no more than before."""

    def __init__(self, arenas: list[Releasable], lock: threading.Lock, after: float) -> None:
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

    def empty_now(self) -> None:
        """Empty the arenas at once (with the engine lock held): before a big detection, so what a
        stream of dense pages left in them is not added to its peak."""
        self._generation += 1  # a pending timer has nothing left to do
        self._release()


class TightDetector:
    """Detection whose inputs above `pixels` (after the capped resize) run with every freed block of
    1 MiB or more unmapped at once (allocator.tight_heap): preprocessing, the model and post-processing,
    on a session without an arena.

    A big detection otherwise leaves far more RSS than its live tensors in a worker whose heap served other
    pages (docs/benchmarks.md). Same kernels, same answers; more CPU for that one detection."""

    def __init__(self, detector: Any, pixels: int, limit_side: int, max_side: int,
                 tight_session: Any = None, before: Callable[[], None] = lambda: None) -> None:
        self._detector = detector
        self._pixels = pixels
        self._sides = (limit_side, max_side)
        self._tight_session = tight_session  # without an arena, when the detector's own session has one
        self._before = before  # empties the profile's arenas: a busy stream of pages may have filled them

    def __call__(self, img: np.ndarray) -> Any:
        h, w = det_size(img.shape[0], img.shape[1], *self._sides)
        if h * w <= self._pixels:
            return self._detector(img)
        runner = self._detector.session  # rapidocr's wrapper; the engine lock keeps this swap to one page
        usual = runner.session
        if self._tight_session is not None:
            runner.session = self._tight_session
        self._before()
        try:
            with tight_heap():
                return self._detector(img)
        finally:
            runner.session = usual

    def __getattr__(self, name: str) -> Any:
        return getattr(self._detector, name)


def tight_session(model: Path, options: Any, reference: Any, cache: Path | None = None) -> Any:
    """The big detections' session: the model with its upsamples computed late (engine/late_resize.py: a
    lower peak), or the file as it is when the rewrite fails, does not apply or would change `reference`'s
    answer. `cache`: where rewritten models are kept (default `cache_dir()`)."""
    import onnxruntime as ort

    def load(source: Path) -> Any:
        # from a file: a session made from bytes keeps more memory for good
        return ort.InferenceSession(str(source), sess_options=options, providers=["CPUExecutionProvider"])

    def forget(path: Path | None) -> None:
        """A cached rewrite that failed is removed, so the next start makes it again instead of warning."""
        if path is not None:
            with contextlib.suppress(OSError):
                path.unlink()

    path = None
    try:
        path = rewritten(model, cache or cache_dir())
        session = load(path)
    except Exception as exc:  # noqa: BLE001 - RewriteError, an unreadable file, ONNX Runtime refusing the cached one
        forget(path)
        log.warning("%s: big detections run the model as it is (%s)", model.name, exc)
        return load(model)
    if verified(reference, session):
        return session
    forget(path)
    log.warning("%s: the late-upsample rewrite changed the output; big detections run the model as it is",
                model.name)
    return load(model)


def det_size(h: int, w: int, limit_side: int, max_side: int) -> tuple[int, int]:
    """The detection input size: the short side lifted to `limit_side`, the long side never past `max_side`."""
    ratio = min(max(1.0, limit_side / max(1, min(h, w))), max_side / max(h, w))
    return max(32, int(round(h * ratio / 32) * 32)), max(32, int(round(w * ratio / 32) * 32))


def load_sessions(profile: Profile, options: Any) -> dict[str, Any]:
    """One ONNX Runtime session per stage, each loaded exactly once; errors name the file."""
    import onnxruntime as ort

    stages = {"det": profile.det, "rec": profile.rec}
    if profile.cls is not None:
        stages["cls"] = profile.cls
    sessions = {}
    for stage, path in stages.items():
        try:
            # options may differ per stage (a mapping stage -> options, e.g. an arena for detection only)
            stage_options = options.get(stage) if isinstance(options, dict) else options
            if profile.runtime == "openvino" and stage != "cls":
                from ocr_app.engine.openvino import REC_WIDTH_BUCKET, OpenVinoSession

                threads = stage_options.intra_op_num_threads if stage_options is not None else 1
                sessions[stage] = OpenVinoSession(path, profile.precision, threads,
                                                  REC_WIDTH_BUCKET if stage == "rec" else 0)
                continue
            sessions[stage] = ort.InferenceSession(str(path), sess_options=stage_options,
                                                   providers=["CPUExecutionProvider"])
        except ImportError as exc:  # the runtime itself is missing, not the model at fault
            raise ProfileError(f"profile {profile.name!r} runs on {profile.runtime}, which is not installed "
                               f"({exc}); install it or leave {profile.name} out of OCR_PROFILES") from exc
        except Exception as exc:
            raise ProfileError(f"profile {profile.name!r}: {path} does not load as an ONNX model: "
                               f"{str(exc).splitlines()[0][:200]}") from exc
    return sessions
