"""The upload a format=pdf job keeps until its searchable PDF is made: as sent, or decrypted.

The password never reaches Redis, yet the PDF is rendered later, on whichever instance answers
GET /api/jobs/<id>/result.pdf. So an encrypted PDF is kept decrypted (qpdf, through pikepdf, rewrites
it without its security handler): its pages are already in the job store as rendered images, so the
decrypted copy shows nothing the job did not already hold, and the PDF it yields is unencrypted.
"""
from __future__ import annotations

import io

import pikepdf

from ocr_app.errors import BrokenDocument, PayloadTooLarge, PdfWrongPassword


def kept_original(data: bytes, fmt: str | None, password: str | None, max_bytes: int, limit_mb: float) -> bytes:
    """What the job store keeps of an upload: itself, or for an encrypted PDF its decrypted copy.

    The upload was checked (opened, every page planned) before this is called; the copy is held to the
    same limit as an upload (OCR_MAX_UPLOAD_MB), so a job keeps at most that much besides its pages."""
    kept = _decrypted(data, password) if fmt == "PDF" else data
    if len(kept) > max_bytes:
        raise PayloadTooLarge(limit_mb)
    return kept


def _decrypted(data: bytes, password: str | None) -> bytes:
    try:
        with pikepdf.open(io.BytesIO(data), password=password or "") as pdf:
            if not pdf.is_encrypted:
                return data  # kept exactly as sent
            out = io.BytesIO()
            pdf.save(out)  # without `encryption=`, pikepdf writes the file unencrypted
            return out.getvalue()
    except pikepdf.PasswordError:
        raise PdfWrongPassword() from None
    except pikepdf.PdfError as exc:
        raise BrokenDocument(f"the PDF cannot be kept for format=pdf: {str(exc)[:200]}") from None
