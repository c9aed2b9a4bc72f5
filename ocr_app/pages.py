"""Upload -> page images: the seam that jobs and the fan-out build on.

A stand-in until the document loader (PDF and multi-page TIFF) lands: an image is one page, a
multi-page TIFF is one page per frame, each re-encoded as PNG so it is an ordinary image request.
"""
from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from typing import Any

from PIL import Image, ImageSequence, UnidentifiedImageError

from .config import Settings
from .errors import ImageTooLarge, UndecodableImage
from .images import check_upload

# Frames taken from one TIFF; more is refused rather than rendered.
MAX_PAGES = 50


@dataclass(frozen=True)
class Page:
    number: int  # from 1
    data: bytes  # an image the service accepts on its own (cached by its own hash)
    width: int
    height: int


@dataclass(frozen=True)
class Upload:
    pages: list[Page]
    document: bool  # False: one plain image, answered in the single-image shape


def split_pages(data: bytes, settings: Settings) -> Upload:
    """The pages of an upload; a single image stays as its own bytes (same cache key as /api/ocr)."""
    fmt = check_upload(data, settings)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            img = Image.open(io.BytesIO(data), formats=[fmt])
            frames = getattr(img, "n_frames", 1)
        except (UnidentifiedImageError, OSError, ValueError, SyntaxError, EOFError) as exc:
            raise UndecodableImage(f"the {fmt} header could not be read: {exc}") from None
        except Image.DecompressionBombError:
            raise ImageTooLarge(None, None, settings.max_pixels) from None
        if fmt != "TIFF" or frames <= 1:
            return Upload([Page(1, data, *img.size)], document=False)
        if frames > MAX_PAGES:
            raise UndecodableImage(f"the TIFF has {frames} pages, more than {MAX_PAGES}")
        pages = []
        try:
            for number, frame in enumerate(ImageSequence.Iterator(img), start=1):
                width, height = frame.size
                if width * height > settings.max_pixels:
                    raise ImageTooLarge(width, height, settings.max_pixels)
                buf = io.BytesIO()
                frame.convert("RGB").save(buf, format="PNG")
                pages.append(Page(number, buf.getvalue(), width, height))
        except (OSError, ValueError, SyntaxError, EOFError) as exc:
            raise UndecodableImage(f"the TIFF data is corrupt or truncated: {exc}") from None
    return Upload(pages, document=True)


def assemble(document: bool, pages: list[tuple[int, int, int]], lines: list[list[dict[str, Any]]]
             ) -> dict[str, Any]:
    """The answer for (page number, width, height) and each page's lines, in page order.

    A plain image answers in the single-image shape; a document lists its pages and also keeps every
    line in `data`, each with its `page`, so clients of the single-image shape still work.
    """
    if not document:
        return {"code": 0, "msg": "success", "data": lines[0] if lines else []}
    out_pages = []
    every: list[dict[str, Any]] = []
    for (number, width, height), page_lines in zip(pages, lines, strict=True):
        out_pages.append({"page": number, "width": width, "height": height, "source": "ocr", "data": page_lines})
        every.extend({**line, "page": number} for line in page_lines)
    return {"code": 0, "msg": "success", "pages": out_pages, "data": every}
