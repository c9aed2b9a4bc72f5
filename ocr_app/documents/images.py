"""Bytes -> validated BGR image: format allow-list by magic bytes, size and pixel limits, orientation."""
from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ocr_app.config import Settings
from ocr_app.errors import (
    ImageTooLarge,
    ImageTooSmall,
    MissingImage,
    PayloadTooLarge,
    UndecodableImage,
    UnsupportedImage,
)

# Sniffed from the first bytes, never from a filename or a client's Content-Type.
_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"\xff\xd8\xff", "JPEG"),
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"BM", "BMP"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
    (b"II+\x00", "TIFF"),
    (b"MM\x00+", "TIFF"),
)

# The engine never looks at more than this many pixels on the long side (rapidocr caps at 2000),
# so decoding bigger only costs memory. Boxes are scaled back to the client's pixel space.
WORK_MAX_SIDE = 2000
# 16- and 32-bit samples: shrunk before they are widened to floats for the 8-bit conversion.
_WIDE_MODES = ("I;16", "I;16B", "I;16L", "I", "F")
# Below this no text line fits; refusing is clearer than an empty answer.
MIN_SIDE = 8


@dataclass(frozen=True)
class DecodedImage:
    bgr: np.ndarray
    width: int  # the client's image size after EXIF orientation
    height: int
    scale: float  # bgr pixels per client pixel (<= 1)


def sniff_format(data: bytes) -> str | None:
    """The image format from magic bytes, or None when it is not one we accept."""
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    for magic, name in _MAGIC:
        if data.startswith(magic):
            return name
    return None


def check_upload(data: bytes, settings: Settings, fmt: str | None = None) -> str:
    """The checks that need no decoding (empty, size, format by magic bytes); returns the format.

    Cheap enough to run before the cache sees the bytes, so garbage never reaches Redis. `fmt` is the
    format a caller already sniffed from these bytes (None: sniffed here).
    """
    if not data:
        raise MissingImage("the image is empty (0 bytes)")
    if len(data) > settings.max_upload_bytes:
        raise PayloadTooLarge(settings.max_upload_mb)
    fmt = fmt or sniff_format(data)
    if fmt is None:
        raise UnsupportedImage()
    return fmt


def decode_image(data: bytes, settings: Settings, fmt: str | None = None) -> DecodedImage:
    """Validate and decode an upload; every failure is a typed 4xx error, never a crash.

    `fmt` is the format a caller already sniffed from these bytes (None: sniffed here)."""
    fmt = check_upload(data, settings, fmt)
    with warnings.catch_warnings():
        # Pillow's own bomb check warns at ~89 MP; our explicit pixel limit below is the one that counts.
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            img = Image.open(io.BytesIO(data), formats=[fmt])
        except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
            raise UndecodableImage(f"the {fmt} header could not be read: {exc}") from None
        except Image.DecompressionBombError:
            raise ImageTooLarge(None, None, settings.max_pixels) from None
        width, height = img.size  # from the header, before any pixel is decoded
        if width < 1 or height < 1:
            raise UndecodableImage(f"the image claims an invalid size {width}x{height}")
        if min(width, height) < MIN_SIDE:
            raise ImageTooSmall(width, height, MIN_SIDE)
        if width * height > settings.max_pixels:
            raise ImageTooLarge(width, height, settings.max_pixels)
        if getattr(img, "n_frames", 1) > 1:
            img.seek(0)  # multi-page TIFF / animated WebP: the first frame only
        orientation = _exif_orientation(img)
        full = (height, width) if orientation in (5, 6, 7, 8) else (width, height)
        try:
            return _to_bgr(img, fmt, full, orientation)
        except (OSError, ValueError, SyntaxError, EOFError, MemoryError) as exc:
            raise UndecodableImage(f"the {fmt} data is corrupt or truncated: {exc}") from None
        except Image.DecompressionBombError:
            raise ImageTooLarge(width, height, settings.max_pixels) from None


def oriented_size(data: bytes) -> tuple[int, int]:
    """Width and height after EXIF orientation, from the header alone (boxes are in this space)."""
    with Image.open(io.BytesIO(data)) as img:
        width, height = img.size
        return (height, width) if _exif_orientation(img) in (5, 6, 7, 8) else (width, height)


def to_rgb(img: Image.Image) -> Image.Image:
    """Any mode as 8-bit RGB on white (what the engine is given), for pages decoded outside decode_image."""
    return _to_rgb(img)


def _exif_orientation(img: Image.Image) -> int:
    try:
        return int(img.getexif().get(0x0112, 1))
    except (OSError, ValueError, TypeError, SyntaxError):
        return 1  # unreadable EXIF is no reason to refuse the picture


def _to_bgr(img: Image.Image, fmt: str, full: tuple[int, int], orientation: int) -> DecodedImage:
    """Decode no more pixels than the engine uses, without changing what it gets for a normal photo.

    JPEG: libjpeg scales by 1/2, 1/4 or 1/8 while decoding (draft mode) once both sides are at least
    twice the work size, so a 36 MP upload materialises at 9 MP, never 36. Other formats have no
    reduced decode; their pixel count is bounded by OCR_MAX_PIXELS and the worker's decode slots.
    A truncated file raises: Pillow's LOAD_TRUNCATED_IMAGES stays off.
    """
    if fmt == "JPEG":
        img.draft("RGB", (WORK_MAX_SIDE, WORK_MAX_SIDE))
    img.load()
    if orientation != 1:  # exif_transpose copies even when there is nothing to turn
        img = ImageOps.exif_transpose(img)
    full_w, full_h = full  # boxes are reported in the oriented, full-resolution space
    if img.mode in _WIDE_MODES:
        _shrink(img)  # before widening 16/32-bit samples to floats: 40 MP would be 160 MB as float32
    img = _to_rgb(img)
    _shrink(img)
    bgr = cv2.cvtColor(np.asarray(img), cv2.COLOR_RGB2BGR)
    img.close()
    return DecodedImage(bgr=bgr, width=full_w, height=full_h, scale=bgr.shape[1] / full_w)


def _shrink(img: Image.Image) -> None:
    """Bring the long side down to the work size in place (Pillow reduces by whole factors first)."""
    if max(img.size) > WORK_MAX_SIDE:
        img.thumbnail((WORK_MAX_SIDE, WORK_MAX_SIDE), Image.Resampling.BILINEAR)


def _to_rgb(img: Image.Image) -> Image.Image:
    """Palette, alpha, greyscale, CMYK and 16-bit images all become 8-bit RGB on white."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(img, dtype=np.float32)
        peak = float(arr.max()) or 1.0
        img = Image.fromarray((arr * (255.0 / peak)).clip(0, 255).astype(np.uint8), "L")
    elif img.mode == "F":
        arr = np.asarray(img, dtype=np.float32)
        lo, hi = float(arr.min()), float(arr.max())
        img = Image.fromarray(((arr - lo) * (255.0 / ((hi - lo) or 1.0))).astype(np.uint8), "L")
    if img.mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, rgba)
    if img.mode != "RGB":
        img = img.convert("RGB")
    return img
