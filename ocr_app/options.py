"""Per-request options, parsed and validated once from the query string, form fields or JSON.

`PageOptions` is what decides one image's answer besides its bytes, so it is part of the cache key and
travels with a page wherever it is OCRed. `RequestOptions` adds what only the receiving instance needs:
how to turn a document into pages and how to write the answer.
"""
from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from ocr_app.config import Settings
from ocr_app.errors import BadLanguageList, InvalidOption, PageNotInDocument, UnknownLanguage
from ocr_app.models import languages

FORMATS = ("json", "text", "hocr", "textract", "pdf")
PDF_TEXT_MODES = ("auto", "never")
# A selection is a comma list of pages and ranges: "1-3,7". Bounded so a hostile string stays cheap.
_SELECTION = re.compile(r"^\s*\d{1,6}\s*(-\s*\d{1,6}\s*)?(,\s*\d{1,6}\s*(-\s*\d{1,6}\s*)?){0,199}$")
# lang=: a few codes of letters joined by commas ("+" reads as a space in a query string, so both count);
# bounded before anything is looked up, so a hostile value costs nothing.
LANG_MAX_CODES = 8
LANG_MAX_CHARS = 64
_LANG_SPLIT = re.compile(r"[,+ ]+")
_LANG_CODE = re.compile(r"^[A-Za-z][A-Za-z_-]{1,9}$")
ROUTES = languages.ROUTES
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off", "")


@dataclass(frozen=True)
class PageOptions:
    """What decides a page's lines besides its bytes: part of its cache key and its query string."""

    words: bool = False
    bypass_cache: bool = False
    profile: str = ""  # the engine profile; "" = the instance's default (OCR_PROFILE)
    lang: str = ""  # canonical ISO codes "de,en", or "auto"; "" = the profile's own languages (no lang)
    route: str = ""  # ppocr | tesseract | lines; "" = the languages' default route

    def cache_suffix(self) -> str:
        """Appended to the engine's cache namespace: answers with word boxes, or of another language or
        route, are stored apart."""
        suffix = ":w1" if self.words else ""
        if self.lang:
            suffix += f":l={self.lang}"
        if self.route:
            suffix += f":r={self.route}"
        return suffix

    def to_query(self) -> dict[str, str]:
        """The query parameters that ask another instance for the same page answer."""
        query = {"words": "1"} if self.words else {}
        if self.profile:
            query["profile"] = self.profile
        if self.lang:
            query["lang"] = self.lang
        if self.route:
            query["route"] = self.route
        return query


@dataclass(frozen=True)
class RequestOptions:
    """Everything a request asked for, validated against the instance's limits."""

    page: PageOptions = field(default_factory=PageOptions)
    format: str = "json"
    dpi: int = 200
    pages: tuple[tuple[int, int], ...] = ()  # inclusive ranges from 1; empty means every page
    pdf_text: str = "auto"
    password: str | None = None
    preview: bool = False  # each document page also comes back as a small JPEG (the web page shows it)

    @property
    def needs_words(self) -> bool:
        """hOCR, Textract and the PDF's text layer place words, so they ask the engine for word boxes."""
        return self.page.words or self.format in ("hocr", "textract", "pdf")

    @property
    def page_options(self) -> PageOptions:
        """What the image, or each page of a document, runs with: word boxes too when the format needs them."""
        return replace(self.page, words=self.needs_words)

    def select(self, count: int) -> list[int]:
        """The selected page numbers (from 1) of a document with `count` pages, in order, once each."""
        if not self.pages:
            return list(range(1, count + 1))
        chosen: list[int] = []
        seen: set[int] = set()
        for first, last in self.pages:
            if last > count:
                raise PageNotInDocument(last, count)
            for number in range(first, last + 1):
                if number not in seen:
                    seen.add(number)
                    chosen.append(number)
        return chosen


def parse_options(values: Mapping[str, str], settings: Settings, bypass_cache: bool = False) -> RequestOptions:
    """Options from request parameters; every bad value is a 400 that names the parameter."""
    fmt = values.get("format", "json").strip().lower() or "json"
    if fmt not in FORMATS:
        raise InvalidOption(f"format={fmt!r} is not one of {', '.join(FORMATS)}")
    pdf_text = values.get("pdf_text", "auto").strip().lower() or "auto"
    if pdf_text not in PDF_TEXT_MODES:
        raise InvalidOption(f"pdf_text={pdf_text!r} is not one of {', '.join(PDF_TEXT_MODES)}")
    password = values.get("password")
    lang = parse_lang(values.get("lang", ""))  # "": the instance's default (OCR_LANG), filled in by the service
    route = values.get("route", "").strip().lower()
    if route and route not in ROUTES:
        raise InvalidOption(f"route={route[:20]!r} is not one of {', '.join(ROUTES)}")
    return RequestOptions(
        page=PageOptions(words=_parse_flag("words", values.get("words", "0")), bypass_cache=bypass_cache,
                         profile=values.get("profile", ""), lang=lang, route=route),
        format=fmt,
        dpi=_parse_dpi(values.get("dpi"), settings),
        pages=parse_pages(values.get("pages", "")),
        pdf_text=pdf_text,
        password=password if password else None,
        preview=_parse_flag("preview", values.get("preview", "0")),
    )


def parse_lang(raw: str) -> str:
    """A lang= value as its canonical form: "DEU+eng" -> "de,en", "auto" -> "auto", "" -> "".

    Bounded first (length, count, letters), then every code looked up in the catalog."""
    if len(raw) > LANG_MAX_CHARS:
        raise BadLanguageList(LANG_MAX_CODES, LANG_MAX_CHARS)
    parts = [part for part in _LANG_SPLIT.split(raw.strip()) if part]
    if not parts:
        return ""
    if len(parts) > LANG_MAX_CODES or not all(_LANG_CODE.match(part) for part in parts):
        raise BadLanguageList(LANG_MAX_CODES, LANG_MAX_CHARS)
    if [part.lower() for part in parts] == ["auto"]:
        return "auto"
    found: list[str] = []
    for part in parts:
        if part.lower() == "auto":
            raise InvalidOption("lang=auto finds the script itself: send it alone, not with other codes")
        try:
            code = languages.resolve(part).code
        except languages.UnknownLanguage:
            raise UnknownLanguage(part) from None
        if code not in found:
            found.append(code)
    return ",".join(found)


def parse_pages(raw: str) -> tuple[tuple[int, int], ...]:
    """'1-3,7' -> ((1, 3), (7, 7)); pages count from 1 and ranges go upwards."""
    if not raw.strip():
        return ()
    if not _SELECTION.match(raw):
        raise InvalidOption(f"pages={raw[:40]!r} is not a page selection such as 1-3,7")
    ranges = []
    for part in raw.split(","):
        first, _, last = part.partition("-")
        lo, hi = int(first), int(last or first)
        if lo < 1 or hi < lo:
            raise InvalidOption(f"pages={raw[:40]!r}: pages count from 1 and a range goes upwards ({part.strip()})")
        ranges.append((lo, hi))
    return tuple(ranges)


def _parse_flag(name: str, raw: str) -> bool:
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise InvalidOption(f"{name}={raw[:20]!r} is not a flag: use 1 or 0")


def _parse_dpi(raw: str | None, settings: Settings) -> int:
    if raw is None or not raw.strip():
        return settings.pdf_dpi
    try:
        dpi = int(raw)
    except ValueError:
        raise InvalidOption(f"dpi={raw[:20]!r} is not a whole number") from None
    if not 36 <= dpi <= settings.pdf_max_dpi:
        raise InvalidOption(f"dpi={dpi} must be between 36 and {settings.pdf_max_dpi} (OCR_PDF_MAX_DPI)")
    return dpi
