"""Generated pages per language, with their truth: clean scans and photo-like pages of common words.

Tests and the languages bench both draw from here, so a reading is always scored against the lines that
were drawn. A page is deterministic for (code, kind, seed) on a machine with the same fonts, and fast
(well under 0.3 s), so a bench can make its pages on the fly. Right-to-left lines (Arabic, Hebrew) are
shaped and ordered by Pillow's libraqm layout and set flush right; the truth is in logical order.
Both kinds come back as PNG: a photo's JPEG damage is baked in and re-encoded losslessly.
"""
from __future__ import annotations

import io
import random
import subprocess
import zlib
from dataclasses import dataclass
from functools import cache, lru_cache
from typing import Any, Literal

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont, features

from .langwords import WORDS

Kind = Literal["scan", "photo"]
KINDS: tuple[Kind, ...] = ("scan", "photo")
WIDTH = 1000
FONT_PX = 30
PHOTO_JPEG_QUALITY = 22


@dataclass(frozen=True)
class Script:
    """How a script is set: the fontconfig family (and the package that brings it), and the word joiner."""

    name: str
    family: str
    package: str
    joiner: str = " "
    rtl: bool = False


_DEJAVU = "fonts-dejavu-core"
_NOTO = "fonts-noto-core"
SCRIPTS: dict[str, Script] = {
    "Latin": Script("Latin", "DejaVu Sans", _DEJAVU),
    "Greek": Script("Greek", "DejaVu Sans", _DEJAVU),
    "Cyrillic": Script("Cyrillic", "DejaVu Sans", _DEJAVU),
    "Arabic": Script("Arabic", "DejaVu Sans", _DEJAVU, rtl=True),
    "Hebrew": Script("Hebrew", "DejaVu Sans", _DEJAVU, rtl=True),
    "Devanagari": Script("Devanagari", "Noto Sans Devanagari", _NOTO),
    "Tamil": Script("Tamil", "Noto Sans Tamil", _NOTO),
    "Telugu": Script("Telugu", "Noto Sans Telugu", _NOTO),
    "Thai": Script("Thai", "Noto Sans Thai", _NOTO),
    "Hangul": Script("Hangul", "Noto Sans CJK KR", "fonts-noto-cjk"),
    "Japanese": Script("Japanese", "Noto Sans CJK JP", "fonts-noto-cjk", joiner=""),
    "Han": Script("Han", "WenQuanYi Zen Hei", "fonts-wqy-zenhei", joiner=""),
}
# language -> script name (the bench's own table: the product's catalog lives in ocr_app/models)
LANG_SCRIPT: dict[str, str] = {
    **{code: "Latin" for code in ("en", "de", "es", "pt", "pl", "fr", "tr", "vi")},
    "el": "Greek", "ru": "Cyrillic", "uk": "Cyrillic", "ar": "Arabic", "he": "Hebrew", "hi": "Devanagari",
    "ta": "Tamil", "te": "Telugu", "th": "Thai", "ko": "Hangul", "ja": "Japanese", "zh": "Han",
}
CODES: tuple[str, ...] = tuple(LANG_SCRIPT)


class FontMissing(RuntimeError):
    """A font a script needs is not installed; the message names the package."""


def script_of(code: str) -> Script:
    """The script a language's pages are set in; KeyError names the codes there are."""
    try:
        return SCRIPTS[LANG_SCRIPT[code]]
    except KeyError:
        raise KeyError(f"no generated pages for {code!r}; there are: {', '.join(CODES)}") from None


@cache
def _font_file(family: str, package: str) -> tuple[str, int]:
    """Ask fontconfig for the file (and face index in a collection), so no install path is in the code."""
    try:
        out = subprocess.run(["fc-match", "-f", "%{family}\n%{file}\n%{index}", family], capture_output=True,
                             text=True, check=True, timeout=20).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        raise FontMissing(f"fontconfig (fc-match) is needed to find the font {family!r}: {exc}") from exc
    lines = out.splitlines()
    if len(lines) >= 3 and family.lower() in lines[0].lower():
        return lines[1], int(lines[2] or 0)
    raise FontMissing(f"font {family!r} is not installed (install the {package} package)")


@lru_cache(maxsize=64)
def _font(family: str, package: str, size: int) -> ImageFont.FreeTypeFont:
    path, index = _font_file(family, package)
    layout = ImageFont.Layout.RAQM if features.check("raqm") else ImageFont.Layout.BASIC
    return ImageFont.truetype(path, size, index=index, layout_engine=layout)


def _rng_seed(code: str, kind: str, seed: int) -> int:
    # crc32, not hash(): str hashes change from one interpreter to the next
    return zlib.crc32(f"{code}/{kind}/{seed}".encode()) & 0x7FFFFFFF


def _line(rng: random.Random, words: tuple[str, ...], script: Script, font: ImageFont.FreeTypeFont,
          draw: ImageDraw.ImageDraw, width: float) -> str:
    """Random words until the line would be wider than `width` (at least two words)."""
    picked = [rng.choice(words), rng.choice(words)]
    while True:
        word = rng.choice(words)
        if draw.textlength(script.joiner.join([*picked, word]), font=font) > width:
            return script.joiner.join(picked)
        picked.append(word)


def draw_scan(code: str, rng: random.Random, lines: int) -> tuple[Image.Image, list[str]]:
    """A clean page: dark text on near-white paper, one random line of common words per row."""
    script = script_of(code)
    if script.rtl and not features.check("raqm"):
        raise FontMissing("right-to-left pages need Pillow with libraqm (the Pillow wheels bundle it)")
    font = _font(script.family, script.package, FONT_PX)
    margin = 60
    pitch = int(FONT_PX * 2.0)
    height = 2 * margin + lines * pitch
    img = Image.new("L", (WIDTH, height), rng.randint(240, 252))
    draw = ImageDraw.Draw(img)
    truth: list[str] = []
    for row in range(lines):
        text = _line(rng, WORDS[code], script, font, draw, rng.uniform(0.7, 0.92) * (WIDTH - 2 * margin))
        y = margin + row * pitch + pitch // 2
        ink = rng.randint(10, 40)
        if script.rtl:
            draw.text((WIDTH - margin, y), text, font=font, fill=ink, anchor="rm", direction="rtl")
        else:
            draw.text((margin, y), text, font=font, fill=ink, anchor="lm")
        truth.append(text)
    return img, truth


def photograph(img: Image.Image, rng: random.Random, np_rng: np.random.Generator) -> Image.Image:
    """A phone photo of the page: slight perspective, uneven light, low contrast, blur, noise, heavy JPEG."""
    arr: Any = np.asarray(img.convert("RGB"), dtype=np.float32)
    h, w = arr.shape[:2]
    j = 0.035
    src = np.array([[0, 0], [w, 0], [w, h], [0, h]], dtype=np.float32)
    off = [(rng.uniform(0, j) * w, rng.uniform(0, j) * h) for _ in range(4)]
    dst = np.array([[off[0][0], off[0][1]], [w - off[1][0], off[1][1]], [w - off[2][0], h - off[2][1]],
                    [off[3][0], h - off[3][1]]], dtype=np.float32)
    arr = cv2.warpPerspective(arr, cv2.getPerspectiveTransform(src, dst), (w, h), borderValue=(90, 85, 80))
    arr = 140 + (arr - 128) * rng.uniform(0.45, 0.6)  # low contrast, greyish paper
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    cx, cy = rng.uniform(0, w), rng.uniform(0, h)
    light = 0.55 + 0.45 * np.exp(-(((xx - cx) / w) ** 2 + ((yy - cy) / h) ** 2) * 2.0)
    tint = np.array([1.0, rng.uniform(0.95, 1.0), rng.uniform(0.85, 0.95)], dtype=np.float32)  # warm lamp
    arr = arr * light[..., None] * tint
    arr = cv2.GaussianBlur(arr, (0, 0), rng.uniform(0.8, 1.1))
    arr = arr + np_rng.normal(0.0, 5.0, size=arr.shape).astype(np.float32)
    out = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))
    buf = io.BytesIO()
    out.save(buf, format="JPEG", quality=PHOTO_JPEG_QUALITY)
    buf.seek(0)
    with Image.open(buf) as jpeg:
        return jpeg.convert("RGB")


def render(code: str, kind: Kind, seed: int, lines: int = 8) -> tuple[Image.Image, list[str]]:
    """page()'s picture before encoding, for callers that want pixels."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
    if lines < 1:
        raise ValueError(f"lines must be at least 1, got {lines}")
    rng = random.Random(_rng_seed(code, kind, seed))
    img, truth = draw_scan(code, rng, lines)
    if kind == "photo":
        img = photograph(img, rng, np.random.default_rng(_rng_seed(code, "noise", seed)))
    return img, truth


def page(code: str, kind: Kind, seed: int, lines: int = 8) -> tuple[bytes, list[str]]:
    """A PNG of `lines` random lines of the language's common words, and those lines (logical order)."""
    img, truth = render(code, kind, seed, lines)
    buf = io.BytesIO()
    img.save(buf, format="PNG", compress_level=1)
    return buf.getvalue(), truth
