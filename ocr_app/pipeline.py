"""The pipeline's version, apart from engine.py so that registry.py can announce the cache namespace
from the gunicorn master without importing OpenCV or ONNX Runtime."""
from __future__ import annotations

# Bump when pre- or post-processing changes what a given image returns: it is part of the cache key.
PIPELINE_VERSION = "2"  # 2: lines in reading order, turned pages read upright (OCR_ORIENTATION)
