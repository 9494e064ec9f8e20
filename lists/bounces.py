"""Bounce parsing for the list engine: who a returned message says did not get a post.

Everything here is a pure function of bytes or strings. A bounce is read in one of these
ways, the first that applies:

* a standard delivery status notification (RFC 3464) is read field by field, and when it
  names its recipients nothing else in the message is trusted;
* a JSON bounce notice (Amazon SES posts these) is read for its bounced recipients;
* anything else is read as text, with the phrases mail servers have used for decades, but
  only when the message presents itself as a bounce (a mailer daemon sent it, its subject
  or text says so) and only in the part that explains the failure, never in the returned
  copy of the post.

A wrong address costs a subscriber their membership, a missed one only delays a bounce
count, so the text rules prefer saying nothing to guessing. Charsets, header values and
HTML are decoded by the archive's own parser (`archiver.parse`, `archiver.htmltext`), so a
bounce reads as the archive would read it.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from email.message import Message
from email.utils import getaddresses

from archiver.htmltext import html_to_text
from archiver.parse.headers import header_text
from archiver.parse.mime import PARSER, decoded_text

# Limits that keep hostile or enormous mail cheap to read.
MAX_MESSAGE_BYTES = 4 * 1024 * 1024
MAX_TEXT_BYTES = 256 * 1024
MAX_LINE_CHARS = 1000
MAX_PARTS = 200
MAX_NESTING = 3
MAX_DIAGNOSTIC = 300


@dataclass(frozen=True)
class Bounce:
    """One recipient a bounce message reports as failed."""

    address: str  # the failed recipient, lower-cased plain local@domain
    permanent: bool  # False for delays and 4.x.x statuses: the cause may go away
    status: str | None  # enhanced status code such as "5.1.1", when the bounce gives one
    diagnostic: str  # the server's reason on one line of at most 300 characters, or ""


def parse_bounce(raw: bytes) -> list[Bounce]:
    """The failed recipients a bounce (DSN or a non-standard MTA report) names.

    [] when the message is not a bounce, names no one, or cannot be read at all: the list
    engine feeds every message that reaches its bounce address through here unguarded.
    """
    try:
        message = PARSER.parsebytes(bytes(raw[:MAX_MESSAGE_BYTES]))
        return _read(message, depth=0)
    except Exception:
        return []


_VERP_MARKER = "-bounces+"


def verp_address(list_local: str, domain: str, recipient: str, signature: str = "") -> str:
    """The VERP envelope sender for a list post to `recipient`, carrying `signature`.

    A bounce then comes back to an address that names the subscriber, so it can be matched
    to a member even when its text is unreadable:
    `verp_address("dev", "lists.example.com", "ann@example.org", "sig")` is
    `"dev-bounces+sig.ann=example.org@lists.example.com"` (without a signature, as mail
    was sent before signatures: `"dev-bounces+ann=example.org@lists.example.com"`).
    Raises ValueError when `recipient` is not local@domain.
    """
    local, at, rdomain = recipient.strip().rpartition("@")
    if not at or not local or not rdomain:
        raise ValueError(f"not an address: {recipient!r}")
    signed = f"{signature}{_SIGNATURE_END}" if signature else ""
    return f"{list_local}{_VERP_MARKER}{signed}{local}={rdomain}@{domain}"


_SIGNATURE_END = "."


def split_verp_signature(detail: str, length: int) -> tuple[str, str]:
    """(signature, rest) of the `+detail` of a VERP address that may start with a
    signature of `length` characters; ("", detail) when it cannot carry one.

    An unsigned address of a recipient whose local part happens to look like a signature
    splits too; its "signature" then fails the check, and the caller reads the whole
    detail as an unsigned address.
    """
    signature, dot, rest = detail.partition(_SIGNATURE_END)
    if not dot or len(signature) != length or not signature.isalnum() or not rest:
        return "", detail
    return signature, rest


def decode_verp(address: str) -> tuple[str, str] | None:
    """For an address made by `verp_address`: (list local part, recipient address).

    None when `address` is not one. The recipient's local part may itself contain '+',
    '-', '=' or dots, so the recipient's domain starts after the last '='. Servers change
    case on the way back, so matching ignores it and the values come back lower-cased.
    """
    text = address.strip().strip("<>").strip().lower()
    envelope_local, at, domain = text.rpartition("@")
    if not at or not domain:
        return None
    list_local, marker, encoded = envelope_local.partition(_VERP_MARKER)
    if not marker or not list_local:
        return None
    local, equals, rdomain = encoded.rpartition("=")
    if not equals or not local or not rdomain or rdomain.startswith("."):
        return None
    if any(char in text for char in ' \t<>,;"') or "@" in encoded:
        return None
    return list_local, f"{local}@{rdomain}"


@dataclass(frozen=True)
class DeliveryReport:
    """What a standard delivery status notification (RFC 3464) says, and about what."""

    bounces: list[Bounce]  # the recipients its delivery-status fields name as failed
    message_id: str  # of the returned message or headers, without <>; "" when it has none


def delivery_report(raw: bytes) -> DeliveryReport | None:
    """The recipients an RFC 3464 report names, and the Message-ID of the message it
    returns; None for anything else (prose bounces, complaints, unreadable mail).

    A bounce that does not come back to a signed VERP address counts only when it is
    such a report about a message the outbox sent: the structured fields are the only
    part of a bounce that names a recipient without guessing.
    """
    try:
        message = PARSER.parsebytes(bytes(raw[:MAX_MESSAGE_BYTES]))
        parts = _Parts()
        _collect(message, parts)
        if parts.feedback:
            return None
        records = [record for text in parts.reports for record in _dsn_records(text)]
        found = _dedupe(bounce for record in records if (bounce := _dsn_bounce(record)))
        if not found:
            return None
        message_ids = (str(original.get("Message-ID", "")) for original in parts.originals)
        message_id = next((" ".join(m.split()).strip("<>") for m in message_ids if m), "")
        return DeliveryReport(found, message_id)
    except Exception:
        return None


# -- addresses ----------------------------------------------------------------------------

_LOCAL_CHARS = r"A-Za-z0-9!#$%&*+/=?^_`{|}~\-"
_DOMAIN = r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}"
_ADDR = rf"[{_LOCAL_CHARS}]+(?:\.[{_LOCAL_CHARS}]+)*@{_DOMAIN}"
# An address in running text, not glued to more address characters on either side.
_ADDR_IN_TEXT = re.compile(rf"(?<![{_LOCAL_CHARS}.])({_ADDR})(?![A-Za-z0-9-]|\.[A-Za-z0-9])")
_PLAIN_ADDRESS = re.compile(rf"^{_ADDR}$")
# RFC 5321 allows a quoted local part: "odd..name"@example.com
_QUOTED_ADDRESS = re.compile(rf'^"[\x20\x21\x23-\x5b\x5d-\x7e]{{1,62}}"@{_DOMAIN}$')
# Exchange and X.400 gateways write `SMTP=user@host`; the prefix is not part of it.
_GATEWAY_PREFIX = re.compile(r"^(?:smtp|rfc-?822|internet)=", re.IGNORECASE)
# Local parts of the mail machinery itself.
_DAEMON_LOCAL = re.compile(
    r"^(?:mailer-?daemon|mail-?daemon|mailerdaemon|postmaster|double-bounce|mdaemon|"
    r"mail\.delivery\.system|mail-delivery-system)$",
    re.IGNORECASE,
)


def _clean_address(text: str) -> str | None:
    """`text` as a lower-cased plain local@domain, or None when it is not one."""
    candidate = text.strip().strip("<>[]()").strip()
    if _QUOTED_ADDRESS.match(candidate):
        return candidate.lower()
    candidate = _GATEWAY_PREFIX.sub("", candidate.strip("\"'").strip())
    if len(candidate) > 254 or not _PLAIN_ADDRESS.match(candidate):
        return None
    local, _, domain = candidate.rpartition("@")
    if len(local) > 64:
        return None
    return f"{local}@{domain}".lower()


def _addresses_in(text: str) -> list[str]:
    """The plain addresses written anywhere in `text`, in order, lower-cased."""
    found = []
    for match in _ADDR_IN_TEXT.finditer(text):
        address = _clean_address(match.group(1))
        if address is not None:
            found.append(address)
    return found


def _header_addresses(message: Message, names: Iterable[str]) -> set[str]:
    """The addresses in the named address headers of `message`."""
    values = [str(value) for name in names for value in message.get_all(name, [])]
    found = {address for value in values for address in _addresses_in(value)}
    for _, address in getaddresses(values):
        cleaned = _clean_address(address)
        if cleaned:
            found.add(cleaned)
    return found


# -- reading the message ------------------------------------------------------------------


@dataclass
class _Parts:
    """The pieces of a message that a bounce reader looks at."""

    reports: list[str] = field(default_factory=list)
    plain: list[str] = field(default_factory=list)
    html: list[str] = field(default_factory=list)
    originals: list[Message] = field(default_factory=list)
    feedback: bool = False
    seen: int = 0


def _read(message: Message, depth: int) -> list[Bounce]:
    parts = _Parts()
    _collect(message, parts)
    if parts.feedback:
        # A spam complaint (RFC 5965) names the complainer, who did receive the post.
        return []
    records = [record for text in parts.reports for record in _dsn_records(text)]
    found = _dedupe(bounce for record in records if (bounce := _dsn_bounce(record)))
    if found or any(_reports_success(record) for record in records):
        # When the report names recipients, the prose around it adds nothing but risk.
        return found
    text = _failure_text(parts)
    if _JSON_BOUNCE.search(text):
        return _json_notification(text)
    looks_like_bounce = _looks_like_bounce(message, text)
    if looks_like_bounce:
        found = _dsn_in_text(text) or _from_text(message, parts, text)
        if found:
            return found
    if depth < MAX_NESTING and (looks_like_bounce or _looks_like_bounce(message, "")):
        # Some gateways wrap the real DSN, as an attachment, in a notice of their own.
        for original in parts.originals:
            if _is_report(original):
                found = _read(original, depth + 1)
                if found:
                    return found
    return []


def _collect(part: Message, parts: _Parts) -> None:
    parts.seen += 1
    if parts.seen > MAX_PARTS:
        return
    ctype = part.get_content_type()
    payload = part.get_payload()
    if ctype in ("message/delivery-status", "message/global-delivery-status"):
        parts.reports.append(_report_text(part))
    elif ctype == "message/feedback-report":
        parts.feedback = True
    elif ctype in ("message/rfc822", "message/global", "message/partial"):
        if isinstance(payload, list) and payload and isinstance(payload[0], Message):
            parts.originals.append(payload[0])
    elif ctype in ("text/rfc822-headers", "message/rfc822-headers", "text/rfc822-header"):
        parts.originals.append(PARSER.parsebytes(_payload_bytes(part)))
    elif ctype.startswith("multipart/") and isinstance(payload, list):
        report_type = str(part.get_param("report-type", "")).lower()
        if ctype == "multipart/report" and report_type == "feedback-report":
            parts.feedback = True
        for sub in payload:
            if isinstance(sub, Message):
                _collect(sub, parts)
    elif ctype.startswith("multipart/"):
        # A multipart whose boundary got lost: its body is all there is to read.
        parts.plain.append(_decoded(part))
    elif _is_attachment(part) and parts.seen > 1:
        return
    elif ctype == "text/html":
        parts.html.append(_html_to_text(_decoded(part)))
    elif ctype.startswith("text/") or parts.seen == 1:
        parts.plain.append(_decoded(part))


def _is_attachment(part: Message) -> bool:
    return str(part.get("Content-Disposition", "")).strip().lower().startswith("attachment")


def _is_report(message: Message) -> bool:
    if message.get_content_type() == "multipart/report":
        return True
    for count, sub in enumerate(message.walk()):
        if count > MAX_PARTS:
            return False
        if sub.get_content_type() == "message/delivery-status":
            return True
    return False


def _payload_bytes(part: Message) -> bytes:
    payload = part.get_payload(decode=True)
    if isinstance(payload, bytes):
        return payload[:MAX_TEXT_BYTES]
    raw = part.get_payload()
    if isinstance(raw, str):
        return raw[:MAX_TEXT_BYTES].encode("utf-8", "surrogateescape")
    return b""


def _decoded(part: Message) -> str:
    """A part's text, decoded as the archive decodes it (a wrong charset label, common in
    bounces, falls back to UTF-8 and then Windows-1252)."""
    return decoded_text(part, part.get_content_type(), _payload_bytes(part), set())


def _report_text(part: Message) -> str:
    """The text of a message/delivery-status part, however the parser split it up."""
    payload = part.get_payload()
    if not isinstance(payload, list):
        return _decoded(part)
    blocks = []
    for block in payload:
        if isinstance(block, Message):
            lines = [f"{name}: {value}" for name, value in block.items()]
            body = block.get_payload()
            if isinstance(body, str) and body.strip():
                lines.append(body)
            blocks.append("\n".join(lines))
    text = "\n\n".join(blocks)[:MAX_TEXT_BYTES]
    encoding = str(part.get("Content-Transfer-Encoding", "")).strip().lower()
    if encoding == "base64" and not re.search(r"(?im)^(?:final|original)-recipient\s*:", text):
        # The parser read the encoded lines as fields; decode what it kept.
        try:
            squeezed = re.sub(r"[^A-Za-z0-9+/=]", "", text)
            return base64.b64decode(squeezed)[:MAX_TEXT_BYTES].decode("utf-8", "replace")
        except (binascii.Error, ValueError):
            return text
    return text


def _subject(message: Message) -> str:
    return header_text(message.get("Subject"), set())


# Every pattern below scans in linear time: bounce text is untrusted input.
# `<user@example.com>` in the markup is text that a reader should see, not a tag.
_ADDRESS_TAG = re.compile(rf"<({_ADDR})>")
_BREAK_TAG = re.compile(r"<\s*/?\s*(?:br|p|div|tr|li|h\d|table|pre)\b", re.IGNORECASE)


def _html_to_text(markup: str) -> str:
    """The words of an HTML part, as the archive reads them, with two habits of bounce
    generators allowed for: addresses in angle brackets written unescaped, and plain text
    labelled HTML, whose source lines are then its lines (as in a <pre>), for the rules
    below read bounces line by line."""
    markup = _ADDRESS_TAG.sub(r"&lt;\1&gt;", markup)
    if not _BREAK_TAG.search(markup):
        markup = f"<pre>{markup}</pre>"
    return html_to_text(markup)


# -- standard delivery status notifications ----------------------------------------------

_FIELD = re.compile(r"^([A-Za-z][A-Za-z0-9-]*)[ \t]*:[ \t]*(.*)$")
_RECIPIENT_FIELDS = ("final-recipient", "original-recipient")
# "deliverable" answers an address verification request: nothing failed.
_SUCCESS_ACTIONS = ("delivered", "relayed", "expanded", "deliverable")
_ENHANCED_STATUS = re.compile(r"(?<![\d.])([245])\.(\d{1,3})\.(\d{1,3})(?!\d|\.\d)")
_REPLY_CODE = re.compile(r"(?<![\d.#-])([245])\d\d(?![\d.])")


def _dsn_records(text: str) -> list[dict[str, str]]:
    """The per-recipient field groups of a delivery-status text."""
    records: list[dict[str, list[str]]] = []
    current: dict[str, list[str]] = {}
    last = ""
    for line in text.splitlines():
        if not line.strip():
            if current:
                records.append(current)
            current, last = {}, ""
        elif line[0] in " \t" and last:
            current[last].append(line.strip())
        elif match := _FIELD.match(line):
            name, value = match.group(1).lower(), match.group(2).strip()
            if name in current and name in (*_RECIPIENT_FIELDS, "action", "status"):
                # Some servers leave out the blank line between recipients.
                records.append(current)
                current = {}
            current[name] = [value]
            last = name
        else:
            last = ""
    if current:
        records.append(current)
    return [
        {name: " ".join(values) for name, values in record.items()}
        for record in records
        if any(name in record for name in _RECIPIENT_FIELDS)
    ]


def _action(record: dict[str, str]) -> str:
    word = re.match(r"\s*([A-Za-z]+)", record.get("action", ""))
    return word.group(1).lower() if word else ""


def _reports_success(record: dict[str, str]) -> bool:
    """Is this the record of a delivery that worked, or was passed on?"""
    action = _action(record)
    status = _enhanced_status(record.get("status", ""))
    return action in _SUCCESS_ACTIONS or (not action and bool(status) and status[0] == "2")


def _dsn_address(value: str) -> str | None:
    kind, semicolon, rest = value.partition(";")
    if not semicolon:
        rest = kind
    address = _clean_address(rest)
    if address is None:
        found = _addresses_in(rest)
        address = found[0] if len(found) == 1 else None
    return address


def _dsn_bounce(record: dict[str, str]) -> Bounce | None:
    action = _action(record)
    if action in _SUCCESS_ACTIONS:
        return None
    # Original-Recipient is the address the list sent to, before any forwarding.
    address = _dsn_address(record.get("original-recipient", "")) or _dsn_address(
        record.get("final-recipient", "")
    )
    if address is None:
        return None
    status_field = record.get("status", "")
    diagnostic = re.sub(r"^\s*[A-Za-z0-9-]+\s*;\s*", "", record.get("diagnostic-code", ""))
    status = _enhanced_status(status_field) or _enhanced_status(diagnostic)
    klass = status[0] if status else _reply_class(status_field) or _reply_class(diagnostic)
    if klass == "2" and action not in ("failed", "failure", "error", "delayed"):
        return None
    permanent = action != "delayed" and klass != "4"
    if not diagnostic:
        diagnostic = _ENHANCED_STATUS.sub("", status_field, count=1)
    return Bounce(address, permanent, status, _one_line(diagnostic))


def _dsn_in_text(text: str) -> list[Bounce]:
    """DSN fields that a server wrote into the human-readable part instead of a report."""
    if not re.search(r"(?im)^[ \t]*final-recipient[ \t]*:", text):
        return []
    unindented = "\n".join(line.strip() for line in text.splitlines())
    records = [
        record for record in _dsn_records(unindented) if "action" in record or "status" in record
    ]
    return _dedupe(bounce for record in records if (bounce := _dsn_bounce(record)))


def _enhanced_status(text: str, failures_only: bool = False) -> str | None:
    for match in _ENHANCED_STATUS.finditer(text):
        if not failures_only or match.group(1) in "45":
            return ".".join(match.groups())
    return None


def _reply_class(text: str, failures_only: bool = False) -> str | None:
    for match in _REPLY_CODE.finditer(text):
        if not failures_only or match.group(1) in "45":
            return match.group(1)
    return None


def _one_line(text: str) -> str:
    line = " ".join(text.split()).lstrip(" :;,.>)]}'\"-")
    if not re.search(r"[^\W\d_]", line):
        return ""
    return line if len(line) <= MAX_DIAGNOSTIC else line[: MAX_DIAGNOSTIC - 1].rstrip() + "…"


def _dedupe(bounces: Iterable[Bounce]) -> list[Bounce]:
    seen: dict[str, Bounce] = {}
    for bounce in bounces:
        seen.setdefault(bounce.address, bounce)
    return list(seen.values())


# -- JSON notices -------------------------------------------------------------------------

# The notice is often JSON quoted inside JSON, so every quote may carry a backslash.
_JSON_BOUNCE = re.compile(r'\\?"notificationType\\?"\s*:\s*\\?"Bounce\\?"')
_JSON_TRANSIENT = re.compile(r'\\?"bounceType\\?"\s*:\s*\\?"Transient')
_JSON_RECIPIENT = re.compile(rf'\\?"emailAddress\\?"\s*:\s*\\?"({_ADDR})\\?"([^{{}}]{{0,2000}})')
_JSON_DIAGNOSTIC = re.compile(r'\\?"diagnosticCode\\?"\s*:\s*\\?"([^"\\]*)')


def _json_notification(text: str) -> list[Bounce]:
    permanent = not _JSON_TRANSIENT.search(text)
    bounces = []
    for match in _JSON_RECIPIENT.finditer(text):
        address = _clean_address(match.group(1))
        diagnostic = _JSON_DIAGNOSTIC.search(match.group(2))
        reason = diagnostic.group(1) if diagnostic else ""
        if address:
            status = _enhanced_status(reason, failures_only=True)
            bounces.append(Bounce(address, permanent, status, _one_line(reason)))
    return _dedupe(bounces)


# -- is it a bounce at all ----------------------------------------------------------------

_DAEMON_SENDER = re.compile(
    r"mailer[- ]?daemon|mail deliver|delivery (?:sub)?system|post_?master|"
    r"system administrator|mail administrator|delivery status|mail ?system",
    re.IGNORECASE,
)
_BOUNCE_SUBJECT = re.compile(
    r"undeliver|not delivered|non[- ]?delivery|nondeliver|delivery (?:status|fail|"
    r"notification|report|problem|has failed|error|warning|delayed)|returned mail|"
    r"mail delivery|failure notice|failed mail|delivery failure|could not be delivered|"
    r"mail system error|warning: message|delayed mail|processing error|message delayed|"
    r"returned to sender|non remis|unzustellbar|non recapitabile|mail failed|"
    r"permanent delivery|returning message|mail not delivered|user unknown|rejected|"
    r"failed delivery|failure delivery|bounce|could not send|error sending|"
    r"エラー|不達|未達|配送|送信できません|退信|投递失败|无法投递|無法傳遞",
    re.IGNORECASE,
)
_BOUNCE_TEXT = re.compile(
    r"could not be delivered|couldn't be delivered|undeliverable|undelivered|"
    r"not (?:been )?delivered|not able to deliver|wasn't able to deliver|unable to deliver|"
    r"delivery (?:has )?failed|delivery to the following|failed permanently|"
    r"permanent (?:fatal )?error|could not be reached|did not reach|not yet been delivered|"
    r"mail delivery (?:software|system|subsystem)|returned to sender|user unknown|"
    r"unknown user|no such user|does not exist|could not deliver|couldn't deliver|"
    r"delivery failure|delivery problem|delivery errors?|has been delayed|"
    r"following addresses? failed|failed to deliver|cannot be delivered|"
    r"can't be delivered|invalid recipient|not accepting mail|mailbox (?:is )?full|"
    r"over quota|quota exceeded|recipient address rejected|rejected|non[- ]?delivery|"
    r"has been postponed|no mailbox here|unknown or illegal|relay access denied|"
    r"mailbox unavailable|failed recipients|returned mail|could not send|"
    r"trouble delivering|error sending|user not found|invalid mailbox|is unavailable|"
    r"not accepted|delevery",
    re.IGNORECASE,
)
# Sentences that only mail servers write, and only in bounces.
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
    """Does the message present itself as a delivery failure report?

    Two of: a mailer daemon sent it, its subject says so, its text says so. Auto-replies,
    list mail and spam that reach a bounce address fail this.
    """
    if message.get("X-Failed-Recipients"):
        return True
    senders = " ".join(str(message.get(name, "")) for name in ("From", "Sender", "Return-Path"))
    from_daemon = bool(_DAEMON_SENDER.search(senders)) or (
        str(message.get("Return-Path", "")).strip() == "<>"
    )
    says_so = bool(_BOUNCE_SUBJECT.search(_subject(message)))
    text_says_so = bool(_BOUNCE_TEXT.search(text) or _PARAGRAPH_ANYWHERE.search(text))
    signed = bool(_BOUNCE_SIGNATURE.search(text))
    return from_daemon + says_so + text_says_so + 2 * signed >= 2


# -- non-standard bounces: the failure text ----------------------------------------------

# Where a server starts quoting the returned message: everything after it is the post's
# own words and addresses. Possessive quantifiers keep a line of dashes linear.
_ORIGINAL_STARTS = re.compile(
    r"[ \t>|*=_]*+(?:"
    r"-++[ \t]*+(?:below|original|the header|this is a copy|unsent|returned|undelivered|"
    r"start of returned|message (?:header|body|text|follows|removed|suppressed|below))|"
    r"-*+[ \t]*+(?:"
    r"below (?:this|the next) line is a copy|"
    r"this is a copy of (?:the|your) message|"
    r"a copy of the original message|"
    r"original message (?:follows|as received|headers|details|attached|text)|"
    r"original message[ \t]*+[-:]*+[ \t]*+$|"
    r"mensaje original|"
    r"your message reads|"
    r"the first \d+ lines of your original message|"
    r"included is a copy of the message|"
    r"message headers? follows?|"
    r"header of (?:the )?(?:original|source) mail|"
    r"returned mail follows|"
    r"unsent message below|"
    r"attachment is a copy of the message|"
    r"message text follows|"
    r"content-type: message/rfc822|"
    r"(?:original|forwarded) message ?[-=]+|"
    r"a summary of the undelivered message"
    r"))",
    re.IGNORECASE,
)
# A raw header block of the returned message, with no announcement before it.
_QUOTED_HEADERS = re.compile(
    r"^(?:Return-Path|Received|Message-I[Dd]|DKIM-Signature|MIME-Version|X-Mailer)"
    r"[ \t]*:.*\n(?:[ \t].*\n)*[A-Za-z-]+[ \t]*:",
    re.MULTILINE,
)


def _failure_text(parts: _Parts) -> str:
    """The part of a bounce that explains the failure, without the returned message."""
    text = "\n".join(parts.plain)
    if not text.strip():
        text = "\n".join(parts.html)
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    lines = [line[:MAX_LINE_CHARS] for line in text.split("\n")]
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
    diagnostic: str
    order: int


def _from_text(message: Message, parts: _Parts, text: str) -> list[Bounce]:
    # The daemon that wrote the bounce is never a failed recipient.
    daemon = _header_addresses(message, ("From", "Sender", "Reply-To", "Return-Path"))
    # Whom the bounce went to and who wrote the post: failed only when the text says so
    # in so many words (people do write to themselves).
    senders = _header_addresses(message, ("To", "Cc"))
    for original in parts.originals:
        senders |= _header_addresses(original, ("From", "Sender", "Reply-To", "Return-Path"))
    # Exim and Gmail list the failed recipients in a header of their own.
    failed_header = {
        address
        for value in message.get_all("X-Failed-Recipients", [])
        for address in _addresses_in(str(value))
    }
    found: dict[str, _Found] = {}

    def add(address: str | None, diagnostic: str = "", plainly: bool = False) -> None:
        if address is None or address.startswith(("mailer-daemon@", "mailer_daemon@")):
            return
        if any(char in address.split("@")[0] for char in "=/"):
            # In running text these are quoted-printable or X.400 debris, or a VERP address.
            return
        if address in daemon and address not in failed_header:
            return
        if not plainly and (address in senders or _DAEMON_LOCAL.match(address.split("@")[0])):
            return
        entry = found.setdefault(address, _Found(address, diagnostic, len(found)))
        if not entry.diagnostic:
            entry.diagnostic = diagnostic

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
        # The header is the server's own list; the text may add only where those came from.
        keep = failed_header | {_clean_address(m.group(1)) for m in _ALIAS_SOURCE.finditer(text)}
        found = {address: entry for address, entry in found.items() if address in keep}
    for fallback in (
        lambda: _labelled_addresses(text),
        lambda: _aol_screen_names(message, lines),
        lambda: ((address, "") for address in _subject_addresses(_subject(message))),
    ):
        if found:
            break
        for address, diagnostic in fallback():
            add(address, diagnostic)

    warning = _is_warning(message, text)
    mentioned: dict[str, int] = {}
    for index, line in enumerate(lines):
        for address in _addresses_in(line):
            mentioned.setdefault(address, index)
    bounces = []
    for entry in sorted(found.values(), key=lambda item: item.order):
        if not _one_line(entry.diagnostic) and entry.address in mentioned:
            entry.diagnostic = _nearby_reason(lines, mentioned[entry.address], entry.address)
        diagnostic = _one_line(entry.diagnostic)
        # A transcript quotes the accepted steps too: the failure is the first 4xx or 5xx.
        status = _enhanced_status(entry.diagnostic, failures_only=True)
        klass = status[0] if status else _reply_class(entry.diagnostic, failures_only=True)
        permanent = not warning and (klass != "4" or bool(_FINAL.search(text)))
        bounces.append(Bounce(entry.address, permanent, status, diagnostic))
    return bounces


_REASON_WORDS = re.compile(
    r"\b[245]\d\d\b|unknown|full|quota|reject|denied|refused|fail|error|invalid|exist|"
    r"disabled|blocked|expired|time(?:d )?out|unavailable|not found|no such|too large",
    re.IGNORECASE,
)


def _nearby_reason(lines: list[str], index: int, address: str) -> str:
    """The lines after `lines[index]`, which names `address`, when they read like a reason."""
    reason: list[str] = []
    for follower in lines[index + 1 : index + 8]:
        if not follower.strip():
            if reason:
                break
            continue
        if len(reason) == 4 or any(other != address for other in _addresses_in(follower)):
            break
        reason.append(follower)
    text = " ".join(reason)
    return text if _REASON_WORDS.search(text) else ""


# `<user@example.com>:` opening a paragraph: qmail, Postfix, Yahoo and their imitators.
_PARAGRAPH_HEAD = re.compile(rf"^\s*(?:<({_ADDR})>|({_ADDR})):(.*)$")
_PARAGRAPH_ANYWHERE = re.compile(rf"^[ \t]*<{_ADDR}>:", re.MULTILINE)


def _paragraph_addresses(lines: list[str]) -> Iterator[tuple[str | None, str]]:
    for index, line in enumerate(lines):
        match = _PARAGRAPH_HEAD.match(line)
        if not match:
            continue
        reason = [match.group(3)]
        for follower in lines[index + 1 : index + 12]:
            if not follower.strip() or _PARAGRAPH_HEAD.match(follower):
                break
            reason.append(follower)
        yield _clean_address(match.group(1) or match.group(2)), " ".join(reason)


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
    r"address to which the message has not yet been delivered",
    re.IGNORECASE,
)
# One entry of such a list: the address first, after bullets or a label.
_LISTED = re.compile(
    r"^[\s*>•·+-]*+"
    r"(?:(?:recipient|failed recipient|recipient address|address|e-?mail|to|error-for|user)"
    r"\s*:\s*)?"
    r"[\[<\"'(]*+(?:(?:smtp|rfc822)\s*[:;]\s*)?[\[<\"']*+"
    rf"({_ADDR})"
    r"[\]>\"')]*(.*)$",
    re.IGNORECASE,
)
# `[Status: Error, Address: <user@example.com>, ...]` inside such a list.
_LISTED_LABEL = re.compile(rf"\b(?:address|recipient)\s*:\s*<?({_ADDR})>?(.*)$", re.IGNORECASE)
_EXCHANGE_X400 = re.compile(rf"\bdda:SMTP=({_ADDR})", re.IGNORECASE)
# Exim and Sendmail name the address a failed alias was expanded from; lists know that one.
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
        window = [rest, *lines[index + 1 : index + 40]]
        seen_any = False
        address: str | None = None
        reason: list[str] = []
        offset = 0
        for offset, line in enumerate(window):
            if offset > 0 and _LIST_INTRO.search(line):
                break
            listed = _LISTED.match(line) or _LISTED_LABEL.search(line)
            x400 = None if listed else _EXCHANGE_X400.search(line)
            alias = _ALIAS_SOURCE.search(line)
            if listed or x400:
                if address:
                    yield address, " ".join(reason)
                address = _clean_address((listed or x400).group(1))
                reason = [listed.group(2)] if listed else []
                seen_any = True
            elif not line.strip():
                if address:
                    yield address, " ".join(reason)
                    address, reason = None, []
            elif seen_any and address is None and not alias and not line[:1].isspace():
                break
            elif address and not alias:
                reason.append(line)
            elif not seen_any and offset > 8:
                break
            if alias:
                yield _clean_address(alias.group(1)), ""
                seen_any = True
        if address:
            yield address, " ".join(reason)
        index += max(offset, 1)


_AFTER_PHRASE = r"(?![\w-])\s*:?\s*[\[<\"'(]?(?:smtp:)?"
# Phrases that name the failed recipient outright.
_PLAIN_PHRASES = re.compile(
    r"\b(?:unknown user|invalid (?:final delivery userid|recipient)|intended recipient|"
    r"undeliverable address|failed recipient|error-for|delivery failed \d+ attempts|"
    r"undeliverable\s+to|did not reach the following recipient|originally addressed to|"
    r"unable to deliver (?:your )?(?:message|mail) to|could not be delivered to|"
    r"was addressed,|message,? addressed to|delivering (?:your )?(?:mail|message) to|"
    r"user's mailbox is full|local mailbox)"
    rf"{_AFTER_PHRASE}({_ADDR})(.*)$",
    re.IGNORECASE | re.MULTILINE,
)
# Phrases that usually, not always, name the failed recipient.
_LOOSE_PHRASES = (
    # Sendmail and its descendants: `550 5.1.1 <user@example.com>... User unknown`
    re.compile(rf"<?(?<![{_LOCAL_CHARS}.])({_ADDR})>?\s?\.\.\.\s*(\S.*)$", re.MULTILINE),
    re.compile(
        r"\b(?:quota violation for|deliver your message to|your message to|mailbox|recipient)"
        rf"{_AFTER_PHRASE}({_ADDR})(.*)$",
        re.IGNORECASE | re.MULTILINE,
    ),
    re.compile(
        rf"^\s*<?({_ADDR})>?(?:\s+-)?\s+((?:no such|user unknown|unknown|mailbox|invalid|"
        r"quota|not found|does not exist|rejected|disabled|over ?quota|error\b).*)$",
        re.IGNORECASE | re.MULTILINE,
    ),
)
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
    """Recipients a session transcript shows refused, or the only one it shows tried."""
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


# Last resorts: `Mailbox is full: <user@example.com>`, or a line holding only `<address>`.
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
    """AOL lists bare screen names, which are addresses at aol.com."""
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


_SUBJECT_ADDRESS = re.compile(
    r"(?:undeliverable|undelivered|delayed|failure|failed|not delivered|report \(\w+\) for|"
    rf"warning)\s*:?[\s(<\"']*({_ADDR})",
    re.IGNORECASE,
)


def _subject_addresses(subject: str) -> list[str]:
    match = _SUBJECT_ADDRESS.search(subject)
    address = _clean_address(match.group(1)) if match else None
    return [address] if address else []


# -- permanent or not ---------------------------------------------------------------------

_WARNING_TEXT = re.compile(
    r"not yet been delivered|delivery (?:has been )?delayed|has been delayed|"
    r"will (?:continue to )?(?:retry|try again|attempt (?:to )?deliver)|will be retried|"
    r"delivery attempts will continue|warning message only|has been postponed|"
    r"still being retried|is being retried",
    re.IGNORECASE,
)
_WARNING_SUBJECT = re.compile(
    r"warning: message|delay|still being retried|retrying|transient|temporar|"
    r"not (?:yet )?been delivered|warning$",
    re.IGNORECASE,
)
_GAVE_UP = re.compile(r"this is a permanent error|given up|giving up", re.IGNORECASE)
# A temporary-looking reply code in a message that nonetheless reports a final failure.
_FINAL = re.compile(
    r"permanent|given up|not going to try again|too long|giving up|failed|"
    r"could not be delivered",
    re.IGNORECASE,
)


def _is_warning(message: Message, text: str) -> bool:
    """Is this only a notice that delivery is still being tried?"""
    if _GAVE_UP.search(text):
        return False
    return bool(_WARNING_SUBJECT.search(_subject(message)) or _WARNING_TEXT.search(text))
