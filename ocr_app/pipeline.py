"""The pipeline's version, apart from the engines so that ops/registry.py can announce the cache namespace
from the gunicorn master without importing OpenCV or ONNX Runtime."""
from __future__ import annotations

# Bump when pre- or post-processing changes what a given image returns: it is part of the cache key.
PIPELINE_VERSION = "3"  # 2: lines in reading order, turned pages read upright (OCR_ORIENTATION)
# 3: a small turned image is also read as sent, and the better-read kept (OCR_ORIENTATION_CHECK_SIDE)


def orientation_key(orientation: str, check_side: int) -> str:
    """The page-orientation part of a cache key: the setting, and the strip check when it can run."""
    return f"{orientation}-c{check_side}" if orientation == "auto" else orientation
