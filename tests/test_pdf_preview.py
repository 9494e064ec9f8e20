"""A PDF attachment's first page as a picture: small whatever the page's size, and nothing
at all (never an error) for a file that is not a PDF, is broken, or is too big."""

from __future__ import annotations

import io

from PIL import Image
from pypdf import PdfWriter

from tests.reading_mail import pdf
from web import pdf_preview
from web.pdf_preview import MAX_HEIGHT, MAX_WIDTH, first_page_png


def size_of(png: bytes | None) -> tuple[int, int]:
    assert png is not None and png.startswith(b"\x89PNG\r\n\x1a\n")
    with Image.open(io.BytesIO(png)) as picture:
        return picture.size


def test_the_first_page_fits_the_preview_box() -> None:
    width, height = size_of(first_page_png(pdf()))
    assert height == MAX_HEIGHT and width == round(MAX_HEIGHT * 300 / 400)


def test_a_page_two_hundred_inches_wide_still_makes_a_small_picture() -> None:
    writer = PdfWriter()
    writer.add_blank_page(14400, 300)
    out = io.BytesIO()
    writer.write(out)
    width, height = size_of(first_page_png(out.getvalue()))
    assert width == MAX_WIDTH and height <= MAX_HEIGHT


def test_what_is_not_a_whole_pdf_gets_no_picture(monkeypatch) -> None:
    real = pdf()
    assert first_page_png(b"") is None
    assert first_page_png(b"GIF89a not a PDF") is None
    assert first_page_png(b"%PDF-1.7\n1 0 obj << /Type /Catalog >> endobj\n%%EOF") is None
    assert first_page_png(real[: len(real) // 3]) is None
    monkeypatch.setattr(pdf_preview, "MAX_PDF_BYTES", len(real) - 1)
    assert first_page_png(real) is None
