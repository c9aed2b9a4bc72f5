"""The engines of one worker, one per enabled profile, from the pipeline OCR_ENGINE names; and its Tesseract."""
from __future__ import annotations

import importlib.util
import logging
import threading
from pathlib import Path
from typing import cast

from ocr_app.config import ConfigError, Settings
from ocr_app.engine.base import EngineError
from ocr_app.engine.catalog import plan
from ocr_app.engine.rapid import Engine
from ocr_app.engine.tesseract import Tesseract
from ocr_app.models import languages
from ocr_app.models.profiles import ProfileError

log = logging.getLogger(__name__)


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


def tessdata_dir(settings: Settings) -> Path | None:
    """Tesseract's data folder: OCR_TESSDATA, else the first of Debian's that holds data (None: none here)."""
    if settings.tessdata:
        path = Path(settings.tessdata)
        if not path.is_dir():
            raise ConfigError(f"OCR_TESSDATA={settings.tessdata!r} is not a folder")
        return path
    return languages.find_tessdata()


def build_tesseract(settings: Settings) -> Tesseract | None:
    """The worker's Tesseract (no language loaded yet), or None without tesserocr or any Tesseract data:
    the instance then reads what PP-OCR reads, and lang= for the others answers which pack is missing."""
    folder = tessdata_dir(settings)
    if folder is None:
        log.info("tesseract: no traineddata found (set OCR_TESSDATA): languages beyond PP-OCR's are off")
        return None
    if importlib.util.find_spec("tesserocr") is None:
        log.info("tesseract: the tesserocr package is not installed: languages beyond PP-OCR's are off")
        return None
    return Tesseract(folder, settings.langs_loaded, settings.tess_timeout_ms, settings.tess_max_pixels)
