"""The hard set: generated pages with known truth that separate the engine profiles.

Dense small print of random Chinese and English text (nothing a language model could guess), then one
kind of damage per page: perspective, blur, low contrast, uneven light, heavy JPEG, or the page turned
90 or 180 degrees. Pure given the seed and the fonts; the truth (upright reading order) is committed
in bench/truth/hard.json and `python -m bench.hardset --check` proves the generator still draws it.
"""
from __future__ import annotations

import argparse
import io
import json
import random
import string
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from .images import Fonts

HARD_SEED = 7
TRUTH_FILE = Path(__file__).resolve().parent / "truth" / "hard.json"
DAMAGE = ("clean", "perspective", "blur", "low_contrast", "uneven_light", "jpeg", "turned_90", "turned_180")
# Common simplified characters (GB2312 level 1 rows 16-55 decode to 3755 of them), all in the fonts and
# the dictionaries of every profile: random strings of them are hard to guess and fair to each model.
_GB2312_LEVEL1 = [bytes([row, col]).decode("gb2312") for row in range(0xB0, 0xD8) for col in range(0xA1, 0xFF)
                  if not (row == 0xD7 and col > 0xF9)]


@dataclass(frozen=True)
class HardPage:
    name: str
    damage: str
    truth: tuple[str, ...]
    data: bytes


def _en_line(rng: random.Random, chars: int) -> str:
    words: list[str] = []
    while sum(len(w) + 1 for w in words) < chars:
        kind = rng.random()
        if kind < 0.15:
            words.append(str(rng.randint(0, 99999)))
        else:
            word = "".join(rng.choice(string.ascii_lowercase) for _ in range(rng.randint(2, 9)))
            words.append(word.capitalize() if kind > 0.8 else word)
    return " ".join(words)[:chars].rstrip()


def _zh_line(rng: random.Random, chars: int) -> str:
    return "".join(rng.choice(_GB2312_LEVEL1) for _ in range(chars))


def _draw_page(rng: random.Random, fonts: Fonts, width: int, height: int) -> tuple[Image.Image, list[str]]:
    """Dense print: 14-18 px text, lines mixing the two languages, a tight line pitch."""
    img = Image.new("RGB", (width, height), (248, 247, 244))
    draw = ImageDraw.Draw(img)
    size = rng.randint(15, 19)
    latin = ImageFont.truetype(fonts.sans, size)
    cjk = ImageFont.truetype(fonts.cjk, size)
    margin, pitch = 40, int(size * 1.8)
    truth: list[str] = []
    y = margin
    while y + pitch < height - margin:
        zh = rng.random() < 0.5
        font = cjk if zh else latin
        line = _zh_line(rng, rng.randint(12, 30)) if zh else _en_line(rng, rng.randint(30, 70))
        while draw.textlength(line, font=font) > width - 2 * margin:
            line = line[:-1].rstrip()
        draw.text((margin, y), line, font=font, fill=(20, 20, 20))
        truth.append(line)
        y += pitch
    return img, truth


def _damage(img: Image.Image, damage: str, rng: random.Random, np_rng: np.random.Generator) -> tuple[Image.Image, int]:
    """Apply one kind of damage; returns the image and the JPEG quality to save it with."""
    arr: Any = np.asarray(img, dtype=np.float32)
    h, w = arr.shape[:2]
    quality = 85
    if damage == "perspective":
        j = 0.06
        src = np.array([[0, 0], [w, 0], [w, h], [0, h]], dtype=np.float32)
        dx = [rng.uniform(0, j) * w for _ in range(4)]
        dy = [rng.uniform(0, j) * h for _ in range(4)]
        dst = np.array([[dx[0], dy[0]], [w - dx[1], dy[1]], [w - dx[2], h - dy[2]], [dx[3], h - dy[3]]],
                       dtype=np.float32)
        arr = cv2.warpPerspective(arr, cv2.getPerspectiveTransform(src, dst), (w, h), borderValue=(120, 120, 120))
    elif damage == "blur":
        arr = cv2.GaussianBlur(arr, (0, 0), 1.3)
    elif damage == "low_contrast":
        arr = 150 + (arr - 128) * 0.22
    elif damage == "uneven_light":
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        cx, cy = rng.uniform(0, w), rng.uniform(0, h)
        light = 0.35 + 0.65 * np.exp(-(((xx - cx) / w) ** 2 + ((yy - cy) / h) ** 2) * 2.5)
        arr = arr * light[..., None]
    elif damage == "jpeg":
        quality = 12
    arr = arr + np_rng.normal(0.0, 4.0, size=arr.shape).astype(np.float32)
    out = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))
    if damage == "turned_90":
        out = out.transpose(Image.Transpose.ROTATE_90)
    elif damage == "turned_180":
        out = out.transpose(Image.Transpose.ROTATE_180)
    return out, quality


def render(index: int, seed: int = HARD_SEED, fonts: Fonts | None = None) -> HardPage:
    """Page `index` of the set (its damage is DAMAGE[index % len(DAMAGE)]): JPEG bytes and truth."""
    fonts = fonts or Fonts.find()
    rng = random.Random(seed * 7919 + index)
    np_rng = np.random.default_rng(seed * 7919 + index)
    damage = DAMAGE[index % len(DAMAGE)]
    img, truth = _draw_page(rng, fonts, 900, 1100)
    img, quality = _damage(img, damage, rng, np_rng)
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=quality)
    return HardPage(f"hard_{index:02d}_{damage}", damage, tuple(truth), buf.getvalue())


def generate(out_dir: Path, count: int = len(DAMAGE), seed: int = HARD_SEED) -> list[HardPage]:
    """Write `count` pages as JPEG files; the truth is what render() drew."""
    out_dir.mkdir(parents=True, exist_ok=True)
    fonts = Fonts.find()
    pages = [render(i, seed, fonts) for i in range(count)]
    for page in pages:
        (out_dir / f"{page.name}.jpg").write_bytes(page.data)
    return pages


def truth_json(pages: list[HardPage], seed: int) -> dict[str, object]:
    return {"seed": seed, "pages": [{"name": p.name, "damage": p.damage, "lines": list(p.truth)} for p in pages]}


def load_truth(path: Path = TRUTH_FILE) -> dict[str, list[str]]:
    """The committed truth: page name -> lines in upright reading order."""
    data = json.loads(path.read_text(encoding="utf-8"))
    return {page["name"]: page["lines"] for page in data["pages"]}


def main(argv: list[str] | None = None) -> int:
    """Regenerate the images (and with --write the committed truth), or --check the truth is still drawn."""
    parser = argparse.ArgumentParser(prog="python -m bench.hardset", description=main.__doc__)
    parser.add_argument("out", type=Path, nargs="?", help="folder for the JPEG files")
    parser.add_argument("--count", type=int, default=len(DAMAGE))
    parser.add_argument("--write", action="store_true", help="rewrite bench/truth/hard.json")
    parser.add_argument("--check", action="store_true", help="fail if the generator no longer draws the truth")
    args = parser.parse_args(argv)
    pages = generate(args.out, args.count) if args.out else [render(i) for i in range(args.count)]
    doc = truth_json(pages, HARD_SEED)
    if args.write:
        TRUTH_FILE.parent.mkdir(parents=True, exist_ok=True)
        TRUTH_FILE.write_text(json.dumps(doc, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    if args.check and load_truth() != {p.name: list(p.truth) for p in pages}:
        print("the generator no longer draws bench/truth/hard.json", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
