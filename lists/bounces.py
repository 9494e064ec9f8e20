"""Bounce parsing for the list engine: who a returned message says did not get a post.

Everything here is a pure function of bytes or strings. A bounce is read in two ways:

* a standard delivery status notification (RFC 3464) is read field by field, and when it
  names its recipients nothing else in the message is trusted;
* anything else is read as text with the phrases many mail servers have used for decades,
  and only when the message looks like a bounce at all (it comes from a mailer daemon or
  says so in its subject) and only from the part that describes the failure, never from
  the copy of the returned post.

A wrong address costs a subscriber their membership, a missed one only delays the
bounce count, so the text rules prefer to say nothing over guessing.
"""

from __future__ import annotations

import base64
import binascii
import html
import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.header import decode_header, make_header
from email.message import Message
from email.utils import getaddresses

MAX_MESSAGE_BYTES = 4 * 1024 * 1024
MAX_TEXT_BYTES = 256 * 1024
MAX_PARTS = 200
MAX_DIAGNOSTIC = 300
MAX_NESTING = 3


@dataclass(frozen=True)
class Bounce:
    """One recipient a bounce message reports as failed."""

    address: str
    permanent: bool
    status: str | None
    diagnostic: str


# -- addresses ----------------------------------------------------------------------------

_LOCAL_CHARS = r"A-Za-z0-9!#$%&*+/=?^_`{|}~\-"
_ADDR = (
    rf"[{_LOCAL_CHARS}]+(?:\.[{_LOCAL_CHARS}]+)*"
    r"@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}"
)
# An address inside running text: not glued to more address characters on either side.
_ADDR_IN_TEXT = re.compile(rf"(?<![{_LOCAL_CHARS}.])({_ADDR})(?![A-Za-z0-9-]|\.[A-Za-z0-9])")
_PLAIN_ADDRESS = re.compile(rf"^{_ADDR}$")
# RFC 5321 allows a quoted local part: "odd..name"@example.com
_QUOTED_ADDRESS = re.compile(
    r'^"[\x20\x21\x23-\x5b\x5d-\x7e]{1,62}"@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+'
    r"[A-Za-z]{2,63}$"
)
# Exchange and X.400 gateways write `SMTP=user@host`; the prefix is not part of the address.
_GATEWAY_PREFIX = re.compile(r"^(?:smtp|rfc-?822|internet)=", re.IGNORECASE)
# Local parts that name the machinery, never a subscriber.
_DAEMON_LOCALS = re.compile(
    r"^(?:mailer-?daemon|mail-?daemon|postmaster|double-bounce|mdaemon|"
    r"mail\.delivery\.system|mail-delivery-system|mailerdaemon)$",
    re.IGNORECASE,
)


def _clean_address(text: str) -> str | None:
    """`text` as a lower-cased plain local@domain, or None when it is not one."""
    candidate = text.strip().strip("<>[]()").strip()
    quoted = _QUOTED_ADDRESS.match(candidate)
    if quoted:
        return candidate.lower() if len(candidate) <= 254 else None
    candidate = _GATEWAY_PREFIX.sub("", candidate.strip("\"'").strip())
    if not _PLAIN_ADDRESS.match(candidate) or len(candidate) > 254:
        return None
    local, _, domain = candidate.rpartition("@")
    if len(local) > 64 or ".." in candidate:
        return None
    return f"{local}@{domain}".lower()


def _addresses_in(text: str) -> list[str]:
    """Plain addresses written anywhere in `text`, in order, lower-cased."""
    found = []
    for match in _ADDR_IN_TEXT.finditer(text):
        address = _clean_address(match.group(1))
        if address is not None:
            found.append(address)
    return found


def _header_addresses(message: Message, names: Iterable[str]) -> set[str]:
    """The addresses in the named address headers of `message`."""
    values = []
    for name in names:
        values.extend(str(value) for value in message.get_all(name, []))
    found = set()
    for _, address in getaddresses(values):
        cleaned = _clean_address(address)
        if cleaned:
            found.add(cleaned)
    for value in values:
        found.update(_addresses_in(value))
    return found


# -- VERP ---------------------------------------------------------------------------------

_VERP_MARKER = "-bounces+"


def verp_address(list_local: str, domain: str, recipient: str) -> str:
    """The VERP envelope sender for a list post to `recipient`.

    Bounces then come back to an address that names the subscriber, so a bounce can be
    matched to a member even when the bounce itself is unreadable:
    `verp_address("dev", "lists.example.com", "ann@example.org")` is
    `"dev-bounces+ann=example.org@lists.example.com"`. Raises ValueError when `recipient`
    is not local@domain.
    """
    local, at, rdomain = recipient.strip().rpartition("@")
    if not at or not local or not rdomain:
        raise ValueError(f"not an address: {recipient!r}")
    return f"{list_local}{_VERP_MARKER}{local}={rdomain}@{domain}"


def decode_verp(address: str) -> tuple[str, str] | None:
    """For an address made by `verp_address`: (list local part, recipient address).

    None when `address` is not one. The recipient's local part may itself contain '+',
    '-', '=' or dots, so the domain starts after the last '='. Values are lower-cased.
    """
    text = address.strip().strip("<>").strip().lower()
    envelope_local, at, _ = text.rpartition("@")
    if not at:
        return None
    list_local, marker, encoded = envelope_local.partition(_VERP_MARKER)
    if not marker or not list_local:
        return None
    local, equals, rdomain = encoded.rpartition("=")
    if not equals or not local or not rdomain:
        return None
    if any(char in rdomain for char in " @<>,;") or rdomain.startswith("."):
        return None
    return list_local, f"{local}@{rdomain}"


# -- reading the message ------------------------------------------------------------------


@dataclass
class _Parts:
    """The pieces of a message a bounce reader looks at."""

    reports: list[str] = field(default_factory=list)
    plain: list[str] = field(default_factory=list)
    html: list[str] = field(default_factory=list)
    originals: list[Message] = field(default_factory=list)
    feedback: bool = False


def parse_bounce(raw: bytes) -> list[Bounce]:
    """The failed recipients a bounce (DSN or a non-standard MTA report) names.

    [] when the message is not a bounce, names no one, or cannot be read at all: a list
    must be able to feed any returned mail through here without guarding the call.
    """
    try:
        message = message_from_bytes(bytes(raw[:MAX_MESSAGE_BYTES]), policy=policy.compat32)
        return _read(message, depth=0)
    except Exception:
        return []


def _read(message: Message, depth: int) -> list[Bounce]:
    parts = _Parts()
    _collect(message, parts, counter=[0])
    if parts.feedback:
        # A spam complaint (RFC 5965) names the complainer, who did receive the post.
        return []
    records = [record for text in parts.reports for record in _dsn_records(text)]
    found = _dedupe(bounce for record in records if (bounce := _dsn_bounce(record)))
    if found or any(_only_reports_success(record) for record in records):
        # When the report names recipients, the prose around it adds nothing but risk.
        return found
    text = _failure_text(parts)
    if _JSON_BOUNCE.search(text):
        return _json_notification(text)
    if _looks_like_bounce(message, text):
        found = _dsn_in_text(text) or _from_text(message, parts, text)
        if found:
            return found
    if depth < MAX_NESTING and _looks_like_bounce(message, text or _subject(message)):
        # Some gateways forward the real DSN as an attachment of their own notice.
        for original in parts.originals:
            if _is_report(original):
                found = _read(original, depth + 1)
                if found:
                    return found
    return []


def _collect(part: Message, parts: _Parts, counter: list[int]) -> None:
    counter[0] += 1
    if counter[0] > MAX_PARTS:
        return
    ctype = part.get_content_type()
    if ctype in ("message/delivery-status", "message/global-delivery-status"):
        parts.reports.append(_report_text(part))
    elif ctype == "message/feedback-report":
        parts.feedback = True
    elif ctype in ("message/rfc822", "message/global", "message/partial"):
        payload = part.get_payload()
        if isinstance(payload, list) and payload and isinstance(payload[0], Message):
            parts.originals.append(payload[0])
    elif ctype in ("text/rfc822-headers", "message/rfc822-headers", "text/rfc822-header"):
        parts.originals.append(message_from_bytes(_payload_bytes(part), policy=policy.compat32))
    elif ctype.startswith("multipart/") and isinstance(part.get_payload(), str):
        # A multipart whose boundary got lost: its body is all there is to read.
        parts.plain.append(_decoded(part))
    elif part.is_multipart():
        if ctype == "multipart/report" and part.get_param("report-type", "").lower() in (
            "feedback-report",
        ):
            parts.feedback = True
        payload = part.get_payload()
        for sub in payload if isinstance(payload, list) else []:
            if isinstance(sub, Message):
                _collect(sub, parts, counter)
    elif ctype == "text/html":
        parts.html.append(_html_to_text(_decoded(part)))
    elif ctype.startswith("text/") or ctype == "application/octet-stream" and counter[0] == 1:
        if _is_attachment(part) and counter[0] > 1:
            return
        parts.plain.append(_decoded(part))


def _is_attachment(part: Message) -> bool:
    disposition = str(part.get("Content-Disposition", "")).lower()
    return disposition.startswith("attachment")


def _is_report(message: Message) -> bool:
    return message.get_content_type() == "multipart/report" or any(
        sub.get_content_type() == "message/delivery-status" for sub in _walk(message)
    )


def _walk(message: Message) -> Iterator[Message]:
    seen = 0
    for sub in message.walk():
        seen += 1
        if seen > MAX_PARTS:
            return
        yield sub


def _payload_bytes(part: Message) -> bytes:
    payload = part.get_payload(decode=True)
    if isinstance(payload, bytes):
        return payload[:MAX_TEXT_BYTES]
    raw = part.get_payload()
    if isinstance(raw, str):
        return raw[:MAX_TEXT_BYTES].encode("utf-8", "replace")
    return b""


def _decoded(part: Message) -> str:
    return _text_of(_payload_bytes(part), part.get_content_charset() or "utf-8")


def _text_of(data: bytes, charset: str) -> str:
    """`data` as text; a wrong charset label (common in bounces) falls back to UTF-8."""
    for candidate, errors in ((charset, "strict"), ("utf-8", "strict"), (charset, "replace")):
        try:
            return data.decode(candidate, errors)
        except (LookupError, ValueError):
            continue
    return data.decode("utf-8", "replace")


def _report_text(part: Message) -> str:
    """The text of a message/delivery-status part, however the parser split it up."""
    payload = part.get_payload()
    if not isinstance(payload, list):
        return _decoded(part)
    blocks = []
    for block in payload:
        if not isinstance(block, Message):
            continue
        lines = [f"{name}: {value}" for name, value in block.items()]
        body = block.get_payload()
        if isinstance(body, str) and body.strip():
            lines.append(body)
        blocks.append("\n".join(lines))
    text = "\n\n".join(blocks)
    encoding = str(part.get("Content-Transfer-Encoding", "")).strip().lower()
    if encoding == "base64" and not re.search(r"(?im)^(final|original)-recipient\s*:", text):
        try:
            squeezed = re.sub(r"[^A-Za-z0-9+/=]", "", text)
            return base64.b64decode(squeezed)[:MAX_TEXT_BYTES].decode("utf-8", "replace")
        except (binascii.Error, ValueError):
            return text
    return text


_TAG = re.compile(r"<[^>]*>")
_BREAK = re.compile(r"<\s*(?:br|/p|p|/div|div|/tr|tr|/li|li|/h\d)\b[^>]*>", re.IGNORECASE)
_SCRIPT = re.compile(r"<(script|style)\b.*?</\1\s*>", re.IGNORECASE | re.DOTALL)
# `<user@example.com>` in HTML source is text, not a tag.
_ADDRESS_TAG = re.compile(rf"<({_ADDR})>")


def _html_to_text(markup: str) -> str:
    markup = _SCRIPT.sub(" ", markup)
    markup = _ADDRESS_TAG.sub(r"&lt;\1&gt;", markup)
    if _BREAK.search(markup):
        # Real HTML: its line breaks are tags, the source newlines mean nothing.
        markup = re.sub(r"\s*\n\s*", " ", markup)
    markup = _BREAK.sub("\n", markup)
    text = html.unescape(_TAG.sub("", markup))
    return "\n".join(line.rstrip() for line in text.replace("\xa0", " ").splitlines())


def _subject(message: Message) -> str:
    value = str(message.get("Subject", ""))
    try:
        value = str(make_header(decode_header(value)))
    except Exception:
        pass
    # Raw 8-bit header bytes arrive as surrogate escapes.
    return _text_of(value.encode("utf-8", "surrogateescape"), "utf-8")


# -- standard delivery status notifications ----------------------------------------------

_FIELD = re.compile(r"^([A-Za-z][A-Za-z0-9-]*)[ \t]*:[ \t]*(.*)$")
_RECIPIENT_FIELDS = ("final-recipient", "original-recipient")
# "deliverable" answers an address verification request; nothing failed.
_SUCCESS_ACTIONS = ("delivered", "relayed", "expanded", "deliverable")
_ENHANCED = re.compile(r"(?<![\d.])([245])\.(\d{1,3})\.(\d{1,3})(?![\d]|\.\d)")
_REPLY_CODE = re.compile(r"(?<![\d.#-])([245])\d\d(?![\d.])")


def _dsn_records(text: str) -> list[dict[str, str]]:
    """The per-recipient field groups of a delivery-status text."""
    records: list[dict[str, str]] = []
    current: dict[str, str] = {}
    last = ""
    for line in text.splitlines():
        if not line.strip():
            if current:
                records.append(current)
            current, last = {}, ""
            continue
        if line[0] in " \t" and last:
            current[last] += " " + line.strip()
            continue
        match = _FIELD.match(line)
        if not match:
            last = ""
            continue
        name, value = match.group(1).lower(), match.group(2).strip()
        # Some servers leave out the blank line between recipients.
        if name in current and name in (*_RECIPIENT_FIELDS, "action", "status"):
            records.append(current)
            current = {}
        current[name] = value
        last = name
    if current:
        records.append(current)
    return [record for record in records if any(name in record for name in _RECIPIENT_FIELDS)]


def _only_reports_success(record: dict[str, str]) -> bool:
    """Is this the record of a delivery that worked (or was passed on)?"""
    action = record.get("action", "").strip().lower()
    status = _enhanced_status(record.get("status", ""))
    return action.startswith(_SUCCESS_ACTIONS) or (
        not action and status is not None and status.startswith("2")
    )


def _dsn_address(value: str) -> str | None:
    kind, semicolon, rest = value.partition(";")
    if not semicolon:
        rest = kind
    for candidate in (rest, *re.findall(r"<([^<>]*)>", rest)):
        address = _clean_address(candidate)
        if address:
            return address
    found = _addresses_in(rest)
    return found[0] if len(found) == 1 else None


def _dsn_bounce(record: dict[str, str]) -> Bounce | None:
    action_word = re.match(r"\s*([A-Za-z]+)", record.get("action", ""))
    action = action_word.group(1).lower() if action_word else ""
    if action in _SUCCESS_ACTIONS:
        return None
    address = _dsn_address(record.get("original-recipient", "")) or _dsn_address(
        record.get("final-recipient", "")
    )
    if address is None:
        return None
    status_field = record.get("status", "")
    diagnostic_field = record.get("diagnostic-code", "")
    status = _enhanced_status(status_field) or _enhanced_status(diagnostic_field)
    klass = status[0] if status else _reply_class(status_field) or _reply_class(diagnostic_field)
    if klass == "2" and action not in ("failed", "failure", "error", "delayed"):
        return None
    permanent = action != "delayed" and klass != "4"
    diagnostic = re.sub(r"^\s*[A-Za-z0-9-]+\s*;\s*", "", diagnostic_field)
    if not diagnostic:
        diagnostic = _ENHANCED.sub("", status_field, count=1).strip(" ()")
    return Bounce(address, permanent, status, _one_line(diagnostic))


def _enhanced_status(text: str) -> str | None:
    match = _ENHANCED.search(text)
    return ".".join(match.groups()) if match else None


def _reply_class(text: str) -> str | None:
    match = _REPLY_CODE.search(text)
    return match.group(1) if match else None


def _one_line(text: str) -> str:
    line = " ".join(text.split())
    return line if len(line) <= MAX_DIAGNOSTIC else line[: MAX_DIAGNOSTIC - 1].rstrip() + "…"


def _dedupe(bounces: Iterable[Bounce]) -> list[Bounce]:
    seen: dict[str, Bounce] = {}
    for bounce in bounces:
        seen.setdefault(bounce.address, bounce)
    return list(seen.values())


def _dsn_in_text(text: str) -> list[Bounce]:
    """DSN fields that a server wrote into the human-readable part instead of a report."""
    if not re.search(r"(?im)^\s*final-recipient\s*:", text):
        return []
    unindented = "\n".join(line.strip() for line in text.splitlines())
    records = [
        record
        for record in _dsn_records(unindented)
        if "action" in record or "status" in record
    ]
    return _dedupe(bounce for record in records if (bounce := _dsn_bounce(record)))


# -- is it a bounce at all ----------------------------------------------------------------

_DAEMON_NAME = re.compile(
    r"mailer[- ]?daemon|mail deliver(?:y)?|delivery (?:sub)?system|post_?master|"
    r"system administrator|mail administrator|delivery status|mail ?system",
    re.IGNORECASE,
)
_BOUNCE_SUBJECT = re.compile(
    r"undeliver|undelivered|not delivered|non[- ]?delivery|nondeliver|delivery (?:status|fail|"
    r"notification|report|problem|has failed|error|warning|delayed)|returned mail|"
    r"mail delivery|failure notice|failed mail|delivery failure|could not be delivered|"
    r"mail system error|warning: message|delayed mail|processing error|message delayed|"
    r"returned to sender|non remis|unzustellbar|non recapitabile|mail failed|"
    r"permanent delivery|returning message|mail not delivered|user unknown|rejected|"
    r"delivery notification|failed delivery|failure delivery|undeliverable|bounce|"
    r"エラー|不達|未達|配送|送信できません|退信|投递失败|无法投递|無法傳遞|could not send|"
    r"error sending",
    re.IGNORECASE,
)
_BOUNCE_BODY = re.compile(
    r"could not be delivered|couldn't be delivered|undeliverable|undelivered|"
    r"not (?:been )?delivered|wasn't able to deliver|was not able to deliver|unable to deliver|"
    r"delivery (?:has )?failed|delivery to the following|failed permanently|"
    r"permanent (?:fatal )?error|could not be reached|did not reach|not yet been delivered|"
    r"mail delivery (?:software|system|subsystem)|qmail-send|the postfix program|"
    r"returned to sender|user unknown|unknown user|no such user|does not exist|"
    r"could not deliver|delivery failure|delivery problem|error.{0,20}delivering|"
    r"has been delayed|following addresses? failed|delivery status notification|"
    r"failed to deliver|cannot be delivered|can't be delivered|invalid recipient|"
    r"not accepting mail|mailbox (?:is )?full|over quota|quota exceeded|"
    r"recipient address rejected|message (?:was )?rejected|non[- ]?delivery|"
    r"delivery (?:attempts|has been postponed)|has been postponed|delevery|"
    r"no mailbox here|unknown or illegal|couldn't deliver|relay access denied|"
    r"not able to deliver|mailbox unavailable|failed recipients|returned mail|rejected|"
    r"delivery errors?|could not send|trouble delivering|error sending|"
    r"user not found|invalid mailbox|is unavailable|not accepted",
    re.IGNORECASE,
)


# Sentences only mail servers write, and only in bounces.
_BOUNCE_SIGNATURE = re.compile(
    r"qmail-send program|created automatically by mail delivery software|"
    r"this is the mail system at host|this is the postfix program|"
    r"could not be delivered to:\s*<|transcript of session follows|"
    r"following addresses had permanent fatal errors|"
    r"delivery to the following recipients? (?:failed|has been delayed)|"
    r"wasn't able to deliver your message to the following|"
    r"did not reach the following recipient|delivery has failed to these recipients",
    re.IGNORECASE,
)


def _looks_like_bounce(message: Message, text: str) -> bool:
    """Does the message present itself as a delivery failure report?"""
    if message.get("X-Failed-Recipients"):
        return True
    senders = " ".join(
        str(message.get(name, "")) for name in ("From", "Sender", "Return-Path")
    )
    from_daemon = bool(_DAEMON_NAME.search(senders)) or str(
        message.get("Return-Path", "")
    ).strip() == "<>"
    bouncy_subject = bool(_BOUNCE_SUBJECT.search(_subject(message)))
    bouncy_text = bool(_BOUNCE_BODY.search(text) or _PARAGRAPH_ANYWHERE.search(text))
    signed = bool(_BOUNCE_SIGNATURE.search(text))
    return from_daemon + bouncy_subject + bouncy_text + 2 * signed >= 2


# -- non-standard bounces: the failure text ----------------------------------------------

# Where a server starts quoting the returned message. Everything after is someone else's
# words (and addresses).
_ORIGINAL_STARTS = re.compile(
    r"^[ \t>|*=_-]*(?:"
    r"-+\s*(?:below|original|the header|this is a copy|unsent|returned|undelivered|"
    r"start of returned|message (?:header|body|text|follows|removed|suppressed|below))|"
    r"below this line is a copy|"
    r"this is a copy of (?:the|your) message|"
    r"a copy of the original message|"
    r"original message (?:follows|as received|headers|details|attached|text)|"
    r"-*\s*original message\s*-*\s*$|"
    r"-*\s*mensaje original|"
    r"your message reads|"
    r"the first \d+ lines of your original message|"
    r"included is a copy of the message|"
    r"message headers? follows?|"
    r"header of (?:the )?(?:original|source) mail|"
    r"(?:the )?header of the original message|"
    r"returned mail follows|"
    r"unsent message below|"
    r"attachment is a copy of the message|"
    r"message text follows|"
    r"content-type: message/rfc822|"
    r"[-=]+ ?(?:original|forwarded) message ?[-=]+|"
    r"a summary of the undelivered message"
    r")",
    re.IGNORECASE,
)
# A raw header block of the returned message with no announcement before it.
_QUOTED_HEADERS = re.compile(
    r"^(?:Return-Path|Received|Message-I[Dd]|DKIM-Signature|MIME-Version|X-Mailer)"
    r"[ \t]*:.*\n(?:[ \t].*\n)*[A-Za-z-]+[ \t]*:",
    re.MULTILINE,
)


def _failure_text(parts: _Parts) -> str:
    """The part of a bounce that explains the failure, without the returned message."""
    text = "\n".join(parts.plain) if any(p.strip() for p in parts.plain) else ""
    if not text.strip():
        text = "\n".join(parts.html)
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    lines = text.split("\n")
    for index, line in enumerate(lines):
        if index > 0 and _ORIGINAL_STARTS.match(line):
            lines = lines[:index]
            break
    text = "\n".join(lines)
    quoted = _QUOTED_HEADERS.search(text)
    if quoted and quoted.start() > 0:
        text = text[: quoted.start()]
    return text


@dataclass
class _Found:
    """An address the text names, with what the text says about it."""

    address: str
    diagnostic: str = ""
    order: int = 0


def _own_addresses(message: Message) -> set[str]:
    """The daemon that wrote the bounce: never a failed recipient."""
    return _header_addresses(message, ("From", "Sender", "Reply-To", "Return-Path", "Errors-To"))


def _senders(message: Message, parts: _Parts) -> set[str]:
    """Who the bounce went to and who wrote the returned post: not failed, unless said plainly."""
    found = _header_addresses(message, ("To", "Cc"))
    for original in parts.originals:
        found |= _header_addresses(
            original, ("From", "Sender", "Reply-To", "Return-Path", "Errors-To", "List-Post")
        )
    return found


def _from_text(message: Message, parts: _Parts, text: str) -> list[Bounce]:
    own = _own_addresses(message)
    authors = _senders(message, parts)
    found: dict[str, _Found] = {}

    def add(address: str | None, diagnostic: str = "", plainly: bool = False) -> None:
        if address is None or (address in authors and not plainly):
            return
        if address in own and address not in failed_header:
            return
        if _DAEMON_LOCALS.match(address.partition("@")[0]) and not plainly:
            return
        if address.startswith(("mailer-daemon@", "mailer_daemon@")):
            return
        entry = found.get(address)
        if entry is None:
            found[address] = _Found(address, diagnostic, len(found))
        elif not entry.diagnostic and diagnostic:
            entry.diagnostic = diagnostic

    # Exim and Gmail name the failed recipients in a header of their own.
    failed_header = {
        address
        for value in message.get_all("X-Failed-Recipients", [])
        for address in _addresses_in(str(value))
    }
    for address in sorted(failed_header):
        add(address, plainly=True)
    lines = text.split("\n")
    for address, diagnostic in _paragraph_addresses(lines):
        add(address, diagnostic, plainly=True)
    for address, diagnostic in _listed_addresses(lines):
        add(address, diagnostic, plainly=True)
    for address, diagnostic, plainly in _phrase_addresses(text):
        add(address, diagnostic, plainly)
    for address, diagnostic in _transcript_addresses(lines):
        add(address, diagnostic)
    if failed_header:
        # The header is the server's own list; text may add only the addresses it came from.
        keep = failed_header | {_clean_address(m.group(1)) for m in _ALIAS_SOURCE.finditer(text)}
        found = {address: entry for address, entry in found.items() if address in keep}
    if not found:
        for address, diagnostic in _aol_screen_names(message, lines):
            add(address, diagnostic)
    if not found:
        for address, diagnostic in _labelled_addresses(text):
            add(address, diagnostic)
    if not found:
        for address in _subject_addresses(_subject(message)):
            add(address)

    warning = _is_warning(message, text)
    bounces = []
    for entry in sorted(found.values(), key=lambda item: item.order):
        status = _enhanced_status(entry.diagnostic)
        klass = status[0] if status else _reply_class(entry.diagnostic)
        if warning:
            permanent = False
        elif klass == "4":
            permanent = bool(_GAVE_UP.search(text))
        else:
            permanent = True
        bounces.append(Bounce(entry.address, permanent, status, _one_line(entry.diagnostic)))
    return bounces


# `<user@example.com>:` starting a paragraph: qmail, Postfix, Yahoo and their imitators.
_PARAGRAPH_HEAD = re.compile(rf"^\s*(?:<({_ADDR})>|({_ADDR})):(.*)$")
_PARAGRAPH_ANYWHERE = re.compile(rf"^\s*<{_ADDR}>:", re.MULTILINE)


def _paragraph_addresses(lines: list[str]) -> Iterator[tuple[str | None, str]]:
    for index, line in enumerate(lines):
        match = _PARAGRAPH_HEAD.match(line)
        if not match:
            continue
        rest = [match.group(3)]
        for follower in lines[index + 1 : index + 12]:
            if not follower.strip() or _PARAGRAPH_HEAD.match(follower):
                break
            rest.append(follower)
        yield _clean_address(match.group(1) or match.group(2)), " ".join(rest)


# A sentence announcing a list of failed recipients on the lines that follow.
_LIST_INTRO = re.compile(
    r"following (?:e-?mail )?(?:recipients?|recipient\(s\)|addresse?s?|address\(es\)|users?|"
    r"destinations?)(?! book)|"
    r"failure reasons|以下のメールアドレス|下記のメールアドレス|以下の宛先|下記の宛先|"
    r"delivery has failed to these recipients|"
    r"(?:was|has) not (?:been )?delivered to:|"
    r"could not be delivered to:|"
    r"message could not be delivered to\s*$|"
    r"n'a pas pu etre delivre a|"
    r"^\s*your message to:\s*$|"
    r"failed addresses follow|"
    r"addressed to e-?mail address\s*:|"
    r"delivery of e-?mail to this address|"
    r"deliver the following message|"
    r"address to which the message has not yet been delivered|"
    r"message not delivered to the following|"
    r"not delivered to the following",
    re.IGNORECASE | re.MULTILINE,
)
_LISTED = re.compile(
    r"^[\s*>•·+-]*"
    r"(?:(?:recipient|failed recipient|recipient address|address|e-?mail|to|error-for|user)"
    r"\s*:\s*)?"
    r"[\[<\"'(]*(?:(?:smtp|rfc822)\s*[:;]\s*)?[\[<\"']*"
    rf"({_ADDR})"
    r"[\]>\"')]*(.*)$",
    re.IGNORECASE,
)
# `[Status: Error, Address: <user@example.com>, ...]` inside a list of failures.
_LISTED_LABEL = re.compile(rf"\b(?:address|recipient)\s*:\s*<?({_ADDR})>?(.*)$", re.IGNORECASE)
_EXCHANGE_X400 = re.compile(rf"\bdda:SMTP=({_ADDR})", re.IGNORECASE)
_ALIAS_SOURCE = re.compile(rf"\((?:generated|expanded) from:?\s*<?({_ADDR})>?\)", re.IGNORECASE)


def _listed_addresses(lines: list[str]) -> Iterator[tuple[str | None, str]]:
    index = 0
    while index < len(lines):
        intro = _LIST_INTRO.search(lines[index])
        if not intro:
            index += 1
            continue
        rest = lines[index][intro.end() :].lstrip(" :")
        if ":" in rest and not _LISTED.match(rest):
            # "...returned permanent errors: user@example.com. Reason: ..."
            rest = rest.split(":", 1)[1]
        window = [rest]
        window.extend(lines[index + 1 : index + 40])
        found_any = False
        current: list[str] | None = None
        current_address: str | None = None
        consumed = 0
        for offset, line in enumerate(window):
            consumed = offset
            if offset > 0 and _LIST_INTRO.search(line):
                break
            alias = _ALIAS_SOURCE.search(line)
            listed = (
                _LISTED.match(line) or _LISTED_LABEL.search(line) or _EXCHANGE_X400.search(line)
            )
            if listed:
                if current_address:
                    yield current_address, " ".join(current or [])
                current_address = _clean_address(listed.group(1))
                current = [listed.group(2) if listed.re is not _EXCHANGE_X400 else ""]
                found_any = True
            elif alias:
                yield _clean_address(alias.group(1)), ""
            elif not line.strip():
                if found_any and current_address is None:
                    break
                if current_address:
                    yield current_address, " ".join(current or [])
                    current_address, current = None, None
            elif found_any and not line[:1].isspace() and current_address is None:
                break
            elif current is not None:
                current.append(line)
            elif not found_any and offset > 8:
                break
            if alias and listed:
                yield _clean_address(alias.group(1)), ""
        if current_address:
            yield current_address, " ".join(current or [])
        index += max(consumed, 1)


_LEAD = r"(?![\w-])\s*:?\s*[\[<\"'(]?(?:smtp:)?"
# Phrases that name the failed recipient outright.
_PLAIN_PHRASES = re.compile(
    r"\b(?:unknown user|invalid (?:final delivery userid|recipient)|intended recipient|"
    r"undeliverable address|failed recipient|error-for|delivery failed \d+ attempts|"
    r"undeliverable\s+to|did not reach the following recipient|originally addressed to|"
    r"unable to deliver (?:your )?(?:message|mail) to|could not be delivered to|"
    r"was addressed,|message,? addressed to|delivering (?:your )?(?:mail|message) to|"
    r"user's mailbox is full|local mailbox)"
    rf"{_LEAD}({_ADDR})(.*)$",
    re.IGNORECASE | re.MULTILINE,
)
# Phrases that usually, but not always, name the failed recipient.
_LOOSE_PHRASES = [
    # Sendmail and its descendants: `550 5.1.1 <user@example.com>... User unknown`
    re.compile(rf"<?({_ADDR})>?\s?\.\.\.\s*(\S.*)$", re.MULTILINE),
    re.compile(
        r"\b(?:quota violation for|deliver your message to|your message to|mailbox|recipient)"
        rf"{_LEAD}({_ADDR})(.*)$",
        re.IGNORECASE | re.MULTILINE,
    ),
    re.compile(
        rf"^\s*<?({_ADDR})>?(?:\s+-)?\s+((?:no such|user unknown|unknown|mailbox|invalid|quota|"
        r"not found|does not exist|rejected|disabled|over ?quota|error\b).*)$",
        re.IGNORECASE | re.MULTILINE,
    ),
]
# What a server says about the addresses it accepted.
_ACCEPTED = re.compile(r"^\s*(?:sender|recipient|ok)\b.*\bok\b|^\s*ok\b", re.IGNORECASE)


def _phrase_addresses(text: str) -> Iterator[tuple[str | None, str, bool]]:
    for match in _PLAIN_PHRASES.finditer(text):
        yield _clean_address(match.group(1)), match.group(2), True
    for pattern in _LOOSE_PHRASES:
        for match in pattern.finditer(text):
            if not _ACCEPTED.search(match.group(2)):
                yield _clean_address(match.group(1)), match.group(2), False


_RCPT = re.compile(rf"RCPT\s+TO\s*:\s*<?({_ADDR})>?", re.IGNORECASE)
_REPLY_LINE = re.compile(r"^\s*(?:<<<|>>>|received\s*>>>|\S*\s*said:)?\s*([245])\d\d[\s-]")


def _transcript_addresses(lines: list[str]) -> Iterator[tuple[str | None, str]]:
    """Recipients a session transcript shows being refused, or the only one it tried."""
    tried: list[tuple[str | None, str | None, str]] = []
    for index, line in enumerate(lines):
        match = _RCPT.search(line)
        if not match:
            continue
        reply_class, reply = None, ""
        for follower in lines[index + 1 : index + 4]:
            if _RCPT.search(follower):
                break
            reply_match = _REPLY_LINE.match(follower)
            if reply_match:
                reply_class, reply = reply_match.group(1), follower
                break
        tried.append((_clean_address(match.group(1)), reply_class, reply))
    refused = [(address, reply) for address, klass, reply in tried if klass in ("4", "5")]
    if refused:
        yield from refused
    elif len({address for address, _, _ in tried}) == 1:
        yield tried[0][0], tried[0][2]


# As a last resort: `Mailbox is full: <user@example.com>` or a line holding only `<address>`.
_LABELLED = re.compile(
    r"^[^:\n]{0,60}\b(?:user|mailbox|recipient|address|account|deliver\w*|quota|unknown|"
    rf"invalid|exceed\w*|rejected|failed)\b[^:\n]{{0,40}}:\s*<?({_ADDR})>?\s*$|"
    rf"^\s*<({_ADDR})>\s*$",
    re.IGNORECASE | re.MULTILINE,
)


def _labelled_addresses(text: str) -> Iterator[tuple[str | None, str]]:
    for match in _LABELLED.finditer(text):
        yield _clean_address(match.group(1) or match.group(2)), ""


def _aol_screen_names(message: Message, lines: list[str]) -> Iterator[tuple[str, str]]:
    """AOL lists bare screen names; they are addresses at aol.com."""
    sender = " ".join(str(message.get(name, "")) for name in ("From", "Return-Path"))
    if not re.search(r"@aol\.com\b", sender, re.IGNORECASE):
        return
    for index, line in enumerate(lines):
        if re.search(r"could not be delivered", line, re.IGNORECASE):
            for follower in lines[index + 1 : index + 20]:
                name = re.match(r"^\s+([A-Za-z][A-Za-z0-9._-]{1,40})\s*$", follower)
                if name:
                    yield f"{name.group(1).lower()}@aol.com", ""
                elif follower.strip():
                    break


_JSON_BOUNCE = re.compile(r'\\?"notificationType\\?"\s*:\s*\\?"Bounce\\?"')
_JSON_RECIPIENT = re.compile(rf'\\?"emailAddress\\?"\s*:\s*\\?"({_ADDR})\\?"(.{{0,600}}?)\}}')
_JSON_DIAGNOSTIC = re.compile(r'\\?"diagnosticCode\\?"\s*:\s*\\?"(.*?)\\?"\s*[,}]')


_JSON_TRANSIENT = re.compile(r'\\?"bounceType\\?"\s*:\s*\\?"Transient')


def _json_notification(text: str) -> list[Bounce]:
    """Cloud senders (Amazon SES) that post their bounce notice as JSON, often re-quoted."""
    permanent = not _JSON_TRANSIENT.search(text)
    bounces = []
    for match in _JSON_RECIPIENT.finditer(text):
        address = _clean_address(match.group(1))
        diagnostic_match = _JSON_DIAGNOSTIC.search(match.group(2))
        diagnostic = diagnostic_match.group(1) if diagnostic_match else ""
        if address:
            status = _enhanced_status(diagnostic)
            bounces.append(Bounce(address, permanent, status, _one_line(diagnostic)))
    return _dedupe(bounces)


def _subject_addresses(subject: str) -> list[str]:
    match = re.search(
        r"(?:undeliverable|undelivered|delayed|failure|failed|not delivered|report \(\w+\) for|"
        r"warning)\s*:?[\s(<\"']*" + rf"({_ADDR})",
        subject,
        re.IGNORECASE,
    )
    address = _clean_address(match.group(1)) if match else None
    return [address] if address else []


_WARNING = re.compile(
    r"has not yet been delivered|not yet been delivered|delivery (?:has been )?delayed|"
    r"has been delayed|will (?:continue to )?(?:retry|try again|attempt (?:to )?deliver)|"
    r"will be retried|"
    r"delivery attempts will continue|warning message only|has been postponed|"
    r"still being retried|is being retried",
    re.IGNORECASE,
)
_WARNING_SUBJECT = re.compile(
    r"warning: message|delay|still being retried|retrying|transient|temporar|"
    r"not (?:yet )?been delivered|warning$",
    re.IGNORECASE,
)
_GAVE_UP = re.compile(
    r"permanent|given up|not going to try again|too long|giving up|failed|could not be delivered",
    re.IGNORECASE,
)


def _is_warning(message: Message, text: str) -> bool:
    """Is this only a notice that delivery is still being tried?"""
    if re.search(r"this is a permanent error|given up|giving up", text, re.IGNORECASE):
        return False
    return bool(_WARNING_SUBJECT.search(_subject(message)) or _WARNING.search(text))
