"""The big detections' model rewrite: upsamples computed when needed, the same output to the bit."""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from ocr_app.config import Settings
from ocr_app.late_resize import RewriteError, late_resizes, verified
from ocr_app.profiles import accurate_profile, fast_profile
from ocr_app.sessions import session_options, tight_session


def session(model: str | bytes) -> ort.InferenceSession:
    return ort.InferenceSession(model, sess_options=session_options(Settings.from_env({})),
                                providers=["CPUExecutionProvider"])


@pytest.mark.parametrize("det", [accurate_profile().det, fast_profile().det], ids=["accurate", "fast"])
def test_rewritten_detection_gives_the_same_output_to_the_bit(det: Path, tmp_path: Path) -> None:
    model, count = late_resizes(det.read_bytes())
    assert count == 3, "PP-OCR's neck: three upsamples that each feed an Add"
    path = tmp_path / "late.onnx"
    path.write_bytes(model)
    stock, late = session(str(det)), session(str(path))
    rng = np.random.default_rng(5)
    for h, w in [(1024, 1024), (288, 1600), (736, 416)]:
        x = rng.uniform(-2, 2, (1, 3, h, w)).astype(np.float32)
        assert np.array_equal(stock.run(None, {"x": x})[0], late.run(None, {"x": x})[0]), (h, w)
    assert verified(stock, late)


def test_a_model_without_such_upsamples_is_left_as_it_is() -> None:
    rec = accurate_profile().rec.read_bytes()
    assert late_resizes(rec) == (rec, 0)


def test_verification_refuses_a_different_answer() -> None:
    assert not verified(session(str(accurate_profile().det)), session(str(fast_profile().det)))


@pytest.mark.parametrize("data", [b"\x0a\xff", b"\x07", b"\x3a\x05ab"])
def test_bytes_that_are_not_onnx_protobuf_are_refused(data: bytes) -> None:
    with pytest.raises(RewriteError):
        late_resizes(data)


def test_tight_session_falls_back_to_the_file_when_the_rewrite_fails(monkeypatch: pytest.MonkeyPatch,
                                                                     caplog: pytest.LogCaptureFixture) -> None:
    det = accurate_profile().det
    reference = session(str(det))
    monkeypatch.setattr("ocr_app.sessions.verified", lambda original, rewritten: False)
    with caplog.at_level(logging.WARNING, logger="ocr_app.sessions"):
        fallback = tight_session(det, session_options(Settings.from_env({})), reference)
    assert "big detections run the model as it is" in caplog.text
    x = np.random.default_rng(1).uniform(-2, 2, (1, 3, 320, 320)).astype(np.float32)
    assert np.array_equal(fallback.run(None, {"x": x})[0], reference.run(None, {"x": x})[0])
