"""Turn the raw bytes of one message into the values the archive stores and indexes.

Everything here is a pure function of the bytes it is given, so the archive worker can re-run
it on a stored raw message after a crash or an upgrade and get the same answer (design
invariant 2). Real mail is often broken and the archive must keep all of it, so nothing here
raises for any input: trouble becomes an entry in ``ParsedMessage.flags`` instead, and a
message the parser cannot read at all is still described by whatever could be read
(invariant 5).

Parsing uses the ``compat32`` policy with header values handed back untouched: it is several
times faster than the default policy's header registry, and it leaves the choice of how to
decode broken charsets to this package instead of to an opaque ``Header`` object.

The package is split by topic: ``charsets`` (bytes to text), ``headers`` (header values,
addresses, ids, dates), ``mime`` (the walk over the parts, body and attachments) and
``journal`` (Exchange journal reports); the entry points live here.
"""

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import Message
from typing import TypeVar

from archiver.parse.headers import (
    Address,
    addresses,
    collapse,
    first_id,
    header_date,
    header_text,
    list_id,
    msg_ids,
)
from archiver.parse.journal import JournalReport, unwrap_journal_report
from archiver.parse.mime import (
    ATTACHMENT_TEXT_LIMIT,
    BODY_TEXT_LIMIT,
    PARSER,
    Attachment,
    clean_body,
    content,
    decoded_text,
    header_block_end,
    payload_bytes,
    walk,
)

__all__ = [
    "ATTACHMENT_TEXT_LIMIT",
    "BODY_TEXT_LIMIT",
    "FLAGS",
    "Address",
    "Attachment",
    "JournalReport",
    "MessageText",
    "ParsedMessage",
    "html_body",
    "message_text",
    "parse_message",
    "synthesize_message_id",
    "unwrap_journal_report",
]


FLAGS = frozenset(
    {
        "no_message_id",
        "bad_date",
        "bad_charset",
        "mime_defects",
        "unparseable",
        "html_only",
        "encrypted",
        "pdf_unreadable",
        "truncated_text",
        "bad_address",
        "no_date",
    }
)

_T = TypeVar("_T")


@dataclass
class ParsedMessage:
    """What the archive needs to know about one message, derived only from its raw bytes."""

    message_id: str
    subject: str
    from_: list[Address]
    to: list[Address]
    cc: list[Address]
    bcc: list[Address]
    reply_to: list[Address]
    date: datetime
    in_reply_to: str | None
    references: list[str]
    list_id: str | None
    body_text: str
    attachments: list[Attachment]
    flags: list[str]
    body_digest: str


@dataclass(frozen=True)
class MessageText:
    """The words of a message: its body text and each attachment's text, by position (None
    where an attachment has no readable text, or when attachments were not asked for)."""

    body: str
    attachments: list[str | None]


def html_body(raw: bytes) -> str | None:
    """The message's HTML body (its first inline, unnamed text/html part) as text, or None.

    This is the HTML a reader expects to see: the HTML rendition of a multipart/alternative
    or an HTML-only message, never an attached .html file or a forwarded message's body.
    It walks the parts as `parse_message` does, with headers left raw, which is several
    times cheaper than the standard library's structured-header policy.
    """
    try:
        leaves, _ = walk(PARSER.parsebytes(raw), set())
        for leaf in leaves:
            part = leaf.part
            if leaf.content_type != "text/html" or part.get_content_disposition() == "attachment":
                continue
            if part.get_filename() is not None:
                continue
            return decoded_text(part, leaf.content_type, payload_bytes(part), set())
    except Exception:
        # Bytes that defeat the MIME parser have no HTML to show; the text view still works.
        return None
    return None


def synthesize_message_id(raw: bytes) -> str:
    """Return a stand-in Message-ID derived from the bytes alone.

    Deterministic so that archiving the same bytes twice gives the same id and deduplicates.
    """
    return f"{hashlib.sha256(raw).hexdigest()[:32]}@arsip.invalid"


def parse_message(raw: bytes, received_at: datetime) -> ParsedMessage:
    """Parse one message; never raises, whatever the bytes.

    ``received_at`` stands in for a missing or unbelievable Date. If the MIME structure
    defeats the parser, the headers alone are used; if even they cannot be read, the bytes
    become the body of a message flagged ``unparseable`` so it stays searchable.
    """
    raw = bytes(raw)
    received = as_utc(received_at)
    described = _read(raw, lambda message, flags: _describe(message, raw, received, flags))
    return described if described is not None else _unparseable(raw, received)


def message_text(raw: bytes, *, attachments: bool = True) -> MessageText:
    """The text `parse_message` finds in the same bytes: body and attachments' text.

    The archive keeps no copy of it (the raw blob is the one copy), so search, snippets and
    pages derive it here. Without ``attachments`` only the body is decoded, which is what a
    snippet or a page needs and skips the PDF text extraction. Never raises.
    """
    raw = bytes(raw)

    def text(message: Message, flags: set[str]) -> MessageText:
        body, parts, _nodes, _hint = content(message, flags, attachments=attachments)
        return MessageText(body, [part.text for part in parts])

    single = _single_part(raw)
    if single is not None:
        try:
            return text(single, set())
        except Exception:
            pass  # the whole parse below decides, as `parse_message` did
    found = _read(raw, text)
    return found if found is not None else MessageText(_unparseable_body(raw, set()), [])


def _single_part(raw: bytes) -> Message | None:
    """A message without MIME parts, parsed as the whole parse would, but faster; or None.

    The parser keeps a single part's body as one string, so parsing the header block alone
    and setting the rest as the payload gives the same message; most mail is one part, and
    reading it line by line was half the cost of a search page's snippets. Anything the
    header block alone might read differently (a defect, no header, parts) is None.
    """
    end = header_block_end(raw)
    if end <= 0:
        return None
    try:
        message = PARSER.parsebytes(raw[:end], headersonly=True)
    except Exception:
        return None
    if message.defects or not message.keys():
        return None
    if message.get_content_maintype() in ("multipart", "message"):
        return None
    # As BytesParser hands bytes to the parser: ASCII, other bytes as surrogate escapes.
    message.set_payload(raw[end:].decode("ascii", "surrogateescape"))
    return message


def _read(raw: bytes, describe: Callable[[Message, set[str]], _T]) -> _T | None:
    """`describe` the parsed message; on failure describe the headers alone (flagged
    ``unparseable``); None when not even a header can be read."""
    try:
        message = PARSER.parsebytes(raw)
        if message.keys():
            return describe(message, set())
    except Exception:
        try:
            message = PARSER.parsebytes(raw, headersonly=True)
            if message.keys():
                return describe(message, {"unparseable"})
        except Exception:
            pass
    return None


def _describe(message: Message, raw: bytes, received: datetime, flags: set[str]) -> ParsedMessage:
    body_text, attachments, nodes, hint = content(message, flags)
    if any(node.defects for node in nodes):
        flags.add("mime_defects")
    subject = collapse(header_text(message.get("subject"), flags, hint))

    message_id = first_id(message.get("message-id"), bare_needs_at=False)
    if message_id is None:
        message_id = synthesize_message_id(raw)
        flags.add("no_message_id")

    in_reply_to = first_id(message.get("in-reply-to"), bare_needs_at=True)
    references = msg_ids(message.get("references"), bare_needs_at=True)

    return ParsedMessage(
        message_id=message_id,
        subject=subject,
        from_=addresses(message, "from", flags, hint),
        to=addresses(message, "to", flags, hint),
        cc=addresses(message, "cc", flags, hint),
        bcc=addresses(message, "bcc", flags, hint),
        reply_to=addresses(message, "reply-to", flags, hint),
        date=header_date(message.get("date"), received, flags),
        in_reply_to=in_reply_to,
        references=references,
        list_id=list_id(message.get("list-id")),
        body_text=body_text,
        attachments=attachments,
        flags=sorted(flags),
        body_digest=_body_digest(raw),
    )


def _unparseable(raw: bytes, received: datetime) -> ParsedMessage:
    """Describe bytes with no readable header block: the whole blob is the body."""
    flags = {"unparseable", "no_message_id", "no_date", "bad_date"}
    body = _unparseable_body(raw, flags)
    return ParsedMessage(
        message_id=synthesize_message_id(raw),
        subject="",
        from_=[],
        to=[],
        cc=[],
        bcc=[],
        reply_to=[],
        date=received,
        in_reply_to=None,
        references=[],
        list_id=None,
        body_text=body,
        attachments=[],
        flags=sorted(flags),
        body_digest=hashlib.sha256(raw.replace(b"\r\n", b"\n")).hexdigest(),
    )


def _unparseable_body(raw: bytes, flags: set[str]) -> str:
    """The whole of bytes without a header block, as the body text."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = raw.decode("utf-8", "replace")
        flags.add("bad_charset")
    return clean_body(text.replace("\r\n", "\n"), BODY_TEXT_LIMIT, flags)


def as_utc(moment: datetime) -> datetime:
    """Return ``moment`` in UTC, reading a naive value as UTC as the archive stores time."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def _body_digest(raw: bytes) -> str:
    """Hash the body with line endings normalised, so journal copies of one message that
    differ only in their trace headers or in CRLF versus LF hash alike."""
    data = raw.replace(b"\r\n", b"\n")
    if data.startswith(b"\n"):
        body = data[1:]
    else:
        split = data.find(b"\n\n")
        body = data[split + 2 :] if split >= 0 else b""
    return hashlib.sha256(body).hexdigest()
