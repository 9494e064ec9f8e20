"""Exchange journal reports: the envelope (Bcc recipients included) and the original
message, byte for byte, out of the report that wraps them."""

import binascii
import re
from dataclasses import dataclass
from email.message import Message

from archiver.parse.charsets import decode_bytes
from archiver.parse.mime import PARSER, header_block_end, message_part_bytes


@dataclass(frozen=True)
class JournalReport:
    """The envelope and the original message carried inside an Exchange journal report."""

    original: bytes
    sender: str | None
    recipients: list[str]


def unwrap_journal_report(raw: bytes) -> JournalReport | None:
    """Return the envelope and original of an Exchange journal report, or None.

    A report carries the header ``X-MS-Journal-Report``, a text/plain first part listing the
    envelope (``Sender:``, then ``To:``/``Cc:``/``Bcc:``/``Recipient:`` lines) and the
    original as one message/rfc822 part. The envelope is the only place Bcc recipients
    survive, which is why journaling exists. Anything else, or anything malformed, is None.
    """
    try:
        return _unwrap_journal_report(bytes(raw))
    except Exception:
        return None


_ENVELOPE_RECIPIENT_KEYS = frozenset({"to", "cc", "bcc", "recipient"})

_ENVELOPE_ADDRESS = re.compile(r"<([^<>\s]+@[^<>\s]+)>|([^\s<>,;:\"]+@[^\s<>,;:\"]+)")


def _envelope_address(value: str) -> str | None:
    """Return the address that starts an envelope line value, ignoring suffixes such as
    ", Expanded: list@example.com" (the list the recipient was reached through)."""
    match = _ENVELOPE_ADDRESS.search(value.split(",", 1)[0])
    if match is None:
        return None
    return (match.group(1) or match.group(2)).lower()


def _raw_parts(raw: bytes, boundary: str) -> list[bytes] | None:
    """Split a multipart body into the exact bytes of its parts (headers included)."""
    start = header_block_end(raw)
    if start < 0:
        return None
    marker = re.escape(b"--" + boundary.encode("utf-8", "surrogateescape"))
    delimiter = re.compile(rb"^" + marker + rb"(--)?[ \t]*\r?$", re.MULTILINE)
    parts: list[bytes] = []
    previous_end: int | None = None
    for match in delimiter.finditer(raw, start):
        if previous_end is not None:
            chunk = raw[previous_end : match.start()]
            if chunk.endswith(b"\r\n"):
                chunk = chunk[:-2]
            elif chunk.endswith(b"\n"):
                chunk = chunk[:-1]
            parts.append(chunk)
        if match.group(1):
            return parts
        newline = raw.find(b"\n", match.end())
        previous_end = len(raw) if newline < 0 else newline + 1
    return parts if previous_end is None else [*parts, raw[previous_end:]]


def _original_bytes(raw: bytes, report: Message, index: int) -> bytes:
    """Return the wrapped message exactly as it was sent, falling back to re-serialising."""
    boundary = report.get_boundary()
    part = report.get_payload(index)
    pieces = _raw_parts(raw, boundary) if boundary else None
    if pieces is not None and len(pieces) == len(report.get_payload()):
        piece = pieces[index]
        start = header_block_end(piece)
        if start >= 0:
            body = piece[start:]
            encoding = str(part.get("content-transfer-encoding", "")).strip().lower()
            if encoding == "base64":
                return binascii.a2b_base64(b"".join(body.split()))
            if encoding == "quoted-printable":
                return binascii.a2b_qp(body)
            return body
    return message_part_bytes(part)


def _unwrap_journal_report(raw: bytes) -> JournalReport | None:
    end = header_block_end(raw)
    if b"x-ms-journal-report" not in (raw[:end] if end >= 0 else raw).lower():
        return None
    report = PARSER.parsebytes(raw)
    if report.get("x-ms-journal-report") is None or not report.is_multipart():
        return None
    if report.get_content_type() != "multipart/mixed":
        return None
    parts = report.get_payload()
    if not parts or parts[0].get_content_type() != "text/plain":
        return None
    wrapped = [i for i, part in enumerate(parts) if part.get_content_type() == "message/rfc822"]
    if len(wrapped) != 1:
        return None

    envelope = parts[0].get_payload(decode=True)
    text, _ = decode_bytes(envelope if isinstance(envelope, bytes) else b"", None)
    sender: str | None = None
    saw_sender = False
    recipients: dict[str, None] = {}
    for line in text.splitlines():
        key, colon, value = line.partition(":")
        if not colon:
            continue
        key = key.strip().lower()
        if key == "sender" and not saw_sender:
            saw_sender = True
            sender = _envelope_address(value)
        elif key in _ENVELOPE_RECIPIENT_KEYS:
            address = _envelope_address(value)
            if address:
                recipients.setdefault(address, None)
    if not saw_sender or not recipients:
        return None
    return JournalReport(
        original=_original_bytes(raw, report, wrapped[0]),
        sender=sender,
        recipients=list(recipients),
    )
