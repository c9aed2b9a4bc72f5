"""Upload -> page images: the seam that jobs and the fan-out build on.

A stand-in until the document loader (PDF and multi-page TIFF) lands: an image is one page, a
multi-page TIFF is one page per frame. Pages are encoded one at a time, as PNG, when asked for, so a
caller can OCR page k while page k+1 is being encoded.
"""
from __future__ import annotations

import io
import warnings
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any

from PIL import Image, ImageSequence, UnidentifiedImageError

from .config import Settings
from .errors import ImageTooLarge, UndecodableImage
from .images import check_upload

# Frames taken from one TIFF; more is refused rather than rendered.
MAX_PAGES = 50
_TIFF_ERRORS = (OSError, ValueError, SyntaxError, EOFError, TypeError, KeyError, IndexError)


@dataclass(frozen=True)
class PageSize:
    number: int  # from 1
    width: int
    height: int


class Upload:
    """One upload's pages: sizes are known up front, page images are encoded on demand, in order."""

    def __init__(self, data: bytes, sizes: list[PageSize], image: Image.Image | None) -> None:
        self.data = data
        self.sizes = sizes
        self._image = image  # None: a plain image, sent on as its own bytes

    @property
    def document(self) -> bool:
        """False for one plain image, answered in the single-image shape."""
        return self._image is not None

    def images(self) -> Iterator[bytes]:
        """Each page as an image the service accepts on its own (cached by its own hash)."""
        if self._image is None:
            yield self.data
            return
        try:
            for frame in ImageSequence.Iterator(self._image):
                buf = io.BytesIO()
                frame.convert("RGB").save(buf, format="PNG", compress_level=1)
                yield buf.getvalue()
        except _TIFF_ERRORS as exc:
            raise UndecodableImage(f"the TIFF data is corrupt or truncated: {exc}") from None


def split_pages(data: bytes, settings: Settings) -> Upload:
    """The pages of an upload, with every page's size checked before any is decoded."""
    fmt = check_upload(data, settings)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            img = Image.open(io.BytesIO(data), formats=[fmt])
            frames = getattr(img, "n_frames", 1)
            if fmt != "TIFF" or frames <= 1:
                return Upload(data, [PageSize(1, *img.size)], None)
            if frames > MAX_PAGES:
                raise UndecodableImage(f"the TIFF has {frames} pages, more than {MAX_PAGES}")
            sizes = []
            for number in range(1, frames + 1):
                img.seek(number - 1)
                width, height = img.size
                if width * height > settings.max_pixels:
                    raise ImageTooLarge(width, height, settings.max_pixels)
                sizes.append(PageSize(number, width, height))
            img.seek(0)
        except Image.DecompressionBombError:
            raise ImageTooLarge(None, None, settings.max_pixels) from None
        except (UnidentifiedImageError, *_TIFF_ERRORS) as exc:
            raise UndecodableImage(f"the {fmt} data could not be read: {exc}") from None
    return Upload(data, sizes, img)


@dataclass(frozen=True)
class PageOptions:
    """What decides a page's answer besides its bytes (the stand-in has no per-page options yet)."""

    bypass_cache: bool = False

    def to_query(self) -> dict[str, str]:
        return {}


PageAnswer = tuple[list[dict[str, Any]], str]  # a page's lines and its X-Cache
PageRunner = Callable[[bytes, PageOptions], PageAnswer]


def ocr_pages(upload: Upload, runner: PageRunner, options: PageOptions, parallel: int = 1) -> list[PageAnswer]:
    """Each page through `runner`, at most `parallel` at once, encoding the next page meanwhile."""
    if parallel <= 1:
        return [runner(page, options) for page in upload.images()]
    with ThreadPoolExecutor(max_workers=parallel, thread_name_prefix="page") as pool:
        futures: list[Future[PageAnswer]] = []
        for page in upload.images():
            futures.append(pool.submit(runner, page, options))
            while sum(not f.done() for f in futures) >= parallel:
                wait([f for f in futures if not f.done()], return_when=FIRST_COMPLETED)
        return [f.result() for f in futures]


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
