"""Turn the raw bytes of one message into the values the archive stores and indexes.

Everything here is a pure function of the bytes it is given, so the archive worker can re-run
it on a stored raw message after a crash or an upgrade and get the same answer (design
invariant 2). Real mail is often broken and the archive must keep all of it, so nothing here
raises for any input: trouble becomes an entry in ``ParsedMessage.flags`` instead, and a
message the parser cannot read at all is still described by whatever could be read
(invariant 5).

Parsing uses the ``compat32`` policy with header values handed back untouched: it is several
times faster than the default policy's header registry, and it leaves the choice of how to
decode broken charsets to this module instead of to an opaque ``Header`` object.
"""

import binascii
import codecs
import hashlib
import io
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.message import Message
from email.parser import BytesParser
from email.policy import Compat32
from email.utils import collapse_rfc2231_value, getaddresses, parsedate_tz
from functools import lru_cache
from typing import TypeVar

from archiver.htmltext import html_to_text

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

BODY_TEXT_LIMIT = 2_000_000
ATTACHMENT_TEXT_LIMIT = 1_000_000
# HTML shrinks when turned into text; parsing more than this cannot fill the body cap anyway
# and would only cost time on hostile mail.
_HTML_INPUT_LIMIT = 4 * BODY_TEXT_LIMIT
# Deeper nesting than this is an attack (or mime4j's "infinite.msg"), not correspondence.
_MAX_DEPTH = 50
_MAX_PARTS = 5_000
# Real ids are far shorter; longer ones are garbage and would overflow a PostgreSQL btree
# index entry (about 2.7 kB) once non-ASCII characters take several bytes each.
_MAX_ID_LENGTH = 500
# The attachments table stores content_type as VARCHAR(255).
_MAX_CONTENT_TYPE_LENGTH = 255
# A Date more than this far past the time the archive received the mail is a wrong clock.
_FUTURE_SLACK = timedelta(days=2)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_T = TypeVar("_T")


@dataclass(frozen=True)
class Address:
    """One mailbox from an address header."""

    name: str
    email: str


@dataclass(frozen=True)
class Attachment:
    """One MIME leaf that is not the body text, described without its payload."""

    filename: str | None
    content_type: str
    size: int
    sha256: str
    text: str | None


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


@dataclass(frozen=True)
class JournalReport:
    """The envelope and the original message carried inside an Exchange journal report."""

    original: bytes
    sender: str | None
    recipients: list[str]


class _RawHeaderPolicy(Compat32):
    """compat32, except that header values come back exactly as they were read.

    Stock compat32 wraps values holding 8-bit bytes in ``Header`` objects; raw strings (with
    the 8-bit bytes kept as surrogate escapes) let ``_header_text`` recover the bytes and try
    UTF-8 before Windows-1252.
    """

    def header_fetch_parse(self, name: str, value: str) -> str:
        """Return the stored value unchanged."""
        return value


_PARSER = BytesParser(policy=_RawHeaderPolicy())

_ENCODED_WORD = re.compile(r"=\?([^?\s]+)\?([bBqQ])\?([^?]*)\?=")
_FOLD = re.compile(r"\r?\n|\r")
_WHITESPACE = re.compile(r"\s+")
_HEADER_JUNK = re.compile("[\x00-\x08\x0b-\x1f\x7f\ud800-\udfff]")
_BODY_JUNK = re.compile("[\x00\ud800-\udfff]")
_ANGLE_ID = re.compile(r"<([^<>]*)>")
_LOOSE_ADDRESS = re.compile(r"[^\s<>,;:\"()\[\]]+@[^\s<>,;:\"()\[\]]+")
_META_CHARSET = re.compile(rb"<meta[^>]+charset\s*=\s*[\"']?\s*([A-Za-z0-9_.:-]+)", re.IGNORECASE)
_FILENAME_UNSAFE = re.compile(r"[/\\]")
_COMMENT = re.compile(r"\([^()]*\)")
_PIPERMAIL_AT = re.compile(
    r"(?<![^\s<,])([^\s@()<>\",;]+) at ([A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+)(?=$|[\s>,;(])"
)

# Labels seen in real mail that Python does not know, and labels whose usual senders actually
# write a superset (the WHATWG encoding standard makes the same substitutions).
_CHARSET_FIXES = {
    "iso-8859-8-i": "iso-8859-8",
    "iso-8859-6-i": "iso-8859-6",
    "x-mac-roman": "mac-roman",
    "x-sjis": "cp932",
    "x-euc-jp": "euc-jp",
    "unicode-1-1-utf-7": "utf-7",
    "x-user-defined": "cp1252",
    "ansi_x3.4-1968": "ascii",
}
_CHARSET_WIDER = {
    "ascii": "utf-8",
    "iso8859-1": "cp1252",
    "iso8859-9": "cp1254",
    "iso8859-11": "cp874",
    "gb2312": "gb18030",
    "gbk": "gb18030",
    "euc_kr": "cp949",
    "shift_jis": "cp932",
    "big5": "big5hkscs",
}
# Text codecs that turn plain ASCII into something else entirely; no mail is written in them.
_CHARSET_REFUSED = frozenset(
    {"idna", "punycode", "raw-unicode-escape", "unicode-escape", "raw_unicode_escape"}
)


def html_body(raw: bytes) -> str | None:
    """The message's HTML body (its first inline, unnamed text/html part) as text, or None.

    This is the HTML a reader expects to see: the HTML rendition of a multipart/alternative
    or an HTML-only message, never an attached .html file or a forwarded message's body.
    It walks the parts as `parse_message` does, with headers left raw, which is several
    times cheaper than the standard library's structured-header policy.
    """
    try:
        leaves, _ = _walk(_PARSER.parsebytes(raw), set())
        for leaf in leaves:
            part = leaf.part
            if leaf.content_type != "text/html" or part.get_content_disposition() == "attachment":
                continue
            if part.get_filename() is not None:
                continue
            return _decoded(part, leaf.content_type, _payload_bytes(part), set())
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
    received = _as_utc(received_at)
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
        body, parts, _nodes, _hint = _content(message, flags, attachments=attachments)
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
    end = _header_block_end(raw)
    if end <= 0:
        return None
    try:
        message = _PARSER.parsebytes(raw[:end], headersonly=True)
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
        message = _PARSER.parsebytes(raw)
        if message.keys():
            return describe(message, set())
    except Exception:
        try:
            message = _PARSER.parsebytes(raw, headersonly=True)
            if message.keys():
                return describe(message, {"unparseable"})
        except Exception:
            pass
    return None


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


def _describe(message: Message, raw: bytes, received: datetime, flags: set[str]) -> ParsedMessage:
    body_text, attachments, nodes, hint = _content(message, flags)
    if any(node.defects for node in nodes):
        flags.add("mime_defects")
    subject = _collapse(_header_text(message.get("subject"), flags, hint))

    message_id = _first_id(message.get("message-id"), bare_needs_at=False)
    if message_id is None:
        message_id = synthesize_message_id(raw)
        flags.add("no_message_id")

    in_reply_to = _first_id(message.get("in-reply-to"), bare_needs_at=True)
    references = _msg_ids(message.get("references"), bare_needs_at=True)

    return ParsedMessage(
        message_id=message_id,
        subject=subject,
        from_=_addresses(message, "from", flags, hint),
        to=_addresses(message, "to", flags, hint),
        cc=_addresses(message, "cc", flags, hint),
        bcc=_addresses(message, "bcc", flags, hint),
        reply_to=_addresses(message, "reply-to", flags, hint),
        date=_date(message.get("date"), received, flags),
        in_reply_to=in_reply_to,
        references=references,
        list_id=_list_id(message.get("list-id")),
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
    return _clean_body(text.replace("\r\n", "\n"), BODY_TEXT_LIMIT, flags)


def _as_utc(moment: datetime) -> datetime:
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


@lru_cache(maxsize=256)
def _codec(label: str) -> str | None:
    """Map a declared charset label to the Python codec to decode it with, or None."""
    label = label.strip().strip("\"'").lower()
    label = _CHARSET_FIXES.get(label, label)
    try:
        info = codecs.lookup(label)
    except (LookupError, ValueError, TypeError):
        return None
    if not getattr(info, "_is_text_encoding", True) or info.name in _CHARSET_REFUSED:
        return None
    return _CHARSET_WIDER.get(info.name, info.name)


def _windows_1252(data: bytes) -> str:
    """Decode bytes of unknown encoding; cp1252 covers most stray 8-bit mail, latin-1 the rest."""
    try:
        return data.decode("cp1252")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def _decode_bytes(data: bytes, label: str | None) -> tuple[str, bool]:
    """Decode ``data`` declared as ``label``; return the text and whether it decoded cleanly.

    Undeclared bytes are read as UTF-8, then Windows-1252, without complaint: RFC 6532 allows
    raw UTF-8 and old mail used 8-bit Latin. A declared charset that is unknown or does not
    fit the bytes is reported, and the best readable text is still returned.
    """
    codec = _codec(label) if label else None
    if codec is None:
        try:
            return data.decode("utf-8"), label is None
        except UnicodeDecodeError:
            return _windows_1252(data), label is None
    try:
        return data.decode(codec), True
    except Exception:
        pass
    if codec != "utf-8":
        try:
            return data.decode("utf-8"), False
        except UnicodeDecodeError:
            pass
    if codec == "cp1252":
        return data.decode("latin-1"), False
    try:
        return data.decode(codec, "replace"), False
    except Exception:
        return _windows_1252(data), False


def _from_8bit(value: str, flags: set[str], hint: str | None = None) -> str:
    """Recover text from a header value whose raw 8-bit bytes are held as surrogate escapes.

    Raw UTF-8 is legal (RFC 6532). Otherwise the charset of the body text is the best guess,
    because the same mail program wrote both; Windows-1252 is the last resort.
    """
    if value.isascii():
        return value
    data = value.encode("utf-8", "surrogateescape")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    codec = _codec(hint) if hint else None
    if codec is not None and codec != "utf-8":
        try:
            return data.decode(codec)
        except Exception:
            pass
    flags.add("bad_charset")
    return _windows_1252(data)


def _decode_word(payload: str, encoding: str) -> bytes | None:
    data = payload.encode("utf-8", "surrogateescape")
    if encoding in "qQ":
        return binascii.a2b_qp(data, header=True)
    data = b"".join(data.split())
    try:
        return binascii.a2b_base64(data + b"=" * (-len(data) % 4))
    except binascii.Error:
        return None


def _decode_encoded_words(text: str, flags: set[str]) -> str:
    """Decode RFC 2047 encoded words, leniently.

    Words are decoded wherever they appear (many mailers glue them to plain text), adjacent
    words in one charset are joined before decoding so a character split across two words
    survives, and a word that will not decode is left as written.
    """
    out: list[str] = []
    pending = bytearray()
    pending_label: str | None = None
    position = 0
    after_word = False

    def flush() -> None:
        nonlocal pending_label
        if pending_label is not None:
            decoded, clean = _decode_bytes(bytes(pending), pending_label)
            if not clean:
                flags.add("bad_charset")
            out.append(decoded)
            pending.clear()
            pending_label = None

    for match in _ENCODED_WORD.finditer(text):
        between = text[position : match.start()]
        position = match.end()
        if between and not (after_word and between.isspace()):
            flush()
            out.append(between)
        label = match.group(1).split("*", 1)[0].lower()
        data = _decode_word(match.group(3), match.group(2))
        if data is None:
            flush()
            out.append(match.group(0))
            after_word = False
            continue
        if label != pending_label:
            flush()
            pending_label = label
        pending.extend(data)
        after_word = True
    flush()
    out.append(text[position:])
    return "".join(out)


def _header_text(value: str | None, flags: set[str], hint: str | None = None) -> str:
    """Unfold and decode one header value into display text."""
    if not value:
        return ""
    text = _from_8bit(_FOLD.sub("", value), flags, hint)
    if "=?" in text:
        text = _decode_encoded_words(text, flags)
    return _HEADER_JUNK.sub("", text.replace("\t", " "))


def _collapse(text: str) -> str:
    return _WHITESPACE.sub(" ", text).strip()


def _clean_body(text: str, limit: int, flags: set[str]) -> str:
    """Drop what a database or an index cannot hold (NUL, lone surrogates) and cap the size."""
    text = _BODY_JUNK.sub("", text)
    if len(text) > limit:
        flags.add("truncated_text")
        text = text[:limit]
    return text


def _msg_ids(value: str | None, *, bare_needs_at: bool) -> list[str]:
    """Return the msg-ids in a header, in order, without brackets or duplicates.

    Bracketless ids are accepted when nothing is bracketed, because some mailers write them;
    ``bare_needs_at`` keeps phrases such as "your message of Monday" out of threading.
    """
    if not value:
        return []
    text = _from_8bit(_FOLD.sub("", value), set())
    found = _ANGLE_ID.findall(text)
    if not found:
        found = [token.strip("<>,;\"'") for token in text.split()]
        if bare_needs_at:
            found = [token for token in found if "@" in token]
    seen: dict[str, None] = {}
    for candidate in found:
        msg_id = _HEADER_JUNK.sub("", _WHITESPACE.sub("", candidate))
        if msg_id and len(msg_id) <= _MAX_ID_LENGTH:
            seen.setdefault(msg_id, None)
    return list(seen)


def _first_id(value: str | None, *, bare_needs_at: bool) -> str | None:
    ids = _msg_ids(value, bare_needs_at=bare_needs_at)
    return ids[0] if ids else None


def _list_id(value: str | None) -> str | None:
    """Return the list identifier from List-Id ("Name <id>"), lower-cased."""
    if not value:
        return None
    text = _from_8bit(_FOLD.sub("", value), set()).strip()
    found = _ANGLE_ID.findall(text)
    if found:
        text = found[0].strip()
    elif any(char.isspace() for char in text):
        return None
    text = _HEADER_JUNK.sub("", text).lower()
    return text if text and len(text) <= _MAX_ID_LENGTH else None


def _addresses(
    message: Message, name: str, flags: set[str], hint: str | None = None
) -> list[Address]:
    """Return every mailbox in all occurrences of an address header, deduplicated.

    When the standard parser stumbles (an unquoted comma in a name, an address written
    without angle brackets after a name, as list servers exporting archives often do), the
    addresses are salvaged from the text rather than dropped, and ``bad_address`` is set.
    """
    values = message.get_all(name)
    if not values:
        return []
    result: dict[str, Address] = {}
    for value in values:
        text = _HEADER_JUNK.sub("", _from_8bit(_FOLD.sub("", value), flags, hint)).strip()
        if not text:
            continue
        if "@" not in text:
            # Pipermail archives write "user at example.com (Name)" to hide addresses.
            text = _PIPERMAIL_AT.sub(r"\1@\2", text)
        pairs = _standard_addresses(text)
        if pairs is None:
            flags.add("bad_address")
            pairs = _salvaged_addresses(text)
        for display, spec in pairs:
            decoded = _collapse(_header_text(display, flags, hint)) if display else ""
            result.setdefault(spec, Address(decoded, spec))
    return list(result.values())


def _standard_addresses(text: str) -> list[tuple[str, str]] | None:
    """Parse with ``getaddresses``; None if it dropped or mangled anything.

    ``getaddresses`` never complains: "Ruixin Wang" comes back as the address "Ruixin" and
    "Doe, John <j@x>" as "Doe" plus "j@x". An address without a domain is therefore only
    believed when it stands alone or in angle brackets, as "MAILER-DAEMON" does in bounces.
    """
    try:
        pairs = getaddresses([text])
    except Exception:
        return None
    lowered = text.lower()
    items = {_COMMENT.sub("", item).strip().lower() for item in text.split(",")}
    found: list[tuple[str, str]] = []
    for index, (display, spec) in enumerate(pairs):
        spec = spec.strip().lower()
        if not spec:
            if display and "<>" not in text:
                return None
            continue  # a null sender "<>", an empty group, or a stray comma
        if any(char.isspace() or char in '<>"' for char in spec):
            return None
        if "@" not in spec:
            followed_by_name = index + 1 < len(pairs) and bool(pairs[index + 1][0])
            alone = spec in items and not followed_by_name
            if not alone and f"<{spec}>" not in lowered:
                return None
        found.append((display, spec))
    return found


def _salvaged_addresses(text: str) -> list[tuple[str, str]]:
    """Find addr-specs anywhere in the text; the words before each one are its name."""
    found: list[tuple[str, str]] = []
    position = 0
    for match in _LOOSE_ADDRESS.finditer(text):
        display = text[position : match.start()].strip(" \t,;<>\"'")
        position = match.end()
        if "@" in display:
            display = ""
        found.append((display, match.group(0).strip(".").lower()))
    return found


def _date(value: str | None, received: datetime, flags: set[str]) -> datetime:
    """Return the Date header in UTC, or ``received`` when it is missing or unbelievable."""
    if not value or not value.strip():
        flags.update(("no_date", "bad_date"))
        return received
    text = _FOLD.sub(" ", value).encode("utf-8", "surrogateescape").decode("ascii", "replace")
    try:
        parts = parsedate_tz(text)
        if parts is None:
            raise ValueError(text)
        year, month, day, hour, minute, second = parts[:6]
        moment = datetime(year, month, day, hour, minute, min(second, 59), tzinfo=UTC)
        moment -= timedelta(seconds=parts[9] or 0)
    except (ValueError, TypeError, OverflowError, IndexError):
        flags.add("bad_date")
        return received
    if moment < _EPOCH or moment > received + _FUTURE_SLACK:
        flags.add("bad_date")
        return received
    return moment


@dataclass
class _Leaf:
    part: Message
    content_type: str
    alternative: Message | None  # nearest multipart/alternative above, if any


def _walk(message: Message, flags: set[str]) -> tuple[list[_Leaf], list[Message]]:
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
    name = _header_text(str(raw_name), flags, hint).strip()
    return name or None


def _charset_label(part: Message) -> str | None:
    label = part.get_param("charset")
    if isinstance(label, tuple):
        label = collapse_rfc2231_value(label)
    if not label:
        return None
    return _from_8bit(str(label), set())


def _payload_bytes(part: Message) -> bytes:
    if part.get_content_maintype() == "message" and part.is_multipart():
        return _message_part_bytes(part)
    data = part.get_payload(decode=True)
    return data if isinstance(data, bytes) else b""


def _message_part_bytes(part: Message) -> bytes:
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


def _decoded(part: Message, content_type: str, data: bytes, flags: set[str]) -> str:
    """A text part's bytes as text: its declared charset, else (HTML) its <meta> one."""
    label = _charset_label(part)
    if label is None and content_type == "text/html":
        sniffed = _META_CHARSET.search(data[:4096])
        if sniffed:
            label = sniffed.group(1).decode("ascii")
    text, clean = _decode_bytes(data, label)
    if not clean:
        flags.add("bad_charset")
    return text


def _part_text(part: Message, content_type: str, data: bytes, limit: int, flags: set[str]) -> str:
    """Decode a text part, turning HTML into readable text, capped at ``limit`` characters."""
    text = _decoded(part, content_type, data, flags)
    if content_type == "text/html":
        if len(text) > _HTML_INPUT_LIMIT:
            flags.add("truncated_text")
            text = text[:_HTML_INPUT_LIMIT]
        text = html_to_text(text)
    else:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    return _clean_body(text, limit, flags)


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


def _content(
    message: Message, flags: set[str], *, attachments: bool = True
) -> tuple[str, list[Attachment], list[Message], str | None]:
    """Return the body text, the attachments (none unless ``attachments``), every MIME node,
    and the body's charset label (the best guess for raw 8-bit bytes in headers)."""
    leaves, nodes = _walk(message, flags)
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
            leaf.part, leaf.content_type, _payload_bytes(leaf.part), BODY_TEXT_LIMIT, flags
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
    data = _payload_bytes(part)
    text: str | None = None
    if content_type == "message/rfc822" and filename is None:
        inner = part.get_payload(0) if part.is_multipart() else None
        subject = _collapse(_header_text(inner.get("subject"), set())) if inner else ""
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
        return _clean_body("\n".join(chunks), ATTACHMENT_TEXT_LIMIT, flags)
    except Exception:
        flags.add("pdf_unreadable")
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


def _header_block_end(data: bytes) -> int:
    """Return the offset where the body starts, or -1 if there is no header/body separator."""
    ends = [(i, len(sep)) for sep in (b"\r\n\r\n", b"\n\n") if (i := data.find(sep)) >= 0]
    if data.startswith((b"\r\n", b"\n")):
        return 2 if data.startswith(b"\r\n") else 1
    if not ends:
        return -1
    index, length = min(ends)
    return index + length


def _raw_parts(raw: bytes, boundary: str) -> list[bytes] | None:
    """Split a multipart body into the exact bytes of its parts (headers included)."""
    start = _header_block_end(raw)
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
        start = _header_block_end(piece)
        if start >= 0:
            body = piece[start:]
            encoding = str(part.get("content-transfer-encoding", "")).strip().lower()
            if encoding == "base64":
                return binascii.a2b_base64(b"".join(body.split()))
            if encoding == "quoted-printable":
                return binascii.a2b_qp(body)
            return body
    return _message_part_bytes(part)


def _unwrap_journal_report(raw: bytes) -> JournalReport | None:
    end = _header_block_end(raw)
    if b"x-ms-journal-report" not in (raw[:end] if end >= 0 else raw).lower():
        return None
    report = _PARSER.parsebytes(raw)
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
    text, _ = _decode_bytes(envelope if isinstance(envelope, bytes) else b"", None)
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
