"""Generated text pages with known lines and where each was drawn: for reading order and orientation."""
from __future__ import annotations

import io
import random
from dataclasses import dataclass

from helpers import find_font
from PIL import Image, ImageDraw, ImageFont

WORDS = ("river", "cobalt", "maple", "signal", "harbor", "velvet", "orbit", "canyon", "lantern", "meadow",
         "copper", "falcon", "glacier", "summit", "quartz", "willow", "ember", "tundra", "prism", "delta")


@dataclass(frozen=True)
class Page:
    image: Image.Image
    lines: list[str]  # in reading order
    boxes: list[tuple[int, int, int, int]]  # where each line was drawn (x0, y0, x1, y1), upright

    def jpeg(self, angle: int = 0) -> bytes:
        """The page turned counter-clockwise by `angle` degrees, as a JPEG."""
        buf = io.BytesIO()
        self.image.rotate(angle, expand=True).save(buf, "JPEG", quality=92)
        return buf.getvalue()


NUMBERS = ("one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")


def _line(rng: random.Random, index: int, tag: str) -> str:
    return f"{tag} {NUMBERS[index]} " + " ".join(rng.sample(WORDS, 2))


def two_column_page(seed: int = 3, rows: int = 7, size: tuple[int, int] = (1240, 1000)) -> Page:
    """A title, two columns of `rows` lines, a footer: the reading order is title, left, right, footer."""
    rng = random.Random(seed)
    img = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(img)
    font = ImageFont.truetype(find_font("DejaVuSans.ttf"), 30)
    lines: list[str] = []
    boxes: list[tuple[int, int, int, int]] = []

    def put(x: int, y: int, text: str) -> None:
        draw.text((x, y), text, fill="black", font=font)
        left, top, right, bottom = draw.textbbox((x, y), text, font=font)
        lines.append(text)
        boxes.append((int(left), int(top), int(right), int(bottom)))

    put(60, 40, "Title " + " ".join(rng.sample(WORDS, 4)))
    for col, x in (("Left", 60), ("Right", 660)):
        for i in range(rows):
            put(x, 140 + i * 60, _line(rng, i, col))
    put(300, 160 + rows * 60, "Footer " + " ".join(rng.sample(WORDS, 5)))  # centred, across the gutter
    return Page(img, lines, boxes)
