"""Header values to display text and to the values the archive stores: RFC 2047 encoded
words, message ids, List-Id, address lists (salvaged when the standard parser stumbles)
and the Date.

Every function takes the raw header value the parser hands back (8-bit bytes kept as
surrogate escapes) and adds what went wrong to `flags` instead of raising.
"""

import binascii
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.message import Message
from email.utils import getaddresses, parsedate_tz

from archiver.parse.charsets import decode_bytes, from_8bit

_ENCODED_WORD = re.compile(r"=\?([^?\s]+)\?([bBqQ])\?([^?]*)\?=")

FOLD = re.compile(r"\r?\n|\r")

_WHITESPACE = re.compile(r"\s+")

HEADER_JUNK = re.compile("[\x00-\x08\x0b-\x1f\x7f\ud800-\udfff]")

_ANGLE_ID = re.compile(r"<([^<>]*)>")

_LOOSE_ADDRESS = re.compile(r"[^\s<>,;:\"()\[\]]+@[^\s<>,;:\"()\[\]]+")

_COMMENT = re.compile(r"\([^()]*\)")

# The forms nearly every address in real mail takes: an addr-spec of dot-atoms, alone or
# in angle brackets after a display name of plain words and quoted strings, then a comma
# or the end. `getaddresses` reads these a character at a time through a dozen methods
# (a sixth of archiving real list mail, with its long Cc lists); for these forms its answer is
# taken straight from the match, and `tests/test_parse.py` holds the two equal. Between
# words, whitespace is spelled out: `getaddresses` splits a name at spaces and tabs only,
# not at the others Python's `\s` knows (an addr-spec holding one is salvaged instead).
_ATOM = r"[^\s()<>@,:;.\"\[\]\\]+"
_SPEC = rf"{_ATOM}(?:\.{_ATOM})*@{_ATOM}(?:\.{_ATOM})*"
_PLAIN_MAILBOX = re.compile(
    rf"[ \t\r\n]*(?:((?:[^()<>@,:;\"\[\]\\]|\"[^\"\\\r\n]*\")*)<({_SPEC})>|({_SPEC}))"
    r"[ \t\r\n]*(?:,|\Z)"
)
_DISPLAY_WORD = re.compile(r'"([^"]*)"|[^ \t\r\n"]+')
_SPEC_JUNK = re.compile(r'[\s<>"]')

_PIPERMAIL_AT = re.compile(
    r"(?<![^\s<,])([^\s@()<>\",;]+) at ([A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+)(?=$|[\s>,;(])"
)

# Real ids are far shorter; longer ones are garbage and would overflow a PostgreSQL btree
# index entry (about 2.7 kB) once non-ASCII characters take several bytes each.
_MAX_ID_LENGTH = 500

# A Date more than this far past the time the archive received the mail is a wrong clock.
_FUTURE_SLACK = timedelta(days=2)

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Address:
    """One mailbox from an address header."""

    name: str
    email: str


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
            decoded, clean = decode_bytes(bytes(pending), pending_label)
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


def header_text(value: str | None, flags: set[str], hint: str | None = None) -> str:
    """Unfold and decode one header value into display text."""
    if not value:
        return ""
    text = from_8bit(FOLD.sub("", value), flags, hint)
    if "=?" in text:
        text = _decode_encoded_words(text, flags)
    return HEADER_JUNK.sub("", text.replace("\t", " "))


def collapse(text: str) -> str:
    return _WHITESPACE.sub(" ", text).strip()


def msg_ids(value: str | None, *, bare_needs_at: bool) -> list[str]:
    """Return the msg-ids in a header, in order, without brackets or duplicates.

    Bracketless ids are accepted when nothing is bracketed, because some mailers write them;
    ``bare_needs_at`` keeps phrases such as "your message of Monday" out of threading.
    """
    if not value:
        return []
    text = from_8bit(FOLD.sub("", value), set())
    found = _ANGLE_ID.findall(text)
    if not found:
        found = [token.strip("<>,;\"'") for token in text.split()]
        if bare_needs_at:
            found = [token for token in found if "@" in token]
    seen: dict[str, None] = {}
    for candidate in found:
        msg_id = HEADER_JUNK.sub("", _WHITESPACE.sub("", candidate))
        if msg_id and len(msg_id) <= _MAX_ID_LENGTH:
            seen.setdefault(msg_id, None)
    return list(seen)


def first_id(value: str | None, *, bare_needs_at: bool) -> str | None:
    ids = msg_ids(value, bare_needs_at=bare_needs_at)
    return ids[0] if ids else None


def list_id(value: str | None) -> str | None:
    """Return the list identifier from List-Id ("Name <id>"), lower-cased."""
    if not value:
        return None
    text = from_8bit(FOLD.sub("", value), set()).strip()
    found = _ANGLE_ID.findall(text)
    if found:
        text = found[0].strip()
    elif any(char.isspace() for char in text):
        return None
    text = HEADER_JUNK.sub("", text).lower()
    return text if text and len(text) <= _MAX_ID_LENGTH else None


def addresses(
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
        text = HEADER_JUNK.sub("", from_8bit(FOLD.sub("", value), flags, hint)).strip()
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
            decoded = collapse(header_text(display, flags, hint)) if display else ""
            result.setdefault(spec, Address(decoded, spec))
    return list(result.values())


def _standard_addresses(text: str) -> list[tuple[str, str]] | None:
    """Parse as ``getaddresses`` does; None if it dropped or mangled anything.

    ``getaddresses`` never complains: "Ruixin Wang" comes back as the address "Ruixin" and
    "Doe, John <j@x>" as "Doe" plus "j@x". An address without a domain is therefore only
    believed when it stands alone or in angle brackets, as "MAILER-DAEMON" does in bounces.
    """
    plain = _plain_addresses(text)
    if plain is not None:
        return plain
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
        if _SPEC_JUNK.search(spec):
            return None
        if "@" not in spec:
            followed_by_name = index + 1 < len(pairs) and bool(pairs[index + 1][0])
            alone = spec in items and not followed_by_name
            if not alone and f"<{spec}>" not in lowered:
                return None
        found.append((display, spec))
    return found


def _plain_addresses(text: str) -> list[tuple[str, str]] | None:
    """(display name, lower-cased addr-spec) for a list of plain mailboxes, exactly as
    ``getaddresses`` gives them (`_PLAIN_MAILBOX`); None when any item is another form."""
    found: list[tuple[str, str]] = []
    position, end = 0, len(text)
    while position < end:
        match = _PLAIN_MAILBOX.match(text, position)
        if match is None:
            return None
        display, bracketed, bare = match.groups()
        if bare is not None:
            found.append(("", bare.lower()))
        else:
            words = _DISPLAY_WORD.finditer(display)
            name = " ".join(w[0] if w[1] is None else w[1] for w in words)
            found.append((name, bracketed.lower()))
        position = match.end()
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


def header_date(value: str | None, received: datetime, flags: set[str]) -> datetime:
    """Return the Date header in UTC, or ``received`` when it is missing or unbelievable."""
    if not value or not value.strip():
        flags.update(("no_date", "bad_date"))
        return received
    text = FOLD.sub(" ", value).encode("utf-8", "surrogateescape").decode("ascii", "replace")
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
