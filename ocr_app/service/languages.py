"""Which recognizer reads a page, from its `lang=`: PP-OCR, Tesseract's own layout, or PP-OCR's lines read by
Tesseract; and for ``lang=auto``, the page's script first.

`LanguageRouter.check` refuses at once what cannot run (a pack that is not installed, a profile that
cannot read the language), before any work. `LanguageRouter.reading` gives one page's `Reading`: the
function the page reader calls on the upright image, and, once it ran, which recognizer it chose.
"""
from __future__ import annotations

import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from ocr_app.engine.orientation import sure_text
from ocr_app.engine.tesseract import ScriptGuess, Tesseract
from ocr_app.errors import InvalidOption, LanguageNeedsProfile, LanguageNotInstalled
from ocr_app.models import languages as catalog
from ocr_app.models.languages import LINES, PPOCR, TESSERACT, Language
from ocr_app.results import OcrResult

AUTO = "auto"
# Scripts PP-OCR reads (lang=auto sends them there); the rest go to Tesseract.
PPOCR_SCRIPTS = ("Latin", "Han", "Japanese")
# OSD's script names -> the catalog's (OSD says "Korean" for Hangul pages and "Katakana" for some Japanese).
OSD_SCRIPTS = {"Korean": "Hangul", "Hiragana": "Japanese", "Katakana": "Japanese", "HanS": "Han", "HanT": "Han"}
# Below this OSD script confidence lang=auto keeps PP-OCR (what the instance read before languages).
MIN_SCRIPT_CONFIDENCE = 1.0
# OSD's orientation confidence a page needs before a turn PP-OCR's classifier found is made: upright
# generated Hebrew pages get 18-25 for 0 degrees, Korean photos a wrong 180 at under 4.
MIN_TURN_CONFIDENCE = 5.0
# lang=auto's second look: a PP-OCR reading of a page OSD found no script or Latin on, surer than this,
# stands; else the widest lines are read by these scripts' Tesseract (and OSD's guess), the surest wins.
PPOCR_SURE = 0.9
SECOND_LOOK = ("Hangul", "Thai")
SECOND_LOOK_LINES = 2
# Tesseract languages lang=auto loads for one script, the catalog's first installed ones: Russian and
# Ukrainian together read both (0.0-0.8% CER) where either alone misreads the other (4-11%), in about
# the same time.
AUTO_MAX_LANGS = 2
# Letters only Vietnamese uses among the Latin languages: a PP-OCR reading with enough of them is read again
# with Tesseract's Vietnamese (lines route), which reads it far better.
VIETNAMESE_ONLY = set("ăắằẳẵặơớờởỡợưứừửữựđạảấầẩẫậẹẻẽếềểễệỉịọỏốồổỗộụủỳỵỷỹ")
VIETNAMESE_SHARE = 0.02
# Profiles whose PP-OCR models have no Japanese (PP-OCRv6 tiny).
NO_JAPANESE = ("fast",)


class PageEngine(Protocol):
    """What the router needs of a PP-OCR engine: reading a page, and its detector alone."""

    def recognize(self, bgr: np.ndarray, words: bool = False) -> OcrResult: ...
    def detect(self, bgr: np.ndarray) -> list[list[list[float]]]: ...


@dataclass(frozen=True)
class Recognizer:
    """Which language and recognizer read a page: the answer's `recognizer` field."""

    lang: str | None  # the codes read ("de,en"); None: the profile's own languages (no lang asked)
    engine: str  # "rapidocr" (or "paddleocr": OCR_ENGINE) for PP-OCR, "tesseract"
    route: str  # ppocr | tesseract | lines
    script: str | None = None  # lang=auto: the script found
    right_to_left: bool = False

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"lang": self.lang, "engine": self.engine, "route": self.route}
        if self.script is not None:
            out["script"] = self.script
        if self.right_to_left:
            out["right_to_left"] = True
        return out

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Recognizer:
        return cls(lang=raw.get("lang"), engine=str(raw.get("engine", "")), route=str(raw.get("route", "")),
                   script=raw.get("script"), right_to_left=bool(raw.get("right_to_left", False)))


@dataclass
class Reading:
    """One page's reading: `read` is called on the upright image (maybe twice, see read_upright); `chosen`
    says what read it. Made per page, never shared."""

    read: Callable[[np.ndarray], OcrResult]
    chosen: Recognizer | None = None
    uses: list[str] = field(default_factory=list)
    # (page as sent, the classifier's angle) -> whether to turn it: set when Tesseract may read the page
    confirm_turn: Callable[[np.ndarray, int], bool] | None = None
    guess: ScriptGuess | None = None  # OSD's look at the page as sent, kept for lang=auto's script


def codes(lang: str) -> list[str]:
    """The codes of a canonical lang value ("de,en" -> ["de", "en"]; "" -> [])."""
    return [code for code in lang.split(",") if code]


class LanguageRouter:
    """One per worker: the catalog against this instance's Tesseract data and engines."""

    def __init__(self, tesseract: Tesseract | None, tessdata: Path | None, ppocr_engine: str = "rapidocr") -> None:
        self.tesseract = tesseract
        self.tessdata = tessdata
        self.ppocr_engine = ppocr_engine

    def installed(self, lang: Language) -> bool:
        """Whether this instance reads the language on its default route."""
        return catalog.installed(lang, self.tessdata) and (not lang.needs_pack or self.tesseract is not None)

    def route_of(self, langs: list[Language], route: str = "") -> str:
        """The route a set of languages runs: the one asked, else PP-OCR when it reads them all, else the
        first language's own route that is not PP-OCR."""
        if route:
            return route
        own = [lang.route for lang in langs if lang.route != PPOCR]
        return own[0] if own else PPOCR

    def check(self, lang: str, route: str, profile: str) -> None:
        """Refuse at once what cannot run: a missing pack (400 naming it) or a profile without the language."""
        if lang in ("", AUTO):
            if route:
                raise InvalidOption("route= chooses how named languages are read: send it with lang=CODE, "
                                    "e.g. lang=ru&route=tesseract")
            return
        langs = [catalog.resolve(code) for code in codes(lang)]
        chosen = self.route_of(langs, route)
        if chosen == PPOCR:
            if profile in NO_JAPANESE and any(item.code == "ja" for item in langs):
                raise LanguageNeedsProfile("ja", profile, "accurate")
            return
        missing = [item for item in langs if self.tesseract is None or not catalog.has_data(item, self.tessdata)]
        if missing:
            raise LanguageNotInstalled([item.code for item in missing], [item.package for item in missing])

    def reading(self, engine: PageEngine, lang: str, route: str, words: bool,
                fallback: PageEngine | None = None) -> Reading:
        """The reading of one page (`fallback`: the engine for Japanese when the profile has none)."""
        holder = Reading(read=lambda bgr: engine.recognize(bgr, words))
        if lang == AUTO:
            holder.read = lambda bgr: self._auto(holder, engine, bgr, words, fallback)
            holder.confirm_turn = lambda bgr, angle: self._turn_confirmed(holder, bgr, angle)
            return holder
        holder.chosen = chosen = self.planned(lang, route)
        if chosen is not None and chosen.engine == TESSERACT:
            tess = "+".join(name for code in codes(lang) for name in catalog.resolve(code).tesseract)
            holder.read = lambda bgr: self._tesseract(engine, bgr, tess, chosen.route, words)
            holder.confirm_turn = lambda bgr, angle: self._turn_confirmed(holder, bgr, angle)
        return holder

    def _turn_confirmed(self, holder: Reading, bgr: np.ndarray, angle: int) -> bool:
        """Whether OSD also sees the page turned by `angle` (PP-OCR's classifier said so); without OSD
        here, the classifier decides alone, as before languages."""
        if not self.script_detection():
            return True
        assert self.tesseract is not None
        holder.guess = guess = self.tesseract.script(bgr)
        if guess is None or guess.turned_confidence < MIN_TURN_CONFIDENCE:
            return False
        return guess.turned == angle or (angle in (90, 270) and guess.turned in (90, 270))

    def planned(self, lang: str, route: str) -> Recognizer | None:
        """The recognizer named languages get, known before reading (None: no lang, or auto)."""
        if lang in ("", AUTO):
            return None
        langs = [catalog.resolve(code) for code in codes(lang)]
        chosen = self.route_of(langs, route)
        rtl = any(item.right_to_left for item in langs)
        if chosen == PPOCR:
            return Recognizer(lang, self.ppocr_engine, PPOCR, right_to_left=rtl)
        return Recognizer(lang, TESSERACT, chosen, right_to_left=rtl)

    def _tesseract(self, engine: PageEngine, bgr: np.ndarray, tess: str, route: str, words: bool) -> OcrResult:
        assert self.tesseract is not None  # check() refused the request otherwise
        if route == LINES:
            boxes = engine.detect(bgr)
            return self.tesseract.read_lines(bgr, boxes, tess, words)
        return self.tesseract.read_page(bgr, tess, words)

    def _auto(self, holder: Reading, engine: PageEngine, bgr: np.ndarray, words: bool,
              fallback: PageEngine | None) -> OcrResult:
        """Find the script (Tesseract's OSD), then read with the script's recognizer; a reading it is not sure
        of (PP-OCR's where OSD found no script or Latin, Tesseract's where OSD named another) gets a second
        look (see `_second_look`)."""
        guess = holder.guess if holder.guess is not None else self._guess(bgr)
        script = _script_of(guess)
        if script == "Japanese" and fallback is not None:
            engine = fallback
        if script is None or script in PPOCR_SCRIPTS:
            result = engine.recognize(bgr, words)
            holder.chosen = Recognizer(_ppocr_lang(script), self.ppocr_engine, PPOCR, script=script)
            if script in (None, "Latin") and _sure_share(result) < PPOCR_SURE and self.script_detection():
                other = self._second_look(engine, bgr, guess, _sure_share(result))
                if other is not None:
                    return self._by_script(holder, engine, bgr, other, words)
            if script in (None, "Latin") and self._installed_code("vi") and _looks_vietnamese(result):
                vi = catalog.resolve("vi")
                holder.chosen = Recognizer("vi", TESSERACT, vi.route, script="Latin")
                return self._tesseract(engine, bgr, "+".join(vi.tesseract), vi.route, words)
            return result
        result = self._by_script(holder, engine, bgr, script, words)
        # OSD calls some Korean photos Hebrew: a reading Tesseract is unsure of gets the second look too
        if script not in SECOND_LOOK and _sure_share(result) < PPOCR_SURE:
            other = self._second_look(engine, bgr, None, _sure_share(result))
            if other is not None and other != script:
                return self._by_script(holder, engine, bgr, other, words)
        return result

    def _by_script(self, holder: Reading, engine: PageEngine, bgr: np.ndarray, script: str,
                   words: bool) -> OcrResult:
        """A page read by the recognizer of a script Tesseract reads (its first installed languages)."""
        found = [lang for lang in catalog.by_script(script) if self.installed(lang)][:AUTO_MAX_LANGS]
        if not found:  # no pack for this script here: read as before languages, and say so
            holder.chosen = Recognizer(None, self.ppocr_engine, PPOCR, script=script)
            return engine.recognize(bgr, words)
        route = found[0].route if found[0].route != PPOCR else LINES
        holder.chosen = Recognizer(",".join(lang.code for lang in found), TESSERACT, route, script=script,
                                   right_to_left=found[0].right_to_left)
        return self._tesseract(engine, bgr, "+".join(n for lang in found for n in lang.tesseract), route, words)

    def _second_look(self, engine: PageEngine, bgr: np.ndarray, guess: ScriptGuess | None,
                     ppocr_sure: float) -> str | None:
        """The script whose Tesseract reads the page's widest lines surer than PP-OCR did, or None.

        OSD finds no script on Korean pages and calls Thai photos Latin, while PP-OCR reads such a page
        with confidence under 0.8 (0.97 or more on Latin, Han and Japanese pages, which never get here).
        The candidates are the scripts OSD misses and its own guess."""
        assert self.tesseract is not None
        candidates = list(SECOND_LOOK)
        named = _script_of(guess) if guess is not None else None
        if guess is not None and named is None:
            named = OSD_SCRIPTS.get(guess.script, guess.script)
        if named is not None and named not in candidates and named not in PPOCR_SCRIPTS:
            candidates.append(named)
        boxes = sorted(engine.detect(bgr), key=_width, reverse=True)[:SECOND_LOOK_LINES]
        best, best_sure = None, ppocr_sure
        for script in candidates:
            found = [lang for lang in catalog.by_script(script) if self.installed(lang) and lang.needs_pack][:1]
            if not found or not boxes:
                continue
            sure = _sure_share(self.tesseract.read_lines(bgr, boxes, "+".join(found[0].tesseract)))
            if sure > best_sure:
                best, best_sure = script, sure
        return best

    def _guess(self, bgr: np.ndarray) -> ScriptGuess | None:
        if not self.script_detection():
            return None
        assert self.tesseract is not None
        return self.tesseract.script(bgr)

    def script(self, bgr: np.ndarray) -> str | None:
        """The page's script in the catalog's names, or None when OSD is not here or not sure."""
        return _script_of(self._guess(bgr))

    def _installed_code(self, code: str) -> bool:
        return self.tesseract is not None and catalog.has_data(catalog.resolve(code), self.tessdata)

    def describe(self, default: str) -> dict[str, Any]:
        """What GET /api/languages answers: every language, its route and whether it is installed here."""
        items = []
        for lang in catalog.languages():
            items.append({
                "code": lang.code, "tesseract": "+".join(lang.tesseract), "name": lang.name, "script": lang.script,
                "right_to_left": lang.right_to_left, "route": lang.route,
                "engine": self.ppocr_engine if lang.route == PPOCR else TESSERACT,
                "installed": self.installed(lang), "package": lang.package,
                "install": f"fleetctl deps --langs {lang.code}", "basis": lang.basis,
            })
        return {"default": default or None, "auto": self.script_detection(),
                "tesseract": self.tesseract.version if self.tesseract is not None else None,
                "loaded": self.tesseract.apis.loaded() if self.tesseract is not None else [],
                "languages": items}

    def script_detection(self) -> bool:
        """Whether lang=auto can find scripts here (Tesseract and its OSD data)."""
        return (self.tesseract is not None and self.tessdata is not None
                and catalog.traineddata(catalog.OSD_DATA, self.tessdata).is_file())


def _script_of(guess: ScriptGuess | None) -> str | None:
    """OSD's script in the catalog's names, or None when it is not sure."""
    if guess is None or guess.confidence < MIN_SCRIPT_CONFIDENCE:
        return None
    return OSD_SCRIPTS.get(guess.script, guess.script)


def _sure_share(result: OcrResult) -> float:
    """The reading's confidence, each line weighed by its characters (0 when it read nothing)."""
    chars = sum(len(line.text) for line in result.lines)
    return sure_text(result) / chars if chars else 0.0


def _width(box: Any) -> float:
    xs = [float(point[0]) for point in box]
    return max(xs) - min(xs)


def _ppocr_lang(script: str | None) -> str | None:
    return {"Han": "zh", "Japanese": "ja"}.get(script or "")


def _looks_vietnamese(result: OcrResult) -> bool:
    letters = [ch for line in result.lines for ch in unicodedata.normalize("NFC", line.text.lower()) if ch.isalpha()]
    if not letters:
        return False
    return sum(ch in VIETNAMESE_ONLY for ch in letters) / len(letters) >= VIETNAMESE_SHARE
