"""An OCRmyPDF plugin whose OCR engine is the fleet: each page image OCRmyPDF renders goes to /api/ocr.

    ocrmypdf --plugin fleetctl.ocrmypdf_plugin --fleet-url http://127.0.0.1:8080 in.pdf out.pdf

OCRmyPDF keeps everything it is good at (rasterizing, PDF/A, optimizing, grafting the text layer with its
fpdf2 renderer); the fleet only reads pages, through the gateway that balances, caches and spreads them.
Built on OCRmyPDF 17's published hooks (pluginspec.py) and nothing private: options are a pydantic model
under the `fleet` namespace, the engine implements `generate_ocr` and returns OcrElement trees.
"""
from __future__ import annotations

import argparse
import logging
import os
import threading
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import pluggy
import requests
from ocrmypdf import hookimpl
from ocrmypdf.exceptions import BadArgsError, ExitCode, ExitCodeException, MissingDependencyError
from ocrmypdf.hocrtransform import OcrElement
from ocrmypdf.pluginspec import OcrEngine, OrientationConfidence
from PIL import Image
from pydantic import BaseModel, Field

from fleetctl.ocr_client import FleetClient, FleetClientError, FleetSettings
from ocr_app.documents.ocr_tree import page_tree
from ocr_app.models import languages

if TYPE_CHECKING:
    from ocrmypdf._options import OcrOptions

log = logging.getLogger(__name__)

NAMESPACE = "fleet"
# PP-OCR's models read Chinese (simplified and traditional) and English in one pass: pages of these
# Tesseract codes (or of OCRmyPDF's default, eng) go without lang=, as plain requests, and share their cache.
PPOCR_LANGUAGES = frozenset({"eng", "chi_sim", "chi_tra"})
ENV = {"url": "OCR_FLEET_URL", "key": "OCR_FLEET_KEY", "profile": "OCR_FLEET_PROFILE",
       "timeout": "OCR_FLEET_TIMEOUT", "attempts": "OCR_FLEET_ATTEMPTS"}
DEFAULT_TIMEOUT, DEFAULT_ATTEMPTS = 300.0, 8
TESSERACT_PLUGIN = "ocrmypdf.builtin_plugins.tesseract_ocr"


class FleetError(ExitCodeException):
    """The fleet could not OCR a page (down, overloaded past the retry budget, or refused the request)."""

    exit_code = ExitCode.other_error


class FleetOptions(BaseModel):
    """The plugin's options, as OCRmyPDF 17 keeps plugin options: `options.fleet.url` and so on."""

    url: Annotated[str | None, Field(description="The fleet's gateway URL (OCR_FLEET_URL)")] = None
    key: Annotated[str | None, Field(description="API key for a gateway with keys on (OCR_FLEET_KEY)")] = None
    profile: Annotated[str | None, Field(description="Engine profile (OCR_FLEET_PROFILE)")] = None
    timeout: Annotated[float | None, Field(gt=0, description="Seconds per page, retries included")] = None
    attempts: Annotated[int | None, Field(ge=1, description="Requests per page before giving up")] = None


def _positive(kind: type[float] | type[int]) -> Any:
    def parse(text: str) -> float | int:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
        return value
    return parse


@hookimpl
def initialize(plugin_manager: pluggy.PluginManager) -> None:
    """Stand in for Tesseract: its check_options would demand a tesseract binary a fleet client lacks."""
    plugin_manager.set_blocked(TESSERACT_PLUGIN)


@hookimpl
def register_options() -> dict[str, type[BaseModel]]:
    # OCRmyPDF 17's option validation reads options.tesseract whichever engine runs: keep its model
    # registered while its plugin is blocked (its defaults; the --tesseract-* flags are gone with it).
    from ocrmypdf.builtin_plugins.tesseract_ocr import TesseractOptions

    return {NAMESPACE: FleetOptions, "tesseract": TesseractOptions}


@hookimpl
def add_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        "OCR Fleet", "OCR on an OCR Fleet (plugin fleetctl.ocrmypdf_plugin): each page image goes to the "
        "fleet's POST /api/ocr. Run --jobs at about 2 x the fleet's instances x workers: this side only waits.")
    group.add_argument("--fleet-url", dest="fleet_url", metavar="URL",
                       help="The fleet's gateway, e.g. http://127.0.0.1:8080 [default: $OCR_FLEET_URL].")
    group.add_argument("--fleet-key", dest="fleet_key", metavar="KEY",
                       help="API key, sent as X-API-Key, for a gateway run with `fleetctl up --auth` "
                            "[default: $OCR_FLEET_KEY].")
    group.add_argument("--fleet-profile", dest="fleet_profile", metavar="NAME",
                       help="Engine profile the fleet runs the pages on (GET /api/profiles lists them) "
                            "[default: $OCR_FLEET_PROFILE, else the fleet's default].")
    group.add_argument("--fleet-timeout", dest="fleet_timeout", metavar="SECONDS", type=_positive(float),
                       help="Give up on a page after this long, retries of a down or busy fleet included "
                            f"[default: $OCR_FLEET_TIMEOUT or {DEFAULT_TIMEOUT:g}].")
    group.add_argument("--fleet-attempts", dest="fleet_attempts", metavar="N", type=_positive(int),
                       help="Requests per page before giving up on a fleet that refuses connections or "
                            f"answers 503/429 [default: $OCR_FLEET_ATTEMPTS or {DEFAULT_ATTEMPTS}].")


def _selected(options: OcrOptions | None) -> bool:
    """Ours unless `--ocr-engine none` asks for no OCR at all."""
    return options is None or getattr(options, "ocr_engine", "auto") != "none"


def settings(options: OcrOptions, env: dict[str, str] | None = None) -> FleetSettings:
    """Flags first, then OCR_FLEET_* from the environment; a bad value is a BadArgsError naming it."""
    env = dict(os.environ) if env is None else env
    opts: FleetOptions = getattr(options, NAMESPACE)
    url = opts.url or env.get(ENV["url"])
    if not url:
        raise BadArgsError(f"no fleet to send pages to: give --fleet-url URL or set {ENV['url']} "
                           "(the gateway's URL that `fleetctl up` prints)")
    try:
        timeout = opts.timeout or float(env.get(ENV["timeout"]) or DEFAULT_TIMEOUT)
        attempts = opts.attempts or int(env.get(ENV["attempts"]) or DEFAULT_ATTEMPTS)
        return FleetSettings(url=url, key=opts.key or env.get(ENV["key"]) or None,
                             profile=opts.profile or env.get(ENV["profile"]) or None,
                             lang=fleet_lang(list(getattr(options, "languages", None) or []), url),
                             timeout=timeout, attempts=attempts)
    except ValueError as exc:
        raise BadArgsError(f"OCR Fleet plugin: {exc} ({', '.join(ENV.values())})") from None


def fleet_lang(codes: list[str], url: str) -> str:
    """OCRmyPDF's -l (Tesseract codes, "rus+eng") as the fleet's lang= ("ru,en"): "" when PP-OCR's own
    languages cover it. A code the fleet's catalog does not know is a MissingDependencyError naming the list;
    whether the fleet has a known language's pack installed, its answer to the first page says (with the
    command that installs it)."""
    if set(codes) <= PPOCR_LANGUAGES:
        return ""
    found: list[str] = []
    for code in codes:
        try:
            iso = "zh" if code == "chi_tra" else languages.resolve(code).code
        except languages.UnknownLanguage:
            raise MissingDependencyError(
                f"the OCR Fleet reads no language {code!r}: {url.rstrip('/')}/api/languages lists the ones it "
                "reads (Tesseract codes or ISO 639-1 codes both work with -l)") from None
        if iso not in found:
            found.append(iso)
    return ",".join(found)


@hookimpl
def check_options(options: OcrOptions) -> None:
    """Fail before any page is rendered: no URL, a language the fleet cannot read, a renderer it cannot feed."""
    if not _selected(options):
        return
    if options.ocr_engine == "tesseract":
        raise BadArgsError("--plugin fleetctl.ocrmypdf_plugin stands in for Tesseract: leave the plugin out "
                           "to OCR with Tesseract")
    settings(options)
    if options.pdf_renderer == "sandwich":
        raise BadArgsError("the OCR Fleet engine gives OCRmyPDF an OcrElement tree for its fpdf2 renderer: "
                           "drop --pdf-renderer sandwich (use auto or fpdf2)")


# The one module-level state, and deliberately so: see _session.
_SESSIONS: dict[tuple[int, int], requests.Session] = {}


def _session() -> requests.Session:
    """One requests.Session per worker process and thread.

    OCRmyPDF builds the engine anew for every page, so the engine cannot own the connection pool; the pool
    is kept per (pid, thread) so that a forked worker never shares its parent's sockets.
    """
    key = (os.getpid(), threading.get_ident())
    session = _SESSIONS.get(key)
    if session is None:
        session = _SESSIONS[key] = requests.Session()
        session.headers["User-Agent"] = f"ocr-fleet-ocrmypdf/{_version()}"
    return session


def _version() -> str:
    try:
        return metadata.version("ocr-fleet")
    except metadata.PackageNotFoundError:
        return "unknown"


def _page_image(input_file: Path) -> tuple[bytes, str, int, int, float]:
    """The file's bytes, its media type, its size in pixels and its resolution (OCRmyPDF writes the dpi)."""
    with Image.open(input_file) as img:
        width, height = img.size
        mime = Image.MIME.get(img.format or "", "application/octet-stream")
        dpi = img.info.get("dpi", (300.0, 300.0))
    xdpi = float(dpi[0] if isinstance(dpi, tuple) else dpi) or 300.0
    return input_file.read_bytes(), mime, width, height, xdpi


class FleetOcrEngine(OcrEngine):
    """OCRmyPDF's OcrEngine on the fleet: one POST /api/ocr per page, from whichever worker has the page."""

    @staticmethod
    def version() -> str:
        return _version()

    @staticmethod
    def creator_tag(options: OcrOptions) -> str:
        return f"OCR Fleet {_version()} (PP-OCR, Tesseract)"

    def __str__(self) -> str:
        return f"OCR Fleet {_version()}"

    @staticmethod
    def languages(options: OcrOptions) -> set[str]:
        return set(PPOCR_LANGUAGES) | {code for lang in languages.languages() for code in lang.tesseract}

    @staticmethod
    def get_orientation(input_file: Path, options: OcrOptions) -> OrientationConfidence:
        # The fleet turns pages itself and answers in the uploaded image's coordinates.
        return OrientationConfidence(angle=0, confidence=0.0)

    @staticmethod
    def get_deskew(input_file: Path, options: OcrOptions) -> float:
        return 0.0

    @staticmethod
    def supports_generate_ocr() -> bool:
        return True

    @staticmethod
    def generate_ocr(input_file: Path, options: OcrOptions, page_number: int = 0) -> tuple[OcrElement, str]:
        image, mime, width, height, dpi = _page_image(Path(input_file))
        client = FleetClient(settings(options), _session())
        try:
            answer = client.ocr(image, mime)
        except FleetClientError as exc:
            raise FleetError(f"page {page_number + 1}: {exc.msg}") from None
        lines = answer["data"]
        log.debug("page %d: %d line(s) from %s (profile %s, cached %s)", page_number + 1, len(lines),
                  answer.get("instance"), answer.get("profile"), answer.get("cached"))
        text = "\n".join(str(line.get("text", "")) for line in lines)
        return page_tree(width, height, lines, dpi, page_number), text + ("\n" if text else "")

    @staticmethod
    def generate_hocr(input_file: Path, output_hocr: Path, output_text: Path, options: OcrOptions) -> None:
        raise NotImplementedError("the OCR Fleet engine implements generate_ocr (OCRmyPDF's fpdf2 renderer)")

    @staticmethod
    def generate_pdf(input_file: Path, output_pdf: Path, output_text: Path, options: OcrOptions) -> None:
        raise NotImplementedError("the OCR Fleet engine implements generate_ocr, not --pdf-renderer sandwich")


@hookimpl
def get_ocr_engine(options: OcrOptions | None) -> OcrEngine | None:
    return FleetOcrEngine() if _selected(options) else None
