"""Images -> a PDF of their own: one page per image (or per frame of a multi-page TIFF), at its resolution.

img2pdf embeds JPEG (and most PNG and TIFF) data as it is, without re-encoding. The page is shown as the
client's image is (EXIF orientation applied, as /Rotate), because that is the space the boxes are in.
What img2pdf refuses (an alpha channel, a mirrored orientation, an odd colour space) is converted to
RGB PNG first: the one case where the picture is re-encoded, losslessly. No dates are written, so equal
uploads give equal PDFs.
"""
from __future__ import annotations

import io
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from PIL import Image, ImageOps

from ocr_app.documents.images import to_rgb
from ocr_app.errors import BrokenDocument

# The resolution of an image that states none (or an unusable one): a common scanning resolution.
DEFAULT_DPI = 300.0
# Stated resolutions outside this range are not taken at their word.
MIN_DPI, MAX_DPI = 10.0, 10_000.0
# The largest page side the PDF format allows (200 inches); a bigger page gets a finer resolution.
MAX_PAGE_PT = 14_400.0
# EXIF orientations that mirror the picture: a PDF page can turn but not mirror.
_MIRRORED = (2, 4, 5, 7)


def image_document(data: bytes, all_frames: bool) -> bytes:
    """The image (or every frame of a TIFF when `all_frames`) as PDF pages, laid out at their own dpi.

    A plain image is shown with its EXIF orientation; the frames of a multi-page TIFF as stored, like
    the pages the fleet OCRs from them."""
    import img2pdf

    with _opened(data) as img:
        frames = list(_frame_facts(img, all_frames))
    dpis = iter([dpi for dpi, _ in frames])

    def layout(width_px: int, height_px: int, _stated: Any) -> Any:
        # called once per page, in order: the resolution we read, not img2pdf's 96-dpi default
        dpi = next(dpis)
        return img2pdf.default_layout_fun(width_px, height_px, (dpi, dpi))

    mirrored = not all_frames and frames[0][1] in _MIRRORED
    if not mirrored:
        try:
            return bytes(img2pdf.convert(data, layout_fun=layout, first_frame_only=not all_frames, nodate=True,
                                         rotation=img2pdf.Rotation.none if all_frames else img2pdf.Rotation.ifvalid))
        except (img2pdf.AlphaChannelError, img2pdf.UnsupportedColorspaceError, img2pdf.JpegColorspaceError,
                img2pdf.ImageOpenError, ValueError, OSError):
            pass
    dpis = iter([dpi for dpi, _ in frames])
    try:
        pngs = list(_as_png(data, all_frames))
        return bytes(img2pdf.convert(pngs, layout_fun=layout, rotation=img2pdf.Rotation.none, nodate=True))
    except BrokenDocument:
        raise
    except Exception as exc:  # Pillow's and img2pdf's errors share no base class
        raise BrokenDocument(f"the image could not be made into a PDF: {exc}") from None


def stated_dpi(img: Image.Image) -> float:
    """The resolution the image states (the larger of x and y), or DEFAULT_DPI when it states none.

    Pillow reports 72 dpi for a JPEG whose EXIF has no resolution: only JFIF's or EXIF's own are taken."""
    if img.format == "JPEG" and img.info.get("jfif_unit") not in (1, 2) and 0x011A not in _exif(img):
        return DEFAULT_DPI
    raw = img.info.get("dpi")
    try:
        dpi = max(float(raw[0]), float(raw[1])) if raw else 0.0
    except (TypeError, ValueError, IndexError):
        dpi = 0.0
    return dpi if MIN_DPI <= dpi <= MAX_DPI else DEFAULT_DPI


def _frame_facts(img: Image.Image, all_frames: bool) -> Iterator[tuple[float, int]]:
    """(dpi, EXIF orientation) of each page-to-be, the dpi raised where the page would pass MAX_PAGE_PT."""
    count = getattr(img, "n_frames", 1) if all_frames else 1
    for index in range(count):
        img.seek(index)
        side = max(img.size)
        orientation = 1 if all_frames else _orientation(img)
        yield max(stated_dpi(img), side * 72.0 / MAX_PAGE_PT), orientation


def _orientation(img: Image.Image) -> int:
    try:
        return int(_exif(img).get(0x0112, 1))
    except (TypeError, ValueError):
        return 1


def _exif(img: Image.Image) -> Any:
    try:
        return img.getexif()
    except Exception:  # unreadable EXIF: the image path shows the image as stored, and so do we
        return {}


def _as_png(data: bytes, all_frames: bool) -> Iterator[bytes]:
    """Each page-to-be as an RGB PNG, oriented as the boxes are (a plain image's EXIF orientation applied)."""
    with _opened(data) as img:
        for index in range(getattr(img, "n_frames", 1) if all_frames else 1):
            img.seek(index)
            frame = to_rgb(img if all_frames else ImageOps.exif_transpose(img))
            buf = io.BytesIO()
            frame.save(buf, "PNG", compress_level=6, dpi=img.info.get("dpi", (DEFAULT_DPI, DEFAULT_DPI)))
            yield buf.getvalue()


@contextmanager
def _opened(data: bytes) -> Iterator[Image.Image]:
    """The upload opened with Pillow (its size was checked by the OCR that came before)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            img = Image.open(io.BytesIO(data))
        except Exception as exc:
            raise BrokenDocument(f"the image could not be read for the PDF: {exc}") from None
        with img:
            yield img
