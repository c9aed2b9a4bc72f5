"""The upload + its recognized pages -> a searchable PDF: the same pages with an invisible text layer.

A PDF comes back as it was sent (its objects, images included, are not re-encoded), with OCRmyPDF's
text layer grafted onto each OCRed page as a form XObject; pages read from their own text layer and
pages not selected are left alone. An image (or multi-page TIFF) first becomes a PDF of its own
(image_pdf). The text is rendered by OCRmyPDF's fpdf2 renderer from the OcrElement trees of ocr_tree,
in its glyphless font, so it is invisible (render mode 3) and selectable word by word.

OCRmyPDF, pikepdf and fpdf2 are imported on the first PDF only: an instance that never renders one
does not carry them. Pure: bytes and pages in, bytes out.
"""
from __future__ import annotations

import hashlib
import io
import logging
import tempfile
from contextlib import closing
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ocr_app.config import Settings
from ocr_app.documents.ocr_tree import page_tree
from ocr_app.documents.pages import PageResult, upload_format
from ocr_app.errors import (
    BrokenDocument,
    PdfOutputTooLarge,
    PdfPasswordRequired,
    PdfWrongPassword,
    TooManyPages,
    TooManyWordsForPdf,
    UnsupportedImage,
)
from ocr_app.options import RequestOptions

if TYPE_CHECKING:
    import pikepdf

# The text layer is laid out in points at this resolution, then scaled onto its page: any value works,
# this one keeps the renderer's numbers (two decimals) precise to a hundredth of a pixel at 200 dpi.
TEXT_DPI = 72.0


def searchable_pdf(original: bytes, pages: list[PageResult], options: RequestOptions, settings: Settings) -> bytes:
    """`original` (the upload as sent: a PDF, a multi-page TIFF or an image) as a PDF whose OCRed pages
    carry their recognized text, invisible, under the picture.

    `pages` are the recognized pages (numbers from 1, boxes in their width x height pixels). The answer
    is never encrypted, even when the input was (it was opened with `options.password`).
    Raises TooManyWordsForPdf before any rendering, PdfOutputTooLarge when the result passes
    OCR_PDF_MAX_OUTPUT_MB.
    """
    ocred = [p for p in pages if p.source == "ocr"]
    check_words(ocred, settings)
    import pikepdf

    fmt = upload_format(original)
    if fmt is None:  # the upload itself is needed, as sent: not its pages, nor nothing
        raise UnsupportedImage("format=pdf needs the upload as sent (a PDF or an image): got none of them")
    try:
        body = _assemble(original, fmt, ocred, options, settings)
    except pikepdf.PdfError as exc:  # qpdf could not write what PDFium read: a broken file, not our bug
        raise BrokenDocument(f"the PDF could not be rewritten as a searchable PDF: {exc}") from None
    if len(body) > settings.pdf_max_output_bytes:
        raise PdfOutputTooLarge(len(body), settings.pdf_max_output_mb)
    return body


def _assemble(original: bytes, fmt: str, ocred: list[PageResult], options: RequestOptions,
              settings: Settings) -> bytes:
    import pikepdf

    if fmt == "PDF":
        pdf = _open_pdf(original, options.password)
    else:
        pdf = pikepdf.open(io.BytesIO(_image_document(original, fmt, settings)))
    with pdf:
        for page in ocred:
            if not 1 <= page.number <= len(pdf.pages):
                raise BrokenDocument(f"page {page.number} is not in the document ({len(pdf.pages)} pages)")
        trees = [(p.number, page_tree(p.width, p.height, p.lines, TEXT_DPI, p.number - 1)) for p in ocred]
        trees = [(number, tree) for number, tree in trees if tree.children]  # an empty page gets no layer
        if trees:
            with tempfile.TemporaryDirectory(prefix="ocr-pdf-") as tmp:
                text_path = Path(tmp) / "text.pdf"
                _render(trees, text_path)
                with pikepdf.open(text_path) as text:
                    for (number, _), text_page in zip(trees, text.pages, strict=True):
                        graft(pdf, pdf.pages[number - 1], text_page)
        if fmt != "PDF":  # a new PDF: its first ID from the upload (img2pdf's changes with the clock)
            first = pikepdf.String(hashlib.md5(original, usedforsecurity=False).digest())
            pdf.trailer.ID = pikepdf.Array([first, first])
        out = io.BytesIO()
        # encryption=False: a password-protected input comes back open (documented in docs/api.md);
        # the second ID is a hash of the content, so equal uploads give equal PDFs
        pdf.save(out, encryption=False, deterministic_id=True)
    return out.getvalue()


def check_words(pages: list[PageResult], settings: Settings) -> None:
    """Refuse a text layer of more words than OCR_PDF_MAX_WORDS, counted before anything is rendered."""
    limit = settings.pdf_max_words
    total = 0
    for page in pages:
        for line in page.lines:
            words = line.get("words")
            total += len(words) if isinstance(words, list) and words else len(str(line.get("text", "")).split())
        if total > limit:
            raise TooManyWordsForPdf(total, limit, page.number)


def graft(pdf: pikepdf.Pdf, page: pikepdf.Page, text_page: pikepdf.Page) -> None:
    """Draw `text_page` (the text layer, laid out on the page as it is displayed) on `page`, under its
    content, as a form XObject: the page's own content streams and resources stay as they are.

    The layer is fitted to the box PDFium renders (the CropBox within the MediaBox, whose corner need not
    be 0,0) and turned with the page's /Rotate, so the text lands where the rendered pixels were."""
    from pikepdf import Matrix, Name

    left, bottom, right, top = visible_box(page)
    rotation = page.rotation % 360
    tw, th = (float(v) for v in text_page.mediabox[2:4])
    if rotation in (90, 270):
        tw, th = th, tw  # the layer was laid out on the page as displayed: turned back here
    ctm = (Matrix().translated(-float(text_page.mediabox[2]) / 2, -float(text_page.mediabox[3]) / 2)
           @ Matrix().rotated(rotation)
           @ Matrix().scaled((right - left) / tw, (top - bottom) / th)
           @ Matrix().translated((left + right) / 2, (top + bottom) / 2))
    form = pdf.copy_foreign(text_page.as_form_xobject())
    inherited = page.get_resources()
    if Name.Resources not in page.obj and inherited is not None:
        page.obj.Resources = inherited  # from the page tree: a page's own /Resources would hide it
    taken: Any = inherited.get(Name.XObject, {}) if inherited is not None else {}
    # a name of our own that the page does not use yet (not a random one: equal uploads, equal PDFs)
    name = next(Name(f"/OCRText{i or ''}") for i in range(len(taken) + 1) if Name(f"/OCRText{i or ''}") not in taken)
    page.add_resource(form, Name.XObject, name, replace_existing=False)
    layer = pdf.make_stream(b"q %s cm %s Do Q\n" % (ctm.encode(), str(name).encode()))
    # prepended: it runs in the page's initial graphics state, whatever the page's own content leaves
    page.contents_add(layer, prepend=True)


def visible_box(page: pikepdf.Page) -> tuple[float, float, float, float]:
    """The page's area as PDFium renders it: the CropBox clipped to the MediaBox (left, bottom, right, top)."""
    media = _box(page.mediabox)
    crop = _box(page.cropbox)
    box = (max(media[0], crop[0]), max(media[1], crop[1]), min(media[2], crop[2]), min(media[3], crop[3]))
    return box if box[2] > box[0] and box[3] > box[1] else media


def _box(array: Any) -> tuple[float, float, float, float]:
    x0, y0, x1, y1 = (float(v) for v in array)
    return min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1)


def _render(trees: list[tuple[int, Any]], path: Path) -> None:
    """All text pages in one PDF (one embedded font for them all), with OCRmyPDF's own renderer."""
    from ocrmypdf.font import BuiltinFontProvider, MultiFontManager
    from ocrmypdf.fpdf_renderer import Fpdf2MultiPageRenderer

    # fpdf2 subsets the font with fontTools, which logs every table it prunes at INFO: keep that out of ours
    logging.getLogger("fontTools").setLevel(logging.WARNING)
    # The bundled fonts only (NotoSans, and Occulta for every other script): no search of the host's fonts.
    fonts = MultiFontManager(font_provider=BuiltinFontProvider())
    Fpdf2MultiPageRenderer([(number - 1, tree, TEXT_DPI) for number, tree in trees], fonts,
                           invisible_text=True).render(path)


def _open_pdf(data: bytes, password: str | None) -> pikepdf.Pdf:
    import pikepdf

    try:
        return pikepdf.open(io.BytesIO(data), password=password or "")
    except pikepdf.PasswordError:
        raise (PdfWrongPassword() if password else PdfPasswordRequired()) from None
    except pikepdf.PdfError as exc:
        raise BrokenDocument(f"the PDF could not be read for the searchable PDF: {exc}") from None


def _image_document(data: bytes, fmt: str, settings: Settings) -> bytes:
    """An image upload as a PDF of its own; every frame of a multi-page TIFF is a page."""
    from ocr_app.documents.image_pdf import image_document
    from ocr_app.documents.tiff import TiffFile

    tiff = TiffFile.open(data, settings, settings.max_pages + 1) if fmt == "TIFF" else None
    if tiff is None:
        return image_document(data, all_frames=False)
    with closing(tiff):  # counted only: img2pdf reads the frames itself
        if tiff.page_count > settings.max_pages:
            raise TooManyPages(tiff.page_count, settings.max_pages, at_least=not tiff.counted_all)
    return image_document(data, all_frames=True)
