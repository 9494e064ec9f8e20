"""What an attachment card shows before anyone downloads the file: a picture, the first
page of a PDF, or the first lines of a text file.

The type is decided from the bytes, never from what the mail claims: a file called
`photo.png` that is really HTML gets no preview, and an image is served with the type its
first bytes prove (PNG, JPEG, GIF or WebP; never SVG, which is a document that can run
script). Text is shown escaped, as text, on the message page itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from pathlib import PurePosixPath

from archiver.models import Attachment
from archiver.parse.parts import Part

# Pictures bigger than this are offered as downloads only (a preview is a thumbnail).
MAX_IMAGE_BYTES = 15 * 1024 * 1024
TEXT_LINES = 40
TEXT_LINE_CHARACTERS = 240
# Enough bytes for forty long lines; the rest is not decoded at all.
TEXT_BYTES = TEXT_LINES * TEXT_LINE_CHARACTERS

# Types and file names worth reading as text (HTML and SVG are documents: downloads only).
TEXT_TYPES = frozenset(
    {
        "application/json",
        "application/x-sh",
        "application/x-python",
        "application/x-yaml",
        "application/xml",
        "application/sql",
        "message/delivery-status",
    }
)
NOT_TEXT_TYPES = frozenset({"text/html", "text/xml", "image/svg+xml"})
_SUFFIXES = (
    "txt text log csv tsv md rst json yaml yml toml ini cfg conf xml sql py js ts java c h "
    "cc cpp hpp cs go rs rb php pl sh bat ps1 kt swift diff patch eml ics vcf"
)
TEXT_SUFFIXES = frozenset(f".{suffix}" for suffix in _SUFFIXES.split())


class Kind(StrEnum):
    """What kind of preview a file gets."""

    IMAGE = "image"
    PDF = "pdf"
    TEXT = "text"


@dataclass(frozen=True)
class Preview:
    """An attachment's preview: its kind, and for text the first lines."""

    kind: Kind
    text: str = ""
    more: bool = False  # the text goes on past what is shown


def image_type(data: bytes) -> str | None:
    """The image type `data` proves by its first bytes, among those shown inline."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data.startswith((b"GIF87a", b"GIF89a")):
        return "image/gif"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return None


def is_pdf(data: bytes) -> bool:
    """Whether `data` is a PDF (its header may follow some junk, as readers allow)."""
    return b"%PDF-" in data[:1024]


def _looks_like_text(attachment: Attachment) -> bool:
    content_type = (attachment.content_type or "").lower()
    if content_type in NOT_TEXT_TYPES:
        return False
    suffix = PurePosixPath((attachment.filename or "").lower()).suffix
    return content_type.startswith("text/") or content_type in TEXT_TYPES or suffix in TEXT_SUFFIXES


def first_lines(data: bytes, charset: str | None) -> Preview | None:
    """The first lines of a text file, or None if it is not text after all (NUL bytes)."""
    head = data[:TEXT_BYTES]
    if b"\x00" in head:
        return None
    try:
        text = head.decode(charset or "utf-8", "replace")
    except LookupError:
        text = head.decode("utf-8", "replace")
    lines = text.splitlines()
    shown = [line[:TEXT_LINE_CHARACTERS] for line in lines[:TEXT_LINES]]
    more = len(lines) > TEXT_LINES or len(data) > TEXT_BYTES
    return Preview(Kind.TEXT, "\n".join(shown), more)


def preview(attachment: Attachment, part: Part | None) -> Preview | None:
    """The preview the message page shows for `attachment`; None for none."""
    if part is None or not part.data:
        return None
    data = part.data
    if image_type(data) and len(data) <= MAX_IMAGE_BYTES:
        return Preview(Kind.IMAGE)
    if is_pdf(data):
        return Preview(Kind.PDF)
    if _looks_like_text(attachment):
        return first_lines(data, part.charset)
    return None
