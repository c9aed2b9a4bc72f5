"""Multi-page TIFF -> pages: each frame is a page, checked against the pixel limit before it is decoded."""
from __future__ import annotations

import io
import struct
import warnings
from typing import Any

from PIL import Image, UnidentifiedImageError

from ocr_app.config import Settings
from ocr_app.documents.images import MIN_SIDE, to_rgb
from ocr_app.documents.pdf import PagePlan
from ocr_app.errors import BrokenDocument, ImageTooLarge, ImageTooSmall, UndecodableImage

# What Pillow raises on a hostile TIFF, beyond its documented OSError (found by tests/test_fuzz.py).
_TIFF_ERRORS = (OSError, ValueError, SyntaxError, EOFError, TypeError, KeyError, IndexError, struct.error)


class TiffFile:
    """A TIFF with several frames: each frame is a page, checked against the pixel limit before decoding."""

    def __init__(self, image: Image.Image, page_count: int, settings: Settings, counted_all: bool) -> None:
        self._image = image
        self.page_count = page_count
        self.settings = settings
        self.counted_all = counted_all

    @classmethod
    def open(cls, data: bytes, settings: Settings, max_frames: int) -> TiffFile | None:
        """The TIFF as a document, or None when it has one frame (then it is a plain image)."""
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # our own limit is checked per frame
                image = Image.open(io.BytesIO(data), formats=["TIFF"])
                count = _count_frames(image, max_frames)
        except Image.DecompressionBombError:
            raise ImageTooLarge(None, None, settings.max_pixels) from None
        except (UnidentifiedImageError, *_TIFF_ERRORS) as exc:
            raise UndecodableImage(f"the TIFF could not be read: {exc}") from None
        return cls(image, count, settings, count < max_frames) if count > 1 else None

    def plan(self, numbers: list[int]) -> list[PagePlan]:
        plans = []
        for number in numbers:
            frame = self._frame(number)
            width, height = frame.size
            if width * height > self.settings.max_pixels:
                raise ImageTooLarge(width, height, self.settings.max_pixels)
            if min(width, height) < MIN_SIDE:
                raise ImageTooSmall(width, height, MIN_SIDE)
            plans.append(PagePlan(number, width, height))
        return plans

    def render(self, plan: PagePlan) -> Image.Image:
        frame = self._frame(plan.number)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                frame.load()
                return to_rgb(frame)
        except (*_TIFF_ERRORS, MemoryError, Image.DecompressionBombError) as exc:
            raise BrokenDocument(f"page {plan.number} of the TIFF is corrupt or truncated: {exc}") from None

    def text_lines(self, plan: PagePlan, words: bool) -> list[dict[str, Any]] | None:
        return None  # TIFF has no text layer

    def close(self) -> None:
        self._image.close()

    def _frame(self, number: int) -> Image.Image:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                self._image.seek(number - 1)
        except Image.DecompressionBombError:
            raise ImageTooLarge(None, None, self.settings.max_pixels) from None
        except _TIFF_ERRORS as exc:
            raise BrokenDocument(f"page {number} of the TIFF could not be read: {exc}") from None
        return self._image


def _count_frames(image: Image.Image, limit: int) -> int:
    """Frames, counted no further than `limit`: past the page limit the document is refused anyway."""
    count = 1
    while count < limit:
        try:
            image.seek(count)
        except EOFError:
            break
        count += 1
    image.seek(0)
    return count
