"""The MIME walk: the parser the archive reads mail with, the leaves of a message in
document order, which leaf is the body, and what each other leaf is as an attachment
(decoded text, HTML turned into words, PDF text).

Every cap here exists because hostile mail would otherwise cost unbounded time or memory.
"""

import hashlib
import io
import re
from dataclasses import dataclass
from email.message import Message
from email.parser import BytesParser
from email.policy import Compat32
from email.utils import collapse_rfc2231_value

from archiver.htmltext import html_to_text
from archiver.parse.charsets import decode_bytes, from_8bit
from archiver.parse.headers import collapse, header_text

BODY_TEXT_LIMIT = 2_000_000

ATTACHMENT_TEXT_LIMIT = 1_000_000

# HTML shrinks when turned into text; parsing more than this cannot fill the body cap anyway
# and would only cost time on hostile mail.
_HTML_INPUT_LIMIT = 4 * BODY_TEXT_LIMIT

# Deeper nesting than this is an attack (or mime4j's "infinite.msg"), not correspondence.
_MAX_DEPTH = 50

_MAX_PARTS = 5_000

# The attachments table stores content_type as VARCHAR(255).
_MAX_CONTENT_TYPE_LENGTH = 255

_BODY_JUNK = re.compile("[\x00\ud800-\udfff]")

_META_CHARSET = re.compile(rb"<meta[^>]+charset\s*=\s*[\"']?\s*([A-Za-z0-9_.:-]+)", re.IGNORECASE)

_FILENAME_UNSAFE = re.compile(r"[/\\]")


@dataclass(frozen=True)
class Attachment:
    """One MIME leaf that is not the body text, described without its payload."""

    filename: str | None
    content_type: str
    size: int
    sha256: str
    text: str | None


class _RawHeaderPolicy(Compat32):
    """compat32, except that header values come back exactly as they were read.

    Stock compat32 wraps values holding 8-bit bytes in ``Header`` objects; raw strings (with
    the 8-bit bytes kept as surrogate escapes) let ``header_text`` recover the bytes and try
    UTF-8 before Windows-1252.
    """

    def header_fetch_parse(self, name: str, value: str) -> str:
        """Return the stored value unchanged."""
        return value


PARSER = BytesParser(policy=_RawHeaderPolicy())


def header_block_end(data: bytes) -> int:
    """Return the offset where the body starts, or -1 if there is no header/body separator."""
    ends = [(i, len(sep)) for sep in (b"\r\n\r\n", b"\n\n") if (i := data.find(sep)) >= 0]
    if data.startswith((b"\r\n", b"\n")):
        return 2 if data.startswith(b"\r\n") else 1
    if not ends:
        return -1
    index, length = min(ends)
    return index + length


def clean_body(text: str, limit: int, flags: set[str]) -> str:
    """Drop what a database or an index cannot hold (NUL, lone surrogates) and cap the size."""
    text = _BODY_JUNK.sub("", text)
    if len(text) > limit:
        flags.add("truncated_text")
        text = text[:limit]
    return text


@dataclass
class _Leaf:
    part: Message
    content_type: str
    alternative: Message | None  # nearest multipart/alternative above, if any


def walk(message: Message, flags: set[str]) -> tuple[list[_Leaf], list[Message]]:
    """Return the leaves in document order and every node visited.

    Iterative with a depth cap, so hostile nesting cannot exhaust the stack. message/* parts
    are leaves: an attached message is one attachment, not part of this message's body.
    """
    leaves: list[_Leaf] = []
    nodes: list[Message] = []
    stack: list[tuple[Message, Message | None, int]] = [(message, None, 0)]
    while stack:
        part, alternative, depth = stack.pop()
        nodes.append(part)
        content_type = part.get_content_type()
        maintype = content_type.partition("/")[0]
        _note_encryption(part, content_type, flags)
        if maintype == "multipart" and part.is_multipart():
            children = [child for child in part.get_payload() if isinstance(child, Message)]
            if depth >= _MAX_DEPTH or len(nodes) + len(stack) > _MAX_PARTS:
                flags.add("mime_defects")
                continue
            room = _MAX_PARTS - len(nodes) - len(stack)
            if len(children) > room:  # one multipart with thousands of parts: walk the first
                flags.add("mime_defects")
                children = children[:room]
            if content_type == "multipart/alternative":
                alternative = part
            stack.extend((child, alternative, depth + 1) for child in reversed(children))
            continue
        if maintype == "multipart":
            # A multipart without a usable boundary is still text someone can read.
            content_type = "text/plain"
        leaves.append(_Leaf(part, content_type, alternative))
    return leaves, nodes


def _note_encryption(part: Message, content_type: str, flags: set[str]) -> None:
    if content_type == "multipart/encrypted":
        flags.add("encrypted")
    elif content_type in ("application/pkcs7-mime", "application/x-pkcs7-mime"):
        smime_type = str(part.get_param("smime-type", "") or "").lower()
        if smime_type not in ("signed-data", "certs-only"):
            flags.add("encrypted")


def _filename(part: Message, flags: set[str], hint: str | None) -> str | None:
    raw_name = part.get_filename()
    if raw_name is None:
        return None
    name = header_text(str(raw_name), flags, hint).strip()
    return name or None


def _charset_label(part: Message) -> str | None:
    label = part.get_param("charset")
    if isinstance(label, tuple):
        label = collapse_rfc2231_value(label)
    if not label:
        return None
    return from_8bit(str(label), set())


def payload_bytes(part: Message) -> bytes:
    if part.get_content_maintype() == "message" and part.is_multipart():
        return message_part_bytes(part)
    data = part.get_payload(decode=True)
    return data if isinstance(data, bytes) else b""


def message_part_bytes(part: Message) -> bytes:
    """Re-serialise a message/* part's payload; the parser keeps no byte offsets."""
    try:
        data = part.as_bytes()
    except Exception:
        return b""
    data_lf = data.replace(b"\r\n", b"\n")
    if data_lf.startswith(b"\n"):
        return data_lf[1:]
    split = data_lf.find(b"\n\n")
    return data_lf[split + 2 :] if split >= 0 else b""


def decoded_text(part: Message, content_type: str, data: bytes, flags: set[str]) -> str:
    """A text part's bytes as text: its declared charset, else (HTML) its <meta> one."""
    label = _charset_label(part)
    if label is None and content_type == "text/html":
        sniffed = _META_CHARSET.search(data[:4096])
        if sniffed:
            label = sniffed.group(1).decode("ascii")
    text, clean = decode_bytes(data, label)
    if not clean:
        flags.add("bad_charset")
    return text


def _part_text(part: Message, content_type: str, data: bytes, limit: int, flags: set[str]) -> str:
    """Decode a text part, turning HTML into readable text, capped at ``limit`` characters."""
    text = decoded_text(part, content_type, data, flags)
    if content_type == "text/html":
        if len(text) > _HTML_INPUT_LIMIT:
            flags.add("truncated_text")
            text = text[:_HTML_INPUT_LIMIT]
        text = html_to_text(text)
    else:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    return clean_body(text, limit, flags)


def _choose_body(leaves: list[_Leaf], names: list[str | None]) -> int | None:
    """Pick the leaf that is the message's text: plain before HTML, unnamed before named,
    never one marked as an attachment; the first wins among equals."""
    best: tuple[int, int] | None = None
    for index, leaf in enumerate(leaves):
        if leaf.content_type not in ("text/plain", "text/html"):
            continue
        if leaf.part.get_content_disposition() == "attachment":
            continue
        rank = (0 if leaf.content_type == "text/plain" else 1) + (2 if names[index] else 0)
        if best is None or rank < best[0]:
            best = (rank, index)
    return None if best is None else best[1]


def content(
    message: Message, flags: set[str], *, attachments: bool = True
) -> tuple[str, list[Attachment], list[Message], str | None]:
    """Return the body text, the attachments (none unless ``attachments``), every MIME node,
    and the body's charset label (the best guess for raw 8-bit bytes in headers)."""
    leaves, nodes = walk(message, flags)
    hint = next(
        (
            label
            for leaf in leaves
            if leaf.content_type.startswith("text/")
            if (label := _charset_label(leaf.part))
        ),
        None,
    )
    names = [_filename(leaf.part, flags, hint) for leaf in leaves]
    chosen = _choose_body(leaves, names)

    body = ""
    chosen_alternative = None
    if chosen is not None:
        leaf = leaves[chosen]
        chosen_alternative = leaf.alternative
        body = _part_text(
            leaf.part, leaf.content_type, payload_bytes(leaf.part), BODY_TEXT_LIMIT, flags
        )
        if leaf.content_type == "text/html":
            flags.add("html_only")

    found: list[Attachment] = []
    for index, leaf in enumerate(leaves if attachments else []):
        if index == chosen or _other_rendition(leaf, names[index], chosen_alternative):
            continue
        try:
            found.append(
                _attachment(leaf, names[index], chosen_alternative, flags),
            )
        except Exception:
            # One part defeating the decoder must not cost the rest of the message.
            flags.add("mime_defects")
    return body, found, nodes, hint


def _other_rendition(leaf: _Leaf, filename: str | None, chosen: Message | None) -> bool:
    """The HTML twin of a plain-text body (or the reverse) is the body, not an attachment;
    counting it would make `has:attachment` true for most mail."""
    return (
        chosen is not None
        and leaf.alternative is chosen
        and leaf.content_type.startswith("text/")
        and filename is None
    )


def _attachment(
    leaf: _Leaf, filename: str | None, chosen_alternative: Message | None, flags: set[str]
) -> Attachment:
    part, content_type = leaf.part, leaf.content_type
    # 8-bit bytes or control characters in a type are no type (and no database takes them)
    unusable = not (content_type.isascii() and content_type.isprintable())
    if len(content_type) > _MAX_CONTENT_TYPE_LENGTH or unusable:
        content_type = "application/octet-stream"
    data = payload_bytes(part)
    text: str | None = None
    if content_type == "message/rfc822" and filename is None:
        inner = part.get_payload(0) if part.is_multipart() else None
        subject = collapse(header_text(inner.get("subject"), set())) if inner else ""
        filename = _FILENAME_UNSAFE.sub("_", subject or "message") + ".eml"
    if content_type.startswith("text/"):
        # Another rendering of the chosen body (the HTML twin of a text/plain part) would
        # only index the same words twice.
        if chosen_alternative is None or leaf.alternative is not chosen_alternative:
            text = _part_text(part, content_type, data, ATTACHMENT_TEXT_LIMIT, flags)
    elif content_type == "application/pdf" or (
        content_type == "application/octet-stream"
        and filename is not None
        and filename.lower().endswith(".pdf")
    ):
        text = _pdf_text(data, flags)
    return Attachment(
        filename=filename,
        content_type=content_type,
        size=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
        text=text,
    )


def _pdf_text(data: bytes, flags: set[str]) -> str | None:
    """Extract a PDF's text with pypdf, page by page until the cap; None if it will not read."""
    try:
        from pypdf import PdfReader

        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted:
            reader.decrypt("")
        chunks: list[str] = []
        total = 0
        for page in reader.pages:
            chunk = page.extract_text() or ""
            chunks.append(chunk)
            total += len(chunk) + 1
            if total > ATTACHMENT_TEXT_LIMIT:
                break
        return clean_body("\n".join(chunks), ATTACHMENT_TEXT_LIMIT, flags)
    except Exception:
        flags.add("pdf_unreadable")
        return None
