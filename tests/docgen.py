"""Documents with known text for the tests: PDFs (scanned and born-digital pages), TIFFs, hostile files."""
from __future__ import annotations

import io
import zipfile

from fpdf import FPDF
from helpers import text_image
from PIL import Image


def text_pdf(pages: list[tuple[str, str]], encrypt: str | None = None) -> bytes:
    """A PDF with one page per (kind, text): "scan" is a picture of the text, "digital" real text, and
    "stamped scan" a full-page picture of the text with a small digital stamp."""
    pdf = FPDF(unit="pt", format=(612, 792))
    pdf.set_auto_page_break(False)
    for kind, text in pages:
        pdf.add_page()
        if kind == "scan":
            image = Image.open(io.BytesIO(text_image(text, size=(1000, 200), fmt="PNG")))
            pdf.image(image, x=36, y=100, w=540)
        elif kind == "stamped scan":  # a full-page scan with a small digital stamp on it
            image = Image.open(io.BytesIO(text_image(text, size=(612, 792), fmt="PNG", font_size=40)))
            pdf.image(image, x=0, y=0, w=612, h=792)
            pdf.set_font("Helvetica", size=10)
            pdf.text(x=500, y=780, text="STAMP")
        else:
            pdf.set_font("Helvetica", size=28)
            pdf.text(x=60, y=150, text=text)
    if encrypt:
        pdf.set_encryption(owner_password="owner-" + encrypt, user_password=encrypt)
    return bytes(pdf.output())


def tiff_pages(texts: list[str], size: tuple[int, int] = (800, 200), font_size: int = 48) -> bytes:
    """A multi-page TIFF, one frame per text."""
    frames = [Image.open(io.BytesIO(text_image(t, size=size, fmt="PNG", font_size=font_size))).convert("RGB")
              for t in texts]
    buf = io.BytesIO()
    frames[0].save(buf, "TIFF", save_all=True, append_images=frames[1:], compression="tiff_lzw")
    return buf.getvalue()


def raw_pdf(objects: list[bytes]) -> bytes:
    """A PDF from raw object bodies (object 1 is the catalog), with a correct xref table and trailer."""
    out = bytearray(b"%PDF-1.7\n")
    offsets = []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % off for off in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)


def pages_pdf(count: int, media_box: str = "0 0 612 792", extra_catalog: bytes = b"") -> bytes:
    """`count` empty pages sharing one MediaBox (a page bomb when the box is huge)."""
    kids = b" ".join(b"%d 0 R" % (3 + i) for i in range(count))
    objects = [b"<< /Type /Catalog /Pages 2 0 R " + extra_catalog + b" >>",
               b"<< /Type /Pages /Kids [" + kids + b"] /Count %d /MediaBox [%s] >>" % (count, media_box.encode())]
    objects += [b"<< /Type /Page /Parent 2 0 R >>"] * count
    return raw_pdf(objects)


def javascript_pdf() -> bytes:
    """One page and an OpenAction that runs JavaScript."""
    return pages_pdf(1, extra_catalog=b"/OpenAction << /S /JavaScript /JS (app.alert\\('hi'\\);) >>")


def zip_as_pdf() -> bytes:
    """A zip archive, as a client might send it by mistake with a .pdf name and type."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("doc.pdf", b"%PDF-1.7 not really")
    return buf.getvalue()


def raw_tiff(sizes: list[tuple[int, int]], loop: bool = False) -> bytes:
    """A greyscale TIFF whose frames claim `sizes` but all share one 64x64 strip (a frame bomb when huge).

    With `loop`, the last frame's next-IFD offset points back at the first.
    """
    import struct

    pixels = bytes(range(256)) * 16  # 64x64, 8-bit
    header = b"II*\x00" + struct.pack("<I", 8 + len(pixels))
    out = bytearray(header + pixels)
    ifd_size = 2 + 8 * 12 + 4
    first_ifd = len(out)
    for i, (width, height) in enumerate(sizes):
        entries = [(256, 4, width), (257, 4, height), (258, 3, 8), (259, 3, 1), (262, 3, 1),
                   (273, 4, 8), (278, 4, 64), (279, 4, len(pixels))]
        last = i == len(sizes) - 1
        following = first_ifd if (last and loop) else (0 if last else len(out) + ifd_size)
        out += struct.pack("<H", len(entries))
        for tag, kind, value in entries:
            value_field = struct.pack("<I", value) if kind == 4 else struct.pack("<HH", value, 0)
            out += struct.pack("<HHI", tag, kind, 1) + value_field
        out += struct.pack("<I", following)
    return bytes(out)


def image_bomb_pdf(width: int = 60000, height: int = 60000) -> bytes:
    """One page showing an image XObject that claims `width` x `height` pixels (its data is a few bytes)."""
    import zlib

    data = zlib.compress(b"\x00" * 64)
    content = b"q 500 0 0 500 50 50 cm /Im1 Do Q"
    return raw_pdf([
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /XObject << /Im1 5 0 R >> >>"
        b" /Contents 4 0 R >>",
        b"<< /Length %d >>\nstream\n" % len(content) + content + b"\nendstream",
        b"<< /Type /XObject /Subtype /Image /Width %d /Height %d /ColorSpace /DeviceGray /BitsPerComponent 8"
        b" /Filter /FlateDecode /Length %d >>\nstream\n" % (width, height, len(data)) + data + b"\nendstream",
    ])


def javascript_in_object_stream_pdf() -> bytes:
    """An OpenAction running JavaScript, kept in a Flate-compressed object stream (no /JS in the plain bytes)."""
    import zlib

    header = b"5 0 "
    data = zlib.compress(header + b"<< /S /JavaScript /JS (app.alert\\(1\\);) >>")
    return raw_pdf([
        b"<< /Type /Catalog /Pages 2 0 R /OpenAction 5 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 /MediaBox [0 0 612 792] >>",
        b"<< /Type /Page /Parent 2 0 R >>",
        b"<< /Type /ObjStm /N 1 /First %d /Filter /FlateDecode /Length %d >>\nstream\n" % (len(header), len(data))
        + data + b"\nendstream",
    ])


def busy_page_pdf(strokes: int = 200_000) -> bytes:
    """One page drawing `strokes` lines: slow to render on purpose."""
    content = b"".join(b"%d 0 m %d 792 l S\n" % (i % 612, (i * 7) % 612) for i in range(strokes))
    return raw_pdf([
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R >>",
        b"<< /Length %d >>\nstream\n" % len(content) + content + b"\nendstream",
    ])
