"""What an engine returns for an image: lines with their words, confidences and boxes.

A leaf: engines, the service, the document exporters and the tests all trade in these types.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Word:
    text: str
    confidence: float
    box: list[list[float]]


@dataclass(frozen=True)
class Line:
    text: str
    confidence: float
    box: list[list[float]]
    words: list[Word] | None = None  # only when the request asked for word boxes

    def to_dict(self) -> dict[str, Any]:
        item: dict[str, Any] = {"text": self.text, "confidence": self.confidence, "box": self.box}
        if self.words is not None:
            item["words"] = [{"text": w.text, "confidence": w.confidence, "box": w.box} for w in self.words]
        return item


@dataclass(frozen=True)
class OcrResult:
    lines: list[Line] = field(default_factory=list)
    elapsed: float = 0.0


def points(box: Any) -> list[list[float]]:
    """A box as JSON-ready corner points, to a tenth of a pixel."""
    return [[round(float(x), 1), round(float(y), 1)] for x, y in np.asarray(box).tolist()]
