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


def _norm(text: str) -> str:
    """NFKC and no spaces: a space the engine adds or drops between two CJK characters is not an error."""
    return "".join(unicodedata.normalize("NFKC", text).split())


def cer_ordered(truth: list[str], answer: list[str]) -> float:
    """Character error rate of the whole page read in the engine's line order (reading order counts)."""
    from rapidfuzz.distance import Levenshtein

    want = "\n".join(_norm(line) for line in truth)
    got = "\n".join(_norm(line) for line in answer)
    return Levenshtein.distance(want, got) / max(1, len(want))


def cer_lines(truth: list[str], answer: list[str]) -> float:
    """Character error rate with lines matched to lines (order ignored).

    Pairs are taken greedily by lowest normalized distance; an unmatched truth line costs all its
    characters, an unmatched answer line all of its own (so made-up text is not free).
    """
    from rapidfuzz.distance import Levenshtein

    want = [_norm(line) for line in truth]
    got = [_norm(line) for line in answer]
    pairs = sorted((Levenshtein.normalized_distance(w, g), i, j) for i, w in enumerate(want) for j, g in enumerate(got))
    used_w: set[int] = set()
    used_g: set[int] = set()
    errors = 0
    for score, i, j in pairs:
        if i in used_w or j in used_g or score >= 1.0:
            continue
        used_w.add(i)
        used_g.add(j)
        errors += Levenshtein.distance(want[i], got[j])
    errors += sum(len(w) for i, w in enumerate(want) if i not in used_w)
    errors += sum(len(g) for j, g in enumerate(got) if j not in used_g)
    return errors / max(1, sum(len(w) for w in want))
