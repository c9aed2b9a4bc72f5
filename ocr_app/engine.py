"""The OCR engine: PP-OCR det/cls/rec ONNX models from the rapidocr wheel, loaded once per process.

No Flask here. The engine never touches the network: every model path is explicit and
points inside the installed rapidocr package.
"""
from __future__ import annotations

import copy
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from .config import Settings
from .models import CLS_MODEL as CLS_MODEL
from .models import DET_MODEL as DET_MODEL
from .models import PIPELINE_VERSION as PIPELINE_VERSION
from .models import REC_MODEL as REC_MODEL
from .models import EngineError as EngineError
from .models import ModelFiles as ModelFiles
from .models import namespace_for as namespace_for

log = logging.getLogger(__name__)


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


def _session_options(settings: Settings) -> Any:
    """ONNX Runtime options chosen for throughput per core and RSS, not rapidocr's defaults."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.intra_op_num_threads = settings.threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    # The arena trades a lot of RSS for speed (measured: on 1576 MiB / 0.95 img/s, off 908 MiB / 0.71 img/s
    # with the stock pipeline). Off by default: a fleet scales out by instances, memory per instance matters.
    opts.enable_cpu_mem_arena = settings.ort_arena
    # Memory patterns only pay off for fixed shapes; detection shapes vary per image.
    opts.enable_mem_pattern = settings.ort_arena
    # Spinning threads burn the core a sibling instance needs.
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    opts.add_session_config_entry("session.inter_op.allow_spinning", "0")
    return opts


def _capped_preprocess(base: Any, limit_side: int, max_side: int) -> Any:
    """Detection resize that lifts the short side to `limit_side` but never the long side past `max_side`.

    rapidocr's stock 'min' rule blows a 709x132 strip up to 3950x736 (430 MB measured); capping the
    long side keeps memory and time bounded while small text in normal photos still gets upscaled.
    """

    class CappedDetPreProcess(base):
        def resize(self, img: np.ndarray) -> np.ndarray | None:
            h, w = img.shape[:2]
            ratio = min(max(1.0, limit_side / max(1, min(h, w))), max_side / max(h, w))
            resize_h = max(32, int(round(h * ratio / 32) * 32))
            resize_w = max(32, int(round(w * ratio / 32) * 32))
            return cv2.resize(img, (resize_w, resize_h))

    return CappedDetPreProcess


class Engine:
    """One PP-OCR pipeline. Build one per process (after fork); calls are serialized by a lock."""

    def __init__(self, settings: Settings, models: ModelFiles | None = None) -> None:
        self.settings = settings
        self.models = models or ModelFiles.bundled()
        self._lock = threading.Lock()
        cv2.setNumThreads(1)
        started = time.perf_counter()
        self._ocr = self._build()
        self._ocr_words = self._with_word_boxes(self._ocr)
        log.info("engine loaded in %.2fs (threads=%d, arena=%s)", time.perf_counter() - started,
                 settings.threads, settings.ort_arena)

    @property
    def cache_namespace(self) -> str:
        """What besides the image bytes decides the answer: models, pipeline and detection limits."""
        return namespace_for(self.settings, self.models)

    def _build(self) -> Any:
        try:
            import onnxruntime as ort
            from rapidocr import RapidOCR
            from rapidocr.ch_ppocr_det.utils import DetPreProcess

            s = self.settings
            ocr = RapidOCR(params={
                "Global.log_level": "warning",
                "Det.model_path": str(self.models.det),
                "Cls.model_path": str(self.models.cls),
                "Rec.model_path": str(self.models.rec),
                "EngineConfig.onnxruntime.intra_op_num_threads": s.threads,
                "EngineConfig.onnxruntime.inter_op_num_threads": 1,
                "EngineConfig.onnxruntime.enable_cpu_mem_arena": s.ort_arena,
            })
            # Hand rapidocr sessions built with our options (its "session" hook), so each model loads once,
            # then load the three stages now rather than lazily on the first request.
            opts = _session_options(s)
            for section, path in ((ocr.cfg.Det, self.models.det), (ocr.cfg.Cls, self.models.cls),
                                  (ocr.cfg.Rec, self.models.rec)):
                section._set_flag("allow_objects", True)
                section.session = ort.InferenceSession(str(path), sess_options=opts,
                                                       providers=["CPUExecutionProvider"])
            ocr._load_det_model()
            ocr._load_cls_model()
            ocr._load_rec_model()
            det: Any = ocr.text_det
            capped = _capped_preprocess(DetPreProcess, s.det_limit_side, s.det_max_side)
            det.get_preprocess = lambda: capped(det.limit_side_len, det.limit_type, det.mean, det.std)
            return ocr
        except Exception as exc:  # a broken install must fail loudly at start-up, not per request
            raise EngineError(f"could not load the OCR models: {exc}") from exc

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
