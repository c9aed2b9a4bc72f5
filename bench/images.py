"""The bench image set: a seeded, generated set of document-like images, or a folder of real photos.

The generated set keeps its ground truth so the report can score the fleet's answers; the same seed
always gives the same bytes on the same machine, so two runs load the fleet with the same work.
"""
from __future__ import annotations

import io
import json
import random
import subprocess
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

DEFAULT_SEED = 20240611
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
MANIFEST = "manifest.json"

# (name, kind, lang, width, height): the set spans pages in two sizes, receipts and signs in both languages.
LAYOUT: tuple[tuple[str, str, str, int, int], ...] = (
    ("page_en_large", "page", "en", 1200, 1600),
    ("page_zh_small", "page", "zh", 800, 1000),
    ("receipt_en", "receipt", "en", 400, 900),
    ("receipt_zh", "receipt", "zh", 400, 900),
    ("sign_en", "sign", "en", 800, 400),
    ("sign_zh", "sign", "zh", 800, 400),
)

EN_WORDS = (
    "the fleet serves every request from a pool of engines behind one gateway and keeps answers in a "
    "shared cache so that repeated pages cost almost nothing while new pages wait for a free core "
    "report invoice order total amount paid customer account balance shipping address delivery date "
    "quarterly revenue grew across all regions according to the latest statement from the finance team "
    "please keep this document for your records and contact support with any questions about the service"
).split()
ZH_PHRASES = (
    "欢迎光临", "本店商品", "价格优惠", "营业时间", "上午九点", "下午六点", "会员积分", "谢谢惠顾",
    "请保留小票", "文字识别", "服务器集群", "负载均衡", "缓存命中", "请求数量", "响应时间", "系统稳定",
    "数据安全", "北京市", "上海市", "人民路", "发票号码", "合计金额", "现金支付", "找零", "收银员",
    "年度报告", "销售增长", "客户服务", "联系我们", "注意安全", "禁止吸烟", "出口", "停车场", "地铁站",
)
EN_ITEMS = ("COFFEE", "BAGEL", "MILK 1L", "APPLES", "BREAD", "BUTTER", "ORANGE JUICE", "TEA", "EGGS 12")
ZH_ITEMS = ("咖啡", "面包", "牛奶", "苹果", "鸡蛋", "橙汁", "绿茶", "米饭", "饺子")
EN_SIGNS = (("EXIT", "NO PARKING"), ("OPEN", "24 HOURS"), ("SALE", "50% OFF"))
ZH_SIGNS = (("出口", "禁止停车"), ("营业中", "欢迎光临"), ("地铁站", "二号线"))


class FontMissing(RuntimeError):
    """A font the generator needs is not installed; the message names the package."""


@dataclass(frozen=True)
class BenchImage:
    """One image of the set; `truth` is the text drawn on it (None for real photos)."""

    name: str
    path: Path
    kind: str
    lang: str
    width: int
    height: int
    size_bytes: int
    truth: tuple[str, ...] | None = None

    def to_json(self) -> dict[str, object]:
        data = asdict(self)
        data["path"] = self.path.name
        data["truth"] = list(self.truth) if self.truth is not None else None
        return data


def find_font(family: str, style: str = "Book", package: str = "") -> str:
    """Ask fontconfig for a font file, so no install path is written into the code."""
    try:
        out = subprocess.run(
            ["fc-match", "-f", "%{family}\n%{file}", f"{family}:style={style}"],
            capture_output=True, text=True, check=True, timeout=20,
        ).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        raise FontMissing(f"fontconfig (fc-match) is needed to find the font {family!r}: {exc}") from exc
    lines = out.splitlines()
    if len(lines) >= 2 and family.lower() in lines[0].lower():
        return lines[1]
    hint = f" (install the {package} package)" if package else ""
    raise FontMissing(f"font {family!r} is not installed{hint}")


@dataclass(frozen=True)
class Fonts:
    """Font files for each role; resolved once per generation."""

    sans: str
    mono: str
    bold: str
    cjk: str

    @classmethod
    def find(cls) -> Fonts:
        return cls(
            sans=find_font("DejaVu Sans", "Book", "fonts-dejavu-core"),
            mono=find_font("DejaVu Sans Mono", "Book", "fonts-dejavu-core"),
            bold=find_font("DejaVu Sans", "Bold", "fonts-dejavu-core"),
            cjk=find_font("WenQuanYi Zen Hei", "Regular", "fonts-wqy-zenhei"),
        )


def _en_sentence(rng: random.Random, words: int) -> str:
    text = " ".join(rng.choice(EN_WORDS) for _ in range(words))
    return text[0].upper() + text[1:]


def _zh_sentence(rng: random.Random, phrases: int) -> str:
    return "，".join(rng.choice(ZH_PHRASES) for _ in range(phrases)) + "。"


def _page(rng: random.Random, lang: str, width: int, height: int, fonts: Fonts) -> tuple[Image.Image, list[str]]:
    img = Image.new("RGB", (width, height), (rng.randint(236, 250),) * 3)
    draw = ImageDraw.Draw(img)
    margin = width // 12
    size = max(18, width // 40)
    body = ImageFont.truetype(fonts.cjk if lang == "zh" else fonts.sans, size)
    title_font = ImageFont.truetype(fonts.cjk if lang == "zh" else fonts.bold, int(size * 1.5))
    title = "年度报告 二〇二四" if lang == "zh" else "Quarterly Report 2024"
    draw.text((margin, margin), title, font=title_font, fill=(20, 20, 20))
    truth = [title]
    y = margin + int(size * 3)
    line_gap = int(size * 1.9)
    rows = 16 if height >= 1400 else 11
    for row in range(rows):
        if row % 5 == 4:  # a paragraph break keeps the layout document-like
            y += line_gap // 2
            continue
        if lang == "zh":
            line = _zh_sentence(rng, 3 if width < 1000 else 4)
        else:
            line = _en_sentence(rng, 7 if width < 1000 else 9)
        while draw.textlength(line, font=body) > width - 2 * margin and len(line) > 4:
            line = line[:-2].rstrip("，。 ") + ("。" if lang == "zh" else "")
        draw.text((margin, y), line, font=body, fill=(30, 30, 30))
        truth.append(line)
        y += line_gap
    return img, truth


def _receipt(rng: random.Random, lang: str, width: int, height: int, fonts: Fonts) -> tuple[Image.Image, list[str]]:
    img = Image.new("RGB", (width, height), (rng.randint(240, 252), rng.randint(238, 250), rng.randint(228, 240)))
    draw = ImageDraw.Draw(img)
    font = ImageFont.truetype(fonts.cjk if lang == "zh" else fonts.mono, 22)
    head_font = ImageFont.truetype(fonts.cjk if lang == "zh" else fonts.bold, 30)
    shop = "便利店 人民路店" if lang == "zh" else "CORNER MARKET"
    draw.text((30, 40), shop, font=head_font, fill=(10, 10, 10))
    truth = [shop]
    y, total = 120, 0
    items = ZH_ITEMS if lang == "zh" else EN_ITEMS
    for _ in range(9):
        name = rng.choice(items)
        cents = rng.randint(99, 2999)
        total += cents
        line = f"{name}  {cents // 100}.{cents % 100:02d}"
        draw.text((30, y), line, font=font, fill=(25, 25, 25))
        truth.append(line)
        y += 46
    total_line = f"{'合计' if lang == 'zh' else 'TOTAL'}  {total // 100}.{total % 100:02d}"
    draw.text((30, y + 30), total_line, font=head_font, fill=(0, 0, 0))
    truth.append(total_line)
    thanks = "谢谢惠顾" if lang == "zh" else "THANK YOU"
    draw.text((30, y + 110), thanks, font=font, fill=(40, 40, 40))
    truth.append(thanks)
    return img, truth


def _sign(rng: random.Random, lang: str, width: int, height: int, fonts: Fonts) -> tuple[Image.Image, list[str]]:
    bg = rng.choice(((200, 30, 30), (20, 90, 170), (20, 120, 60)))
    img = Image.new("RGB", (width, height), bg)
    draw = ImageDraw.Draw(img)
    draw.rectangle((12, 12, width - 13, height - 13), outline=(250, 250, 250), width=8)
    big, small = rng.choice(ZH_SIGNS if lang == "zh" else EN_SIGNS)
    big_font = ImageFont.truetype(fonts.cjk if lang == "zh" else fonts.bold, height // 3)
    small_font = ImageFont.truetype(fonts.cjk if lang == "zh" else fonts.bold, height // 7)
    for text, font, y in ((big, big_font, height // 6), (small, small_font, height * 5 // 8)):
        x = (width - draw.textlength(text, font=font)) / 2
        draw.text((x, y), text, font=font, fill=(255, 255, 255))
    return img, [big, small]


def _degrade(img: Image.Image, rng: random.Random, np_rng: np.random.Generator) -> Image.Image:
    """Photo-like damage: a slight tilt, blur and sensor noise, so the engine does real work."""
    fill = img.getpixel((2, 2))
    img = img.rotate(rng.uniform(-2.0, 2.0), resample=Image.Resampling.BICUBIC, fillcolor=fill)
    img = img.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 0.8)))
    arr = np.asarray(img, dtype=np.float32)
    arr += np_rng.normal(0.0, 6.0, size=arr.shape).astype(np.float32)
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))


def render(name: str, seed: int = DEFAULT_SEED, fonts: Fonts | None = None) -> tuple[bytes, list[str]]:
    """JPEG bytes and ground truth of one layout entry; pure given the seed and the fonts."""
    spec = {row[0]: row for row in LAYOUT}[name]
    _, kind, lang, width, height = spec
    fonts = fonts or Fonts.find()
    index = [row[0] for row in LAYOUT].index(name)
    rng = random.Random(seed * 1000 + index)
    np_rng = np.random.default_rng(seed * 1000 + index)
    drawer = {"page": _page, "receipt": _receipt, "sign": _sign}[kind]
    img, truth = drawer(rng, lang, width, height, fonts)
    img = _degrade(img, rng, np_rng)
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=88)
    return buf.getvalue(), truth


def generate(out_dir: Path, seed: int = DEFAULT_SEED, names: Sequence[str] | None = None) -> list[BenchImage]:
    """Write the generated set and its manifest (with ground truth) into out_dir."""
    out_dir.mkdir(parents=True, exist_ok=True)
    fonts = Fonts.find()
    images: list[BenchImage] = []
    for name, kind, lang, width, height in LAYOUT:
        if names is not None and name not in names:
            continue
        data, truth = render(name, seed, fonts)
        path = out_dir / f"{name}.jpg"
        path.write_bytes(data)
        images.append(BenchImage(name, path, kind, lang, width, height, len(data), tuple(truth)))
    (out_dir / MANIFEST).write_text(
        json.dumps({"seed": seed, "images": [im.to_json() for im in images]}, ensure_ascii=False, indent=2),
        encoding="utf-8",
    )
    return images


def load_dir(folder: Path) -> list[BenchImage]:
    """Any folder of real photos; a sibling `<name>.txt` is taken as that image's ground truth."""
    paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not paths:
        raise FileNotFoundError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {folder}")
    images = []
    for path in paths:
        with Image.open(path) as img:
            width, height = img.size
        side = path.with_suffix(".txt")
        truth = tuple(side.read_text(encoding="utf-8").splitlines()) if side.exists() else None
        images.append(BenchImage(path.stem, path, "photo", "unknown", width, height, path.stat().st_size, truth))
    return images


def content_type(path: Path) -> str:
    """The MIME type ab sends with the raw-body POST."""
    suffix = path.suffix.lower()
    return {
        ".png": "image/png", ".bmp": "image/bmp", ".webp": "image/webp",
        ".tif": "image/tiff", ".tiff": "image/tiff",
    }.get(suffix, "image/jpeg")
