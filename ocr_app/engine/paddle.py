"""The second engine (OCR_ENGINE=paddleocr): PaddleOCR's own pipeline on ONNX Runtime, no paddlepaddle.

Runs `paddleocr.PaddleOCR` with `engine="onnxruntime"` over local folders (models/paddle_models.py
prepares them) and answers with the same OcrResult as the default engine, so the service, the cache and the
formats never tell the engines apart. PaddleX never reaches the network: its model hosters are
emptied and its cache points into OCR_PADDLE_HOME, so a missing model fails at start-up instead of
downloading. It lives in its own venv (`make venv-paddle`): paddlex pins opencv-contrib-python,
which clashes with the default venv's opencv-python-headless.
"""
from __future__ import annotations

import importlib.metadata
import logging
import os
import threading
import time
from typing import Any

import numpy as np

from ocr_app.config import ConfigError, Settings
from ocr_app.engine.base import EngineError, warm_up_image
from ocr_app.engine.catalog import plan
from ocr_app.models.digests import cache_namespace
from ocr_app.models.paddle_models import ENGINE, check_environment, home, offline_environment, prepare
from ocr_app.models.profiles import Profile, ProfileError
from ocr_app.results import Line, OcrResult, Word, points

log = logging.getLogger(__name__)

# rapidocr's Global.text_score: lines read with less confidence are dropped by both engines alike.
REC_SCORE_THRESH = 0.5


def _no_downloads() -> None:
    """Empty PaddleX's list of model hosters, so asking for a model it does not have raises at once."""
    from paddlex.inference.utils.official_models import official_models

    official_models._hosters = []


def _quiet() -> None:
    """PaddleX and PaddleOCR log through colored handlers of their own (a warning per large image): their
    errors go through ours instead, the rest is dropped."""
    for name in ("paddlex", "paddleocr"):
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
        logger.setLevel(logging.ERROR)


class PaddleEngine:
    """One profile's PaddleOCR pipeline; the same face as rapid.Engine (recognize, warm_up, cache_namespace)."""

    name = ENGINE

    def __init__(self, settings: Settings, profile: Profile, lock: threading.Lock | None = None) -> None:
        self.settings = settings
        self.profile = profile
        self._lock = lock or threading.Lock()
        started = time.perf_counter()
        self._ocr = self._build()
        log.info("engine %r loaded in %.2fs (paddleocr %s; threads=%d)", profile.name,
                 time.perf_counter() - started, importlib.metadata.version("paddleocr"), settings.threads)

    @property
    def cache_namespace(self) -> str:
        return cache_namespace(self.profile, self.settings)

    def _build(self) -> Any:
        s, profile = self.settings, self.profile
        try:
            folders = prepare(profile, home(s))
        except ProfileError as exc:
            raise EngineError(str(exc)) from exc
        try:
            import cv2

            cv2.setNumThreads(1)
            from paddleocr import PaddleOCR

            _quiet()
            _no_downloads()
            p = profile.det_params
            det = {key: p[key] for key in ("thresh", "box_thresh", "unclip_ratio") if key in p}
            return PaddleOCR(
                paddlex_config=_pipeline_config(s),
                text_detection_model_name=folders.det_model, text_detection_model_dir=str(folders.det),
                text_recognition_model_name=folders.rec_model, text_recognition_model_dir=str(folders.rec),
                use_doc_orientation_classify=False, use_doc_unwarping=False,
                use_textline_orientation=False,  # its substitute costs accuracy
                text_det_limit_side_len=s.det_limit_side, text_det_limit_type="min",
                text_det_thresh=det.get("thresh"), text_det_box_thresh=det.get("box_thresh"),
                text_det_unclip_ratio=det.get("unclip_ratio"), text_rec_score_thresh=REC_SCORE_THRESH,
                engine="onnxruntime", engine_config=_ort_config(s), device="cpu")
        except Exception as exc:  # a broken install or model must fail loudly at start-up
            raise EngineError(f"could not load PaddleOCR for profile {profile.name!r} from {folders.det.parent}: "
                              f"{str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__}") from exc

    def recognize(self, bgr: np.ndarray, words: bool = False) -> OcrResult:
        """OCR one BGR image; word boxes are a per-call argument of predict, never written into the pipeline."""
        started = time.perf_counter()
        with self._lock:
            results = self._ocr.predict(bgr, return_word_box=words)
        lines: list[Line] = []
        for res in results:
            texts, scores, polys = res["rec_texts"], res["rec_scores"], res["rec_polys"]
            word_texts = res.get("text_word") if words else None
            word_boxes = res.get("text_word_region") if words else None
            for i, (text, score, poly) in enumerate(zip(texts, scores, polys, strict=False)):
                confidence = round(float(score), 4)
                per_line = None
                if words:
                    per_line = _words(word_texts, word_boxes, i, confidence)
                lines.append(Line(text=str(text), confidence=confidence, box=points(poly), words=per_line))
        return OcrResult(lines=lines, elapsed=time.perf_counter() - started)

    def warm_up(self) -> OcrResult:
        """One OCR on a small synthetic image so the first request doesn't pay for graph set-up."""
        return self.recognize(warm_up_image())


def _pipeline_config(settings: Settings) -> dict[str, Any]:
    """PaddleOCR's OCR pipeline config with our detection cap (the long side never past OCR_DET_MAX_SIDE)."""
    from paddlex.inference.pipelines import load_pipeline_config

    config: dict[str, Any] = load_pipeline_config("OCR")
    config["SubModules"]["TextDetection"]["max_side_limit"] = settings.det_max_side
    return config


def _ort_config(settings: Settings) -> dict[str, Any]:
    """The default engine's ONNX Runtime choices, as far as PaddleX passes them on (no spin switches)."""
    return {"intra_op_num_threads": settings.threads, "inter_op_num_threads": 1, "execution_mode": "sequential",
            "graph_optimization_level": 99, "enable_cpu_mem_arena": settings.ort_arena,
            "enable_mem_pattern": False, "log_severity_level": 3}


def _words(texts: Any, boxes: Any, i: int, confidence: float) -> list[Word]:
    """Line i's words, each with the line's confidence (PaddleOCR scores lines, not words)."""
    if texts is None or boxes is None or i >= len(texts) or i >= len(boxes):
        return []
    return [Word(text=str(t), confidence=confidence, box=points(b))
            for t, b in zip(texts[i], boxes[i], strict=False) if str(t).strip()]  # it boxes the spaces too


def build_engines(settings: Settings) -> dict[str, PaddleEngine]:
    """One engine per enabled profile, sharing the worker's lock; the default profile first."""
    try:
        check_environment()
        enabled = plan(settings)
    except ConfigError as exc:
        raise EngineError(str(exc)) from exc
    unset = sorted(k for k, v in offline_environment(settings).items() if os.environ.get(k) != v)
    if unset:  # PaddleX reads them when imported: the process must have had them from its start
        raise EngineError(f"PaddleX's offline switches are not in this process's environment ({', '.join(unset)}): "
                          "start it with ocr_app.ops.startup.engine_environment, as gunicorn_conf does")
    lock = threading.Lock()
    order = [settings.profile] + [name for name in enabled if name != settings.profile]
    return {name: PaddleEngine(settings, enabled[name], lock) for name in order}
