"""The engines of one worker, one per enabled profile, from the pipeline OCR_ENGINE names."""
from __future__ import annotations

import threading
from typing import cast

from ocr_app.config import Settings
from ocr_app.engine.base import EngineError
from ocr_app.engine.catalog import plan
from ocr_app.engine.rapid import Engine
from ocr_app.models.profiles import ProfileError


def build_engines(settings: Settings) -> dict[str, Engine]:
    """One engine per enabled profile, sharing the worker's lock; the default profile first."""
    if settings.engine == "paddleocr":  # PaddleOCR's own pipeline, from its own venv (engine/paddle.py)
        from ocr_app.engine.paddle import build_engines as build_paddle_engines

        return cast("dict[str, Engine]", build_paddle_engines(settings))
    try:
        enabled = plan(settings)
    except ProfileError as exc:
        raise EngineError(str(exc)) from exc
    lock = threading.Lock()
    order = [settings.profile] + [name for name in enabled if name != settings.profile]
    return {name: Engine(settings, enabled[name], lock) for name in order}
