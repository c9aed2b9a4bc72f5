"""The model files and the cache namespace they make, without importing OpenCV or ONNX Runtime.

registry.py announces the namespace in Consul from the gunicorn master (the gateway's cache keys on
it), so this module must stay light: engine.py, which loads the models, re-exports what is here.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import lru_cache
from importlib.util import find_spec
from pathlib import Path

from .config import Settings

# Bump when pre- or post-processing changes what a given image returns: it is part of the cache key.
PIPELINE_VERSION = "1"

DET_MODEL = "PP-OCRv6_det_small.onnx"
CLS_MODEL = "ch_ppocr_mobile_v2.0_cls_mobile.onnx"
REC_MODEL = "PP-OCRv6_rec_small.onnx"


class EngineError(RuntimeError):
    """The models could not be loaded or run."""


@dataclass(frozen=True)
class ModelFiles:
    det: Path
    cls: Path
    rec: Path

    @classmethod
    def bundled(cls) -> ModelFiles:
        """The PP-OCR models that ship inside the rapidocr wheel."""
        spec = find_spec("rapidocr")  # found, not imported: importing it loads ONNX Runtime and OpenCV
        if spec is None or spec.origin is None:
            raise EngineError("the rapidocr package is not installed")
        root = Path(spec.origin).resolve().parent / "models"
        files = cls(det=root / DET_MODEL, cls=root / CLS_MODEL, rec=root / REC_MODEL)
        missing = [str(p.name) for p in (files.det, files.cls, files.rec) if not p.is_file()]
        if missing:
            raise EngineError(f"model files missing from the rapidocr package: {', '.join(missing)}")
        return files

    def digest(self) -> str:
        """A short digest of the model bytes, so a model change never serves stale cache entries."""
        return _digest_files(self.det, self.cls, self.rec)


@lru_cache(maxsize=4)
def _digest_files(*paths: Path) -> str:
    h = hashlib.sha256()
    for path in paths:
        with path.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()[:16]


def namespace_for(settings: Settings, models: ModelFiles) -> str:
    """Engine.cache_namespace, also for registry.py, which announces it without loading an engine."""
    return f"{models.digest()}:p{PIPELINE_VERSION}:d{settings.det_limit_side}-{settings.det_max_side}"
