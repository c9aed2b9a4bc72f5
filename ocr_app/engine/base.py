"""What every engine shares, whichever pipeline runs it: its error, and the image that warms it up."""
from __future__ import annotations

import cv2
import numpy as np


class EngineError(RuntimeError):
    """The models could not be loaded or run."""


def warm_up_image() -> np.ndarray:
    """A small white image with two words: enough to run every stage once."""
    img = np.full((64, 256, 3), 255, dtype=np.uint8)
    cv2.putText(img, "WARM UP", (8, 44), cv2.FONT_HERSHEY_SIMPLEX, 1.2, (0, 0, 0), 2)
    return img
