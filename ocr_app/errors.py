"""Typed errors raised inside the app: no Flask here, so the service, images and tests can use them.

Codes are stable: the first three digits are the HTTP status, the rest tell cases apart.
handlers.py turns them (and Werkzeug's own errors) into the JSON error shape, once.
"""
from __future__ import annotations

# Werkzeug's own errors (routing, parsing) keep the JSON shape with codes of their own.
HTTP_CODES = {400: 40002, 404: 40401, 405: 40501, 413: 41301, 415: 41502}
INTERNAL_ERROR = 50001  # anything unexpected: logged with its traceback, never an HTML 500


def error_classes() -> list[type[OcrError]]:
    """Every typed error, in definition order (the OpenAPI document lists their codes)."""
    found: list[type[OcrError]] = []
    todo: list[type[OcrError]] = [OcrError]
    while todo:
        cls = todo.pop(0)
        found.append(cls)
        todo.extend(cls.__subclasses__())
    return found


class OcrError(Exception):
    """An error with an HTTP status, a stable code and a message that says what the limit is."""

    status = 400
    code = 40000
    retry_after: int | None = None

    def __init__(self, msg: str) -> None:
        super().__init__(msg)
        self.msg = msg


class MissingImage(OcrError):
    """No image: an empty body or file, a wrong field name, or JSON without image_base64."""

    code = 40001

    def __init__(self, msg: str = "no image: send multipart field 'image' (or 'file', 'image_file'), "
                 "a raw image body, or JSON {\"image_base64\": ...}") -> None:
        super().__init__(msg)


class MalformedRequest(OcrError):
    """Malformed request: bad JSON, or multipart without a boundary."""

    code = 40002


class BadBase64(OcrError):
    """The image_base64 field is not valid base64."""

    code = 40003

    def __init__(self, msg: str = "image_base64 is not valid base64") -> None:
        super().__init__(msg)


class JsonTooDeep(OcrError):
    """A JSON body with arrays or objects nested deeper than the limit, or more of them than the limit (the
    accepted shape is one flat object): refused before either can cost a recursion or a parse's memory."""

    code = 40004

    def __init__(self, depth: int, containers: int) -> None:
        super().__init__(f"the JSON body nests arrays or objects deeper than the limit of {depth} levels, or "
                         f"holds more than {containers:,} of them: "
                         'send one flat object {"image_base64": "...", ...}')


class PayloadTooLarge(OcrError):
    """The body is larger than OCR_MAX_UPLOAD_MB."""

    status = 413
    code = 41301

    def __init__(self, limit_mb: float) -> None:
        super().__init__(f"the upload is larger than the {limit_mb:g} MB limit (OCR_MAX_UPLOAD_MB)")


class UnsupportedImage(OcrError):
    """Not an allowed format (JPEG, PNG, BMP, WebP, TIFF, PDF), sniffed from the bytes."""

    status = 415
    code = 41501

    def __init__(self, msg: str = "not an allowed format: send JPEG, PNG, BMP, WebP, TIFF or PDF") -> None:
        super().__init__(msg)


class UnsupportedContentType(OcrError):
    """The request's Content-Type is not accepted."""

    status = 415
    code = 41502


class UndecodableImage(OcrError):
    """The image is undecodable, truncated or corrupt."""

    status = 422
    code = 42201


class ImageTooLarge(OcrError):
    """More pixels than OCR_MAX_PIXELS, read from the header before decoding."""

    status = 422
    code = 42202

    def __init__(self, width: int | None, height: int | None, max_pixels: int) -> None:
        size = f"{width}x{height} " if width else ""
        super().__init__(f"the image {size}has more than the {max_pixels:,} pixel limit (OCR_MAX_PIXELS)")


class ImageTooSmall(OcrError):
    """Smaller than 8 px on a side."""

    status = 422
    code = 42203

    def __init__(self, width: int, height: int, min_side: int) -> None:
        super().__init__(f"the image {width}x{height} is too small: both sides must be at least {min_side} px")


class NotReady(OcrError):
    """The instance is starting (the engine is not loaded yet), or the engine failed to load."""

    status = 503
    code = 50301
    retry_after = 2

    def __init__(self, msg: str = "the instance is starting: the OCR engine is not loaded yet") -> None:
        super().__init__(msg)


class Overloaded(OcrError):
    """The instance is busy: more than OCR_MAX_QUEUE jobs wait (the gateway retries another)."""

    status = 503
    code = 50302
    retry_after = 1

    def __init__(self, limit: int) -> None:
        super().__init__(f"the instance is busy: more than {limit} OCR jobs are queued (OCR_MAX_QUEUE)")


class Draining(OcrError):
    """The instance is draining (/ready only; OCR requests that still arrive are served)."""

    status = 503
    code = 50303
    retry_after = 1

    def __init__(self, msg: str = "draining: the instance is shutting down") -> None:
        super().__init__(msg)


class InvalidOption(OcrError):
    """A parameter (format, words, pages, dpi, pdf_text, preview) has a value that is not accepted."""

    code = 40030


class PageNotInDocument(OcrError):
    """A page selected with pages= is beyond the document's last page."""

    code = 40031

    def __init__(self, page: int, count: int) -> None:
        super().__init__(f"pages= selects page {page}, but the document has {count} page(s)")


class FormatNeedsOneFile(OcrError):
    """format=text, hocr, textract or pdf was asked of a batch: they answer one file."""

    code = 40032

    def __init__(self, fmt: str) -> None:
        super().__init__(f"format={fmt} answers one file: send a batch with format=json (the default)")


class TooManyFiles(OcrError):
    """More files in one multipart request than OCR_MAX_BATCH."""

    status = 413
    code = 41330

    def __init__(self, count: int, limit: int) -> None:
        super().__init__(f"{count} files in one request: at most {limit} (OCR_MAX_BATCH)")


class PageImageTooLarge(OcrError):
    """A rendered page encodes to more than OCR_MAX_UPLOAD_MB: lower dpi."""

    status = 413
    code = 41331

    def __init__(self, page: int, limit_mb: float) -> None:
        super().__init__(f"page {page} encodes to more than the {limit_mb:g} MB limit (OCR_MAX_UPLOAD_MB): "
                         "lower dpi")


class PdfOutputTooLarge(OcrError):
    """A searchable PDF (format=pdf) came out bigger than OCR_PDF_MAX_OUTPUT_MB."""

    status = 413
    code = 41332

    def __init__(self, size: int, limit_mb: float) -> None:
        super().__init__(f"the searchable PDF would be {size / 1048576:.1f} MB: at most {limit_mb:g} MB "
                         "(OCR_PDF_MAX_OUTPUT_MB); select fewer pages with pages=, or lower dpi")


class TooManyWordsForPdf(OcrError):
    """A searchable PDF's text layer would hold more words than OCR_PDF_MAX_WORDS: refused before rendering."""

    status = 413
    code = 41333

    def __init__(self, count: int, limit: int, page: int) -> None:
        super().__init__(f"more than {limit} words (OCR_PDF_MAX_WORDS) for the PDF's text layer: {count} by "
                         f"page {page}; select fewer pages with pages=, or ask for format=json")


class TooManyPages(OcrError):
    """More pages selected than OCR_MAX_PAGES: select fewer with pages=."""

    status = 422
    code = 42230

    def __init__(self, count: int, limit: int, at_least: bool = False) -> None:
        super().__init__(f"{'more than ' if at_least else ''}{count - at_least} pages selected: at most {limit} "
                         "per request (OCR_MAX_PAGES); select fewer with pages=, e.g. pages=1-10")


class PageTooManyPixels(OcrError):
    """A PDF page would render to more than OCR_MAX_PIXELS at the requested dpi."""

    status = 422
    code = 42231

    def __init__(self, page: int, width: int, height: int, dpi: int, max_pixels: int) -> None:
        super().__init__(f"page {page} would render to {width}x{height} px at {dpi} dpi, more than the "
                         f"{max_pixels:,} pixel limit (OCR_MAX_PIXELS): lower dpi")


class PageSizeBomb(OcrError):
    """A PDF page larger than OCR_PDF_MAX_PAGE_PT on a side, refused before rendering."""

    status = 422
    code = 42232

    def __init__(self, page: int, width_pt: float, height_pt: float, limit_pt: float) -> None:
        super().__init__(f"page {page} is {width_pt:.0f}x{height_pt:.0f} pt, larger than {limit_pt:.0f} pt on a "
                         "side (OCR_PDF_MAX_PAGE_PT): refused before rendering")


class PdfPasswordRequired(OcrError):
    """The PDF is encrypted: send its password."""

    status = 422
    code = 42233

    def __init__(self) -> None:
        super().__init__("the PDF is encrypted: send its password in the 'password' parameter")


class PdfWrongPassword(OcrError):
    """The PDF is encrypted and the password given does not open it."""

    status = 422
    code = 42234

    def __init__(self) -> None:
        super().__init__("the PDF is encrypted and the 'password' given does not open it")


class BrokenDocument(OcrError):
    """A broken document: a truncated or unreadable PDF, or an unreadable TIFF frame."""

    status = 422
    code = 42235


class PdfActiveContent(OcrError):
    """The PDF contains JavaScript (document scripts or a JavaScript action)."""

    status = 422
    code = 42236

    def __init__(self) -> None:
        super().__init__("the PDF contains JavaScript: documents with active content are refused")


class PdfImageBomb(OcrError):
    """A PDF page embeds an image larger than OCR_MAX_PIXELS, refused before rendering."""

    status = 422
    code = 42237

    def __init__(self, page: int, width: int, height: int, max_pixels: int) -> None:
        super().__init__(f"page {page} embeds a {width}x{height} px image, more than the {max_pixels:,} pixel "
                         "limit (OCR_MAX_PIXELS): refused before rendering")


class PageRenderTimeout(OcrError):
    """A PDF page took longer than OCR_PDF_RENDER_SECONDS to render."""

    status = 422
    code = 42238

    def __init__(self, page: int, seconds: float) -> None:
        super().__init__(f"page {page} took longer than {seconds:g} s to render (OCR_PDF_RENDER_SECONDS)")


class UnknownProfile(OcrError):
    code = 40010

    def __init__(self, name: str, valid: list[str]) -> None:
        super().__init__(f"unknown profile {name[:64]!r}: use one of {', '.join(valid)} (OCR_PROFILES)")
        self.valid = valid


class JobNotFound(OcrError):
    """No such job: it never existed, or it expired (OCR_JOB_TTL)."""

    status = 404
    code = 40450

    def __init__(self, job_id: str) -> None:
        super().__init__(f"no job {job_id!r}: it never existed or expired (OCR_JOB_TTL)")


class PageFailed(OcrError):
    """A document page sent through the gateway was refused: the document answers with that page's status
    and code (502/50250 only when the page's answer had no code)."""

    status = 502
    code = 50250


class JobStoreUnavailable(OcrError):
    """Jobs need Redis, which is down or not configured (OCR_REDIS_URL); /api/ocr keeps working."""

    status = 503
    code = 50350
    retry_after = 2

    def __init__(self, detail: str = "") -> None:
        extra = f": {detail}" if detail else ""
        super().__init__(f"the job store (Redis, OCR_REDIS_URL) is unavailable{extra}; /api/ocr still works")


class JobQueueFull(OcrError):
    """More than OCR_JOB_MAX_PENDING job pages wait in the queue."""

    status = 503
    code = 50351
    retry_after = 5

    def __init__(self, limit: int) -> None:
        super().__init__(f"the job queue holds more than {limit} pages (OCR_JOB_MAX_PENDING): retry later")


class JobPageExpired(OcrError):
    """A job's page data expired (OCR_JOB_TTL) before a consumer reached it: the job fails with this."""

    status = 410
    code = 41050

    def __init__(self, page: int) -> None:
        super().__init__(f"page {page} expired before it was processed (OCR_JOB_TTL)")


class JobPageRepeatedlyFailed(OcrError):
    """A job's page was delivered MAX_ATTEMPTS times without finishing (it killed its worker each time)."""

    status = 500
    code = 50050

    def __init__(self, page: int, attempts: int) -> None:
        super().__init__(f"page {page} was started {attempts} times and never finished")


class JobNeedsOneFile(OcrError):
    """A job takes one file: several were sent (a batch goes to /api/ocr)."""

    code = 40050

    def __init__(self, count: int) -> None:
        super().__init__(f"a job takes one file, {count} were sent: send a batch to /api/ocr, or one job per file")


class JobNotDone(OcrError):
    """A format=pdf job's PDF was asked for before the job is done: poll GET /api/jobs/<id> first."""

    status = 409
    code = 40950
    retry_after = 2

    def __init__(self, job_id: str, status: str, done: int, total: int) -> None:
        super().__init__(f"job {job_id} is {status} ({done} of {total} pages done): its PDF is ready once "
                         f"GET /api/jobs/{job_id} says done")


class JobNotPdf(OcrError):
    """The PDF of a job that was not submitted with format=pdf was asked for."""

    status = 409
    code = 40951

    def __init__(self, job_id: str, fmt: str) -> None:
        super().__init__(f"job {job_id} was submitted with format={fmt}: its result is in GET /api/jobs/{job_id}; "
                         "submit with format=pdf for a searchable PDF")


class JobEnded(OcrError):
    """A format=pdf job failed or was cancelled: it has no PDF, and its original upload is gone."""

    status = 410
    code = 41051

    def __init__(self, job_id: str, status: str) -> None:
        super().__init__(f"job {job_id} is {status}: it has no PDF and its upload was dropped; submit it again")


class JobOriginalExpired(OcrError):
    """A done format=pdf job whose original upload is no longer in the job store (a Redis restart, or an
    instance of a version that did not keep it alive)."""

    status = 410
    code = 41052

    def __init__(self, job_id: str) -> None:
        super().__init__(f"the upload of job {job_id} expired from the job store before its PDF was made "
                         "(OCR_JOB_TTL): submit it again")


class RecognitionTimeout(OcrError):
    """Tesseract took longer than OCR_TESS_TIMEOUT_MS on one page: the page, not the instance, is the
    problem (another instance would take as long), so it is a 422 and not a 503 the gateway retries."""

    status = 422
    code = 42240

    def __init__(self, timeout_ms: int) -> None:
        super().__init__(f"Tesseract did not finish the page within the {timeout_ms} ms limit "
                         "(OCR_TESS_TIMEOUT_MS): send a smaller or cleaner image, or another lang")


class UnknownLanguage(OcrError):
    """A lang= code that is neither ISO 639-1 nor a Tesseract code of the catalog."""

    code = 40040

    def __init__(self, code: str) -> None:
        super().__init__(f"lang={code[:40]!r} is not a known language: GET /api/languages lists the codes "
                         "(ISO 639-1 such as de, ru, ar, or Tesseract's such as deu), or use lang=auto")


class LanguageNotInstalled(OcrError):
    """A known language whose Tesseract data this instance does not have."""

    code = 40041

    def __init__(self, codes: list[str], packages: list[str]) -> None:
        super().__init__(f"lang={','.join(codes)} is not installed on this instance: it needs the package "
                         f"{', '.join(packages)} (install it with: fleetctl deps --langs {','.join(codes)}); "
                         "GET /api/languages says what is installed")


class BadLanguageList(OcrError):
    """A lang= value that is no list of codes: too long, too many codes, or characters no code has."""

    code = 40042

    def __init__(self, max_codes: int, max_chars: int) -> None:
        super().__init__(f"lang= takes up to {max_codes} language codes of letters (and _), joined by commas, "
                         f"at most {max_chars} characters in all: e.g. lang=de,en or lang=auto")


class LanguageNeedsProfile(OcrError):
    """A language the requested profile's models cannot read (Japanese and the fast profile's tiny models)."""

    code = 40043

    def __init__(self, code: str, profile: str, use: str) -> None:
        super().__init__(f"lang={code} cannot be read by profile={profile} (its models have no such language): "
                         f"use profile={use}, or leave profile out")
