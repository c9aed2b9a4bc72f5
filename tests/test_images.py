"""Image decoding: formats by magic bytes, limits read from headers, orientation and colour modes."""
from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from ocr_app.config import Settings
from ocr_app.documents.images import WORK_MAX_SIDE, decode_image, sniff_format
from ocr_app.errors import (
    ImageTooLarge,
    ImageTooSmall,
    MissingImage,
    PayloadTooLarge,
    UndecodableImage,
    UnsupportedImage,
)

SETTINGS = Settings.from_env({})


def encode(img: Image.Image, fmt: str, **kw: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "BMP", "WEBP", "TIFF"])
def test_allowed_formats_are_sniffed_and_decoded(fmt: str) -> None:
    data = encode(Image.new("RGB", (40, 30), (10, 20, 200)), fmt)
    assert sniff_format(data) == fmt
    decoded = decode_image(data, SETTINGS)
    assert decoded.bgr.shape == (30, 40, 3) and decoded.bgr.dtype == np.uint8
    assert decoded.bgr.flags["C_CONTIGUOUS"]
    b, g, r = (int(v) for v in decoded.bgr[15, 20])
    assert b > 150 and r < 60, "the engine gets BGR order"


def test_gif_is_refused_by_content_not_name() -> None:
    with pytest.raises(UnsupportedImage):
        decode_image(encode(Image.new("RGB", (20, 20)), "GIF"), SETTINGS)


def test_exif_orientation_is_applied_and_sizes_are_oriented() -> None:
    img = Image.new("RGB", (120, 40), "white")
    img.paste((0, 0, 0), (0, 0, 20, 40))  # a black bar on the left
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    decoded = decode_image(encode(img, "JPEG", exif=exif.tobytes()), SETTINGS)
    assert (decoded.width, decoded.height) == (40, 120)
    assert decoded.bgr.shape[:2] == (120, 40)
    assert decoded.bgr[5, 20].mean() < 80, "the bar ends up on top"


@pytest.mark.parametrize("mode", ["P", "RGBA", "LA", "L", "CMYK", "I;16"])
def test_colour_modes_become_rgb_on_white(mode: str) -> None:
    base = Image.new("RGBA", (32, 32), (0, 0, 0, 0))  # fully transparent
    base.paste((0, 0, 0, 255), (0, 0, 16, 32))  # left half opaque black
    if mode == "I;16":
        img = Image.fromarray((np.arange(32 * 32).reshape(32, 32) * 60).astype(np.uint16))
        fmt = "PNG"
    else:
        img = base.convert(mode) if mode != "CMYK" else base.convert("RGB").convert("CMYK")
        fmt = "TIFF" if mode == "CMYK" else "PNG"
    decoded = decode_image(encode(img, fmt), SETTINGS)
    assert decoded.bgr.shape == (32, 32, 3) and decoded.bgr.dtype == np.uint8
    if mode in ("RGBA", "LA"):
        assert decoded.bgr[16, 28].min() > 240, "transparent areas are white, not black"
        assert decoded.bgr[16, 4].max() < 20


def test_large_images_are_reduced_and_scale_reported() -> None:
    decoded = decode_image(encode(Image.new("RGB", (5000, 1000), "white"), "JPEG"), SETTINGS)
    assert max(decoded.bgr.shape[:2]) <= WORK_MAX_SIDE
    assert (decoded.width, decoded.height) == (5000, 1000)
    assert decoded.scale == pytest.approx(decoded.bgr.shape[1] / 5000)


def test_limits() -> None:
    small = Settings.from_env({}, max_pixels=10_000, max_upload_mb=0.01)
    with pytest.raises(ImageTooLarge, match="OCR_MAX_PIXELS"):
        decode_image(encode(Image.new("RGB", (101, 100)), "PNG"), small)
    with pytest.raises(PayloadTooLarge, match="OCR_MAX_UPLOAD_MB"):
        decode_image(b"\x89PNG\r\n\x1a\n" + b"\0" * 20_000, small)
    with pytest.raises(ImageTooSmall):
        decode_image(encode(Image.new("RGB", (7, 100)), "PNG"), SETTINGS)


def test_truncated_and_garbage() -> None:
    data = encode(Image.effect_noise((200, 200), 50).convert("RGB"), "JPEG")
    with pytest.raises(UndecodableImage):
        decode_image(data[: len(data) // 3], SETTINGS)
    with pytest.raises(UndecodableImage):
        decode_image(b"\x89PNG\r\n\x1a\n garbage", SETTINGS)


def test_empty_upload_is_missing_input() -> None:
    with pytest.raises(MissingImage):
        decode_image(b"", SETTINGS)
