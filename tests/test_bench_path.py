"""The bench measures what an instance runs: its recognizer and OcrService read a turned image alike."""
from __future__ import annotations

import io
import json

import pytest
from helpers import text_image
from PIL import Image

from bench.engine_limit import instance_recognizer
from ocr_app.config import Settings
from ocr_app.engine.factory import build_engines
from ocr_app.engine.rapid import Engine
from ocr_app.ops.metrics import Metrics
from ocr_app.service.cache import ResultCache
from ocr_app.service.ocr_service import OcrService

SETTINGS = Settings.from_env({}, redis_url="", profiles="accurate", warmup=False)
TEXT = "Quick Brown Fox 12"


@pytest.fixture(scope="module")
def engines() -> dict[str, Engine]:
    return build_engines(SETTINGS)  # the real engine, built once for both paths


def turned(angle: int) -> bytes:
    """A short text strip turned `angle` degrees counter-clockwise: small enough for the second reading."""
    with Image.open(io.BytesIO(text_image(TEXT))) as img:
        buf = io.BytesIO()
        img.rotate(angle, expand=True).save(buf, "JPEG", quality=95)
    return buf.getvalue()


@pytest.mark.parametrize("angle", [180, 90, 0])
def test_the_bench_and_the_service_read_a_turned_strip_alike(engines: dict[str, Engine], angle: int) -> None:
    data = turned(angle)
    service = OcrService(SETTINGS, Metrics(), ResultCache("", ttl=60, timeout=0.1, lock_ttl=5.0),
                         engine_factory=lambda _: engines)
    service.start(background=False)
    served = [line["text"] for line in json.loads(service.ocr(data, bypass_cache=True).data_json)]
    benched = instance_recognizer(SETTINGS, build=lambda _: engines)(data)
    assert benched == served
    assert " ".join(served) == TEXT, "the strip is read upright, so skipping orientation would show"
