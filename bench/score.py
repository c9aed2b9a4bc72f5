"""Word accuracy of an OCR answer against the ground truth the generator drew.

English is scored by words, Chinese by characters (it has no spaces); the score is the share of the
truth's tokens found in the answer, counted with multiplicity, so extra text is not rewarded.
"""
from __future__ import annotations

import re
import unicodedata
from collections import Counter
from collections.abc import Iterable
from typing import Any

_WORD = re.compile(r"[0-9a-z%.]+")


def tokens(text: str) -> list[str]:
    """Lower-case words for Latin script, single characters for CJK; punctuation is dropped."""
    out: list[str] = []
    for chunk in _split_cjk(unicodedata.normalize("NFKC", text).lower()):
        if len(chunk) == 1 and _is_cjk(chunk):
            out.append(chunk)
        else:
            out.extend(w.strip(".") for w in _WORD.findall(chunk) if w.strip("."))
    return out


def _is_cjk(ch: str) -> bool:
    return ch == "\u3007" or "\u3400" <= ch <= "\u9fff" or "\uf900" <= ch <= "\ufaff"


def _split_cjk(text: str) -> Iterable[str]:
    buf = ""
    for ch in text:
        if _is_cjk(ch):
            if buf:
                yield buf
                buf = ""
            yield ch
        else:
            buf += ch
    if buf:
        yield buf


def recall(truth: Iterable[str], answer: Iterable[str]) -> float:
    """Share of the truth's tokens that appear in the answer (multiset intersection)."""
    want = Counter(t for line in truth for t in tokens(line))
    got = Counter(t for line in answer for t in tokens(line))
    total = sum(want.values())
    return sum((want & got).values()) / total if total else 1.0


def answer_lines(payload: Any) -> list[str]:
    """Text lines from the fleet's JSON ("text") or rapidocr-api's ("rec_txt"), wherever they sit."""
    found: list[str] = []
    if isinstance(payload, dict):
        for key, value in payload.items():
            if key in ("text", "rec_txt") and isinstance(value, str):
                found.append(value)
            else:
                found.extend(answer_lines(value))
    elif isinstance(payload, list):
        for item in payload:
            found.extend(answer_lines(item))
    return found
