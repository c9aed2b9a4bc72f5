"""One recognition -> the answer a client asked for: JSON pages, plain text, hOCR or Textract blocks
(the searchable PDF is documents/searchable.py).

Everything here is pure: pages in, bytes or dicts out. Boxes are four corner points in page pixels.
"""
from __future__ import annotations

import json
import uuid
from html import escape
from typing import Any

from ocr_app.documents.lines import rows, words_of
from ocr_app.documents.pages import DocumentResult, PageResult

# Textract block ids are opaque strings; deriving them from positions keeps equal answers byte-equal.
_ID_NAMESPACE = uuid.UUID("6f1d1c1e-8c53-4c1b-9d57-0c2f1f0a7e11")
CONTENT_TYPES = {
    "json": "application/json",
    "textract": "application/json",
    "text": "text/plain; charset=utf-8",
    "hocr": "text/html; charset=utf-8",
    "pdf": "application/pdf",  # documents/searchable.py
}


def document_body(rec: DocumentResult, instance_id: str, engine: str) -> bytes:
    """A document's 200 body: `pages` with their lines, and every line again in `data` with its `page`."""
    pages = [{"page": p.number, "width": p.width, "height": p.height, "source": p.source, "data": p.lines,
              **({"preview": p.preview} if p.preview else {}),
              **({"recognizer": p.recognizer} if p.recognizer else {})} for p in rec.pages]
    flat = [{**line, "page": p.number} for p in rec.pages for line in p.lines]
    return json.dumps({
        "code": 0, "msg": "success", "pages": pages, "data": flat,
        "cost_time": round(rec.cost_time, 4), "cached": rec.cache in ("HIT", "COALESCED"),
        "instance": instance_id, "engine": engine,
    }, ensure_ascii=False, separators=(",", ":")).encode()


def as_text(pages: list[PageResult]) -> str:
    """Plain text in reading order: one row per line of the page, pages separated by a form feed.

    Lines side by side (a label and its amount) share a row, joined by a space, left to right.
    """
    return "\f".join("\n".join(" ".join(line["text"] for line in row) for row in rows(page.lines))
                     for page in pages) + "\n"


def as_hocr(pages: list[PageResult]) -> str:
    """hOCR 1.2 (XHTML): ocr_page > ocr_line > ocrx_word, with bbox and x_wconf (0-100)."""
    body = []
    for page in pages:
        p = page.number
        body.append(f'<div class="ocr_page" id="page_{p}" title="bbox 0 0 {page.width} {page.height}; '
                    f'ppageno {p - 1}">')
        for li, line in enumerate(page.lines, 1):
            body.append(f'<span class="ocr_line" id="line_{p}_{li}" title="bbox {_bbox(line["box"])}; '
                        f'x_wconf {_pct(line["confidence"]):.0f}">')
            for wi, word in enumerate(words_of(line), 1):
                body.append(f'<span class="ocrx_word" id="word_{p}_{li}_{wi}" title="bbox {_bbox(word["box"])}; '
                            f'x_wconf {_pct(word["confidence"]):.0f}">{escape(word["text"])}</span> ')
            body.append("</span>")
        body.append("</div>")
    return "\n".join([
        '<?xml version="1.0" encoding="UTF-8"?>',
        "<!DOCTYPE html>",
        '<html xmlns="http://www.w3.org/1999/xhtml" xml:lang="en" lang="en">',
        "<head><title>OCR Fleet</title>",
        '<meta http-equiv="Content-Type" content="text/html;charset=utf-8"/>',
        '<meta name="ocr-system" content="ocr-fleet"/>',
        '<meta name="ocr-capabilities" content="ocr_page ocr_line ocrx_word"/>',
        "</head><body>", *body, "</body></html>", "",
    ])


def as_textract(pages: list[PageResult]) -> dict[str, Any]:
    """The shape of AWS Textract's DetectDocumentText response: PAGE, LINE and WORD blocks."""
    blocks: list[dict[str, Any]] = []
    for page in pages:
        size = (page.width, page.height)
        page_block: dict[str, Any] = {
            "BlockType": "PAGE", "Geometry": _geometry([[0, 0], [size[0], 0], [size[0], size[1]], [0, size[1]]],
                                                      size),
            "Id": _block_id(page.number), "Relationships": [], "Page": page.number,
        }
        blocks.append(page_block)
        line_ids = []
        for li, line in enumerate(page.lines, 1):
            line_id = _block_id(page.number, li)
            word_blocks = [{
                "BlockType": "WORD", "Confidence": _pct(word["confidence"]), "Text": word["text"],
                "TextType": "PRINTED", "Geometry": _geometry(word["box"], size),
                "Id": _block_id(page.number, li, wi), "Page": page.number,
            } for wi, word in enumerate(words_of(line), 1)]
            blocks.append({
                "BlockType": "LINE", "Confidence": _pct(line["confidence"]), "Text": line["text"],
                "Geometry": _geometry(line["box"], size), "Id": line_id,
                "Relationships": [{"Type": "CHILD", "Ids": [w["Id"] for w in word_blocks]}],
                "Page": page.number,
            })
            blocks.extend(word_blocks)
            line_ids.append(line_id)
        page_block["Relationships"] = [{"Type": "CHILD", "Ids": line_ids}]
    return {"DocumentMetadata": {"Pages": len(pages)}, "Blocks": blocks,
            "DetectDocumentTextModelVersion": "1.0"}


def _bbox(box: list[list[float]]) -> str:
    xs, ys = [pt[0] for pt in box], [pt[1] for pt in box]
    return f"{int(min(xs))} {int(min(ys))} {int(round(max(xs)))} {int(round(max(ys)))}"


def _pct(confidence: float) -> float:
    return round(float(confidence) * 100.0, 3)


def _geometry(box: list[list[float]], size: tuple[int, int]) -> dict[str, Any]:
    """A box as Textract gives it: ratios of the page's width and height, clamped to 0-1."""
    width, height = max(1, size[0]), max(1, size[1])
    points = [(_ratio(x, width), _ratio(y, height)) for x, y in box]
    xs, ys = [x for x, _ in points], [y for _, y in points]
    return {
        "BoundingBox": {"Width": max(xs) - min(xs), "Height": max(ys) - min(ys), "Left": min(xs), "Top": min(ys)},
        "Polygon": [{"X": x, "Y": y} for x, y in points],
    }


def _ratio(value: float, whole: int) -> float:
    return min(1.0, max(0.0, float(value) / whole))


def _block_id(*path: int) -> str:
    return str(uuid.uuid5(_ID_NAMESPACE, "/".join(str(p) for p in path)))
