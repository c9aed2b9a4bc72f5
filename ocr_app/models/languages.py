"""The language catalog: every language the fleet knows, its script, its Debian pack and its default route.

Pure data and lookups (stdlib only), so the instance, fleetctl, the image build and the bench read one list.
A route says which recognizer reads a language by default:

- ``ppocr``: today's PP-OCR pipeline (detection and recognition), for Chinese, Japanese, English and the
  Latin languages PP-OCRv6 reads well;
- ``tesseract``: Tesseract's own page layout and recognition;
- ``lines``: PP-OCR's detector finds the lines, each crop deskewed and read by Tesseract in line mode.

Each entry's ``basis`` names the figure its route rests on (docs/benchmarks.md has the full table);
an empty basis means the route is the catalog's default for its script, not measured on that language.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

PPOCR = "ppocr"
TESSERACT = "tesseract"
LINES = "lines"
ROUTES = (PPOCR, TESSERACT, LINES)

# Tesseract's script and orientation detection (lang=auto) comes in a pack of its own.
OSD_PACKAGE = "tesseract-ocr-osd"
OSD_DATA = "osd"
# Where Debian's tesseract-ocr 5 puts the traineddata files; OCR_TESSDATA overrides it.
TESSDATA_DIRS = ("/usr/share/tesseract-ocr/5/tessdata", "/usr/share/tesseract-ocr/4.00/tessdata",
                 "/usr/share/tessdata", "/usr/local/share/tessdata")


class UnknownLanguage(LookupError):
    """A code that is neither an ISO 639-1 code nor a Tesseract code of the catalog."""

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


@dataclass(frozen=True)
class Language:
    """One language: how requests name it, what reads it, and which Debian pack brings its Tesseract data."""

    code: str  # ISO 639-1, what answers and /api/languages use
    tesseract: tuple[str, ...]  # Tesseract's traineddata names, e.g. ("deu",)
    name: str
    script: str  # "Latin", "Cyrillic", "Arabic", ... as Tesseract's OSD names scripts where it can
    route: str  # the default route: ppocr, tesseract or lines
    right_to_left: bool = False
    basis: str = ""  # the measurement the route rests on ("" = the script's default, unmeasured)

    @property
    def package(self) -> str:
        """The Debian package with this language's Tesseract data (tesseract-ocr-deu)."""
        return package(self.code)

    @property
    def needs_pack(self) -> bool:
        """Whether its default route needs Tesseract data (PP-OCR-routed languages read without one)."""
        return self.route != PPOCR


def _lang(code: str, tess: str, name: str, script: str, route: str, basis: str = "",
          rtl: bool = False) -> Language:
    return Language(code=code, tesseract=tuple(tess.split("+")), name=name, script=script, route=route,
                    right_to_left=rtl, basis=basis)


# The figures below are line-matched CER on generated photo-like pages (bench/langpages.py, seeds 1 and 2,
# 8 lines each) read by PP-OCRv6 small (accurate), the lines route and Tesseract's own layout, measured for
# this catalog; on the scans every route a language gets reads at <= 1.6%. Where
# PP-OCR and the lines route tie (the Latin languages), PP-OCR stays: it needs no pack.
_CATALOG: tuple[Language, ...] = (
    _lang("en", "eng", "English", "Latin", PPOCR, "photos: PP-OCR 0.0%, lines 0.0%, Tesseract alone 28.7%"),
    _lang("zh", "chi_sim", "Chinese (simplified)", "Han", PPOCR,
          "photos: PP-OCR 0.0%, lines 1.4%, Tesseract alone 35.7%"),
    _lang("ja", "jpn", "Japanese", "Japanese", PPOCR,
          "photos: PP-OCR 0.8%, lines 0.8%, Tesseract alone 17.8%; tiny (fast) has no Japanese"),
    _lang("de", "deu", "German", "Latin", PPOCR, "photos: PP-OCR 0.0%, lines 0.0%, Tesseract alone 36.2%"),
    _lang("es", "spa", "Spanish", "Latin", PPOCR, "photos: PP-OCR 0.2%, lines 0.4%, Tesseract alone 53.6%"),
    _lang("pt", "por", "Portuguese", "Latin", PPOCR, "photos: PP-OCR 0.2%, lines 0.0%, Tesseract alone 20.3%"),
    _lang("pl", "pol", "Polish", "Latin", PPOCR, "photos: PP-OCR 0.0%, lines 0.0%, Tesseract alone 14.4%"),
    _lang("fr", "fra", "French", "Latin", PPOCR, "photos: PP-OCR 0.2%, lines 0.2%, Tesseract alone 41.3%"),
    _lang("tr", "tur", "Turkish", "Latin", PPOCR, "photos: PP-OCR 0.2%, lines 0.0%, Tesseract alone 1.6%"),
    _lang("vi", "vie", "Vietnamese", "Latin", LINES, "photos: lines 0.3% vs PP-OCR 15.4%, Tesseract alone 24.7%"),
    _lang("el", "ell", "Greek", "Greek", LINES, "photos: lines 0.4% vs PP-OCR 46.2%, Tesseract alone 33.3%"),
    _lang("ru", "rus", "Russian", "Cyrillic", LINES,
          "photos: lines 0.0% vs Tesseract alone 50.5%; PP-OCR has no Cyrillic (100%)"),
    _lang("uk", "ukr", "Ukrainian", "Cyrillic", LINES,
          "photos: lines 0.4% vs Tesseract alone 38.0%; PP-OCR has no Cyrillic (100%)"),
    _lang("ar", "ara", "Arabic", "Arabic", LINES,
          "photos: lines 1.0% vs Tesseract alone 83.9%; PP-OCR has no Arabic", rtl=True),
    _lang("he", "heb", "Hebrew", "Hebrew", LINES,
          "lines 0.0% (scans) / 0.0% (photos), read as sent unless OSD sees the page turned; "
          "Tesseract alone 0.0% / 25%; PP-OCR has no Hebrew", rtl=True),
    _lang("hi", "hin", "Hindi", "Devanagari", LINES,
          "photos: lines 0.0% vs Tesseract alone 78.2%; PP-OCR has no Devanagari"),
    _lang("ta", "tam", "Tamil", "Tamil", LINES, "photos: lines 0.0% vs Tesseract alone 56.9%; PP-OCR has no Tamil"),
    _lang("te", "tel", "Telugu", "Telugu", LINES,
          "lines 0.0% (scans, pieces of a cut line joined) / 0.1% (photos); Tesseract alone 0.0% / 32%"),
    _lang("ko", "kor", "Korean", "Hangul", LINES,
          "lines 0.0% (scans) / 0.3% (photos) vs Tesseract alone 18% / 0.6% (its own layout); "
          "PP-OCRv6 has no Hangul"),
    _lang("th", "tha", "Thai", "Thai", LINES, "photos: lines 5.9% vs Tesseract alone 50.2%; PP-OCR has no Thai"),
    # Beyond the measured list: Tesseract's packs, routed by script (lines: PP-OCR finds the lines).
    _lang("it", "ita", "Italian", "Latin", LINES),
    _lang("nl", "nld", "Dutch", "Latin", LINES),
    _lang("sv", "swe", "Swedish", "Latin", LINES),
    _lang("da", "dan", "Danish", "Latin", LINES),
    _lang("no", "nor", "Norwegian", "Latin", LINES),
    _lang("fi", "fin", "Finnish", "Latin", LINES),
    _lang("is", "isl", "Icelandic", "Latin", LINES),
    _lang("cs", "ces", "Czech", "Latin", LINES),
    _lang("sk", "slk", "Slovak", "Latin", LINES),
    _lang("sl", "slv", "Slovenian", "Latin", LINES),
    _lang("hr", "hrv", "Croatian", "Latin", LINES),
    _lang("hu", "hun", "Hungarian", "Latin", LINES),
    _lang("ro", "ron", "Romanian", "Latin", LINES),
    _lang("et", "est", "Estonian", "Latin", LINES),
    _lang("lv", "lav", "Latvian", "Latin", LINES),
    _lang("lt", "lit", "Lithuanian", "Latin", LINES),
    _lang("ca", "cat", "Catalan", "Latin", LINES),
    _lang("gl", "glg", "Galician", "Latin", LINES),
    _lang("eu", "eus", "Basque", "Latin", LINES),
    _lang("ga", "gle", "Irish", "Latin", LINES),
    _lang("cy", "cym", "Welsh", "Latin", LINES),
    _lang("sq", "sqi", "Albanian", "Latin", LINES),
    _lang("id", "ind", "Indonesian", "Latin", LINES),
    _lang("ms", "msa", "Malay", "Latin", LINES),
    _lang("tl", "tgl", "Tagalog", "Latin", LINES),
    _lang("sw", "swa", "Swahili", "Latin", LINES),
    _lang("az", "aze", "Azerbaijani", "Latin", LINES),
    _lang("uz", "uzb", "Uzbek", "Latin", LINES),
    _lang("bg", "bul", "Bulgarian", "Cyrillic", LINES),
    _lang("sr", "srp", "Serbian", "Cyrillic", LINES),
    _lang("mk", "mkd", "Macedonian", "Cyrillic", LINES),
    _lang("be", "bel", "Belarusian", "Cyrillic", LINES),
    _lang("kk", "kaz", "Kazakh", "Cyrillic", LINES),
    _lang("mn", "mon", "Mongolian", "Cyrillic", LINES),
    _lang("fa", "fas", "Persian", "Arabic", LINES, rtl=True),
    _lang("ur", "urd", "Urdu", "Arabic", LINES, rtl=True),
    _lang("yi", "yid", "Yiddish", "Hebrew", LINES, rtl=True),
    _lang("mr", "mar", "Marathi", "Devanagari", LINES),
    _lang("ne", "nep", "Nepali", "Devanagari", LINES),
    _lang("sa", "san", "Sanskrit", "Devanagari", LINES),
    _lang("bn", "ben", "Bengali", "Bengali", LINES),
    _lang("gu", "guj", "Gujarati", "Gujarati", LINES),
    _lang("pa", "pan", "Punjabi", "Gurmukhi", LINES),
    _lang("kn", "kan", "Kannada", "Kannada", LINES),
    _lang("ml", "mal", "Malayalam", "Malayalam", LINES),
    _lang("si", "sin", "Sinhala", "Sinhala", LINES),
    _lang("my", "mya", "Burmese", "Myanmar", LINES),
    _lang("km", "khm", "Khmer", "Khmer", LINES),
    _lang("lo", "lao", "Lao", "Lao", LINES),
    _lang("ka", "kat", "Georgian", "Georgian", LINES),
    _lang("hy", "hye", "Armenian", "Armenian", LINES),
    _lang("am", "amh", "Amharic", "Ethiopic", LINES),
)

_BY_CODE: dict[str, Language] = {}
for _entry in _CATALOG:
    _BY_CODE[_entry.code] = _entry
    for _name in _entry.tesseract:
        _BY_CODE.setdefault(_name, _entry)
_BY_CODE.update({"chi": _BY_CODE["zh"], "zho": _BY_CODE["zh"], "iw": _BY_CODE["he"]})

# The packs a fleet installs by default: every language the issue lists whose default route needs
# Tesseract data, plus German, French, Spanish, Portuguese, Polish and Turkish so that lang=de,en mixes
# and the `tesseract` route work for the Latin languages most users send. A few MB each (Debian's
# tessdata_fast models); Chinese and Japanese are read by PP-OCR and need none.
DEFAULT_SET: tuple[str, ...] = ("de", "es", "pt", "pl", "fr", "tr", "vi", "el", "ru", "uk", "ar", "he",
                                "hi", "ta", "te", "ko", "th")


def languages() -> tuple[Language, ...]:
    """Every language of the catalog, the measured ones first."""
    return _CATALOG


def resolve(code: str) -> Language:
    """The language named by an ISO 639-1 code (``de``) or a Tesseract code (``deu``), any case."""
    key = code.strip().lower().replace("-", "_")
    found = _BY_CODE.get(key)
    if found is None:
        raise UnknownLanguage(code)
    return found


def package(code: str) -> str:
    """The Debian package that brings a language's Tesseract data: ``package("ru") == "tesseract-ocr-rus"``."""
    return "tesseract-ocr-" + resolve(code).tesseract[0].replace("_", "-")


def packages(codes: tuple[str, ...] | list[str] = DEFAULT_SET, with_osd: bool = True) -> list[str]:
    """The Debian packages for a set of codes (the default set unless given), plus OSD for lang=auto."""
    found = [package(code) for code in codes]
    if with_osd:
        found.append(OSD_PACKAGE)
    return sorted(set(found))


def traineddata(name: str, tessdata_dir: Path | str) -> Path:
    """The path of one traineddata file (``deu``) in a tessdata folder."""
    return Path(tessdata_dir) / f"{name}.traineddata"


def has_data(lang: Language, tessdata_dir: Path | str | None) -> bool:
    """Whether every Tesseract data file of a language is in the folder."""
    if tessdata_dir is None:
        return False
    return all(traineddata(name, tessdata_dir).is_file() for name in lang.tesseract)


def installed(lang: Language, tessdata_dir: Path | str | None) -> bool:
    """Whether the instance can read the language on its default route: PP-OCR's always can."""
    return not lang.needs_pack or has_data(lang, tessdata_dir)


def find_tessdata(candidates: tuple[str, ...] = TESSDATA_DIRS) -> Path | None:
    """The first folder that holds Tesseract data (eng or osd), or None when Tesseract has none here."""
    for folder in candidates:
        path = Path(folder)
        if traineddata("eng", path).is_file() or traineddata(OSD_DATA, path).is_file():
            return path
    return None


def by_script(script: str) -> tuple[Language, ...]:
    """The catalog's languages of one script, the measured ones first."""
    return tuple(lang for lang in _CATALOG if lang.script == script)
