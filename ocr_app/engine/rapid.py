"""The OCR engine: PP-OCR det/cls/rec ONNX models from the rapidocr wheel, loaded once per process.

No Flask here. The engine never touches the network: every model path is explicit and
points inside the installed rapidocr package.
"""
from __future__ import annotations

import copy
import logging
import threading
import time
from typing import Any

import cv2
import numpy as np

from ocr_app.config import Settings
from ocr_app.engine.base import EngineError, warm_up_image
from ocr_app.engine.sessions import (
    ArenaSession,
    IdleRelease,
    Releasable,
    ShrinkingSession,
    TightDetector,
    det_size,
    load_sessions,
    session_options,
    stage_options,
    tight_session,
)
from ocr_app.models.digests import cache_namespace
from ocr_app.models.profiles import Profile, ProfileError, accurate_profile, validate
from ocr_app.results import Line, OcrResult, Word, points

log = logging.getLogger(__name__)


# Rows of the detection input normalized at once: rapidocr's float64 arithmetic on a band, not on two
# float64 copies of the whole input.
NORMALIZE_PIXELS = 128 * 1024


def capped_preprocess(base: Any, limit_side: int, max_side: int) -> Any:
    """Detection resize that lifts the short side to `limit_side` but never the long side past `max_side`.

    rapidocr's stock 'min' rule blows a long strip up to thousands of pixels; capping the long side keeps
    memory and time bounded while small text in normal photos still gets upscaled.
    """

    class CappedDetPreProcess(base):
        def resize(self, img: np.ndarray) -> np.ndarray | None:
            resize_h, resize_w = det_size(img.shape[0], img.shape[1], limit_side, max_side)
            return cv2.resize(img, (resize_w, resize_h))

        def __call__(self, img: np.ndarray) -> np.ndarray | None:
            """rapidocr's normalization to the value, written into a C-ordered tensor band by band.

            Its own ends in a transposed (non-contiguous) array, which ONNX Runtime's binding copies
            again for the run."""
            resized = self.resize(img)
            if resized is None:
                return None
            height, width = resized.shape[:2]
            out = np.empty((1, 3, height, width), dtype=np.float32)
            band = max(1, NORMALIZE_PIXELS // max(1, width))
            for top in range(0, height, band):
                rows = self.normalize(resized[top:top + band])  # float64, as rapidocr computes it
                out[0, :, top:top + band] = rows.transpose(2, 0, 1)  # the same cast as its astype(float32)
            return out

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
        self._ocr_boxes = self._boxes_only(self._ocr)
        log.info("engine %r loaded in %.2fs (%s; %s %s; threads=%d, arena=%s)", self.profile.name,
                 time.perf_counter() - started, self.profile.models, self.profile.runtime, self.profile.precision,
                 settings.threads, settings.ort_arena)

    @property
    def cache_namespace(self) -> str:
        """What besides the image bytes decides the answer: profile, models, pipeline, detection limits and
        page orientation (OCR_ORIENTATION)."""
        return cache_namespace(self.profile, self.settings)

    def _build(self) -> Any:
        profile, s = self.profile, self.settings
        try:
            # Each model loads once, with our options, and is checked before rapidocr sees it.
            sessions = validate(profile, load_sessions(profile, stage_options(s)))
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
            params.update({f"Rec.{key}": value for key, value in profile.rec_params.items()})
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
            capped = capped_preprocess(DetPreProcess, s.det_limit_side, s.det_max_side)
            det.get_preprocess = lambda: capped(det.limit_side_len, det.limit_type, det.mean, det.std)
            self._idle = IdleRelease(self._wrap_sessions(ocr), self._lock, s.arena_idle_seconds)
            return ocr
        except Exception as exc:  # a broken install must fail loudly at start-up, not per request
            raise EngineError(f"could not load the OCR models of profile {profile.name!r}: {exc}") from exc

    def _wrap_sessions(self, ocr: Any) -> list[Releasable]:
        """Put each stage's arena policy around its session; returns the arenas to empty after a job."""
        s = self.settings
        stages = {"det": ocr.text_det, "cls": ocr.text_cls, "rec": ocr.text_rec}
        arenas: list[Releasable] = []
        # OpenVINO's compiled models (balanced) keep their buffers like an arena: emptied when idle too
        openvino = {"det", "rec"} if self.profile.runtime == "openvino" else set()
        for name, stage in stages.items():
            if stage is None:
                continue
            if name in openvino:
                arenas.append(stage.session.session)
                continue
            if s.ort_arena:
                stage.session.session = ShrinkingSession(stage.session.session)
            elif {"det": s.det_arena, "rec": s.rec_arena}.get(name, False):
                stage.session.session = ArenaSession(stage.session.session)
                arenas.append(stage.session.session)
        if s.det_tight_pixels and not s.ort_arena:
            tight = None
            # an arena's high-water mark is what a big detection must not leave: a second session of the
            # model without one runs the big inputs (not for OpenVINO's detection, which has no arena)
            if s.det_arena and "det" not in openvino:
                tight = tight_session(self.profile.det, session_options(s), ocr.text_det.session.session)
            ocr.text_det = TightDetector(ocr.text_det, s.det_tight_pixels, s.det_limit_side, s.det_max_side,
                                         tight, before=lambda: self._idle.empty_now())
        return arenas

    @staticmethod
    def _with_word_boxes(ocr: Any) -> Any:
        """A second pipeline object that returns word boxes: a shallow copy, so it shares the loaded models
        and every other setting.

        Word boxes are a per-request choice; passing it to RapidOCR's __call__ would write it into the
        pipeline every thread shares (its __call__ rewrites self.cfg), so each choice gets its own fixed
        pipeline instead: per-request options stay arguments, never shared state.
        """
        words = copy.copy(ocr)
        words.return_word_box = True
        return words

    @staticmethod
    def _boxes_only(ocr: Any) -> Any:
        """A third fixed pipeline that stops after detection: the lines route reads its crops with Tesseract."""
        boxes = copy.copy(ocr)
        boxes.use_cls, boxes.use_rec = False, False
        return boxes

    def detect(self, bgr: np.ndarray) -> list[list[list[float]]]:
        """The line boxes PP-OCR's detector finds (four corners each, in the image's pixels), unread."""
        with self._lock:
            try:
                out = self._ocr_boxes(bgr)
            finally:
                self._idle.page_done()
        found = getattr(out, "boxes", None)
        return [] if found is None else [points(box) for box in found]

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
                    box=points(box),
                    words=None if per_line is None else per_line[i],
                ))
        return OcrResult(lines=lines, elapsed=time.perf_counter() - started)

    def warm_up(self) -> OcrResult:
        """Run one OCR on a tiny synthetic image so the first real request doesn't pay for graph set-up."""
        return self.recognize(warm_up_image())


def _word_results(out: Any) -> list[list[Word]]:
    """rapidocr's word boxes, one list per line; a line it could not split keeps an empty list.

    rapidocr drops the word list of a line without word boxes, which shifts the rest: when the counts
    differ, every line gets an empty list rather than another line's words.
    """
    found = list(getattr(out, "word_results", None) or ())
    if len(found) != len(out.txts):
        return [[] for _ in out.txts]
    return [[Word(text=str(text), confidence=round(float(score), 4), box=points(box))
             for text, score, box in line] for line in found]
