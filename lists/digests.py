"""Digest builders: many list posts bundled into one message, in the two forms Mailman sends.

Subscribers who take digests get either an RFC 1153 plain-text digest (one text body that
any mail reader shows and that bursting tools can split back into messages) or a MIME
digest (the original messages intact as message/rfc822 parts). Both are pure functions of
the list's description and the raw posts: the caller's pipeline adds the List-* headers and
sends the result, as with any other list message.

A digest carries every post of a period, so one broken post must never stop it: each post
is read defensively, and whatever cannot be understood is shown as raw text instead.
"""

from __future__ import annotations

import codecs
import contextlib
import email
import email.policy
import textwrap
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage, MIMEPart
from email.utils import format_datetime, getaddresses, make_msgid

from archiver.htmltext import html_to_text
from archiver.languages import catalogue
from lists.wording import TRANSLATIONS

# RFC 1153 separators: the long one ends the preamble, the short one ends each message.
PREAMBLE_SEPARATOR = "-" * 70
MESSAGE_SEPARATOR = "-" * 30

# Headers kept for each message in the plain digest, in this order (RFC 1153 keeps a few).
PLAIN_DIGEST_HEADERS = ("Date", "From", "To", "Cc", "Subject", "Message-ID")

# Embedded posts keep their header lines exactly as received: refolding long ones would
# change the bytes of someone else's message, and folding malformed headers is where the
# email package is most likely to fail.
_POLICY = email.policy.default.clone(refold_source="none")

# Codecs that turn bytes into something other than text; a charset label naming one is junk.
_NOT_CHARSETS = frozenset({"unicode-escape", "raw-unicode-escape", "idna", "punycode"})

_TOPIC_WIDTH = 65
_TOPIC_LINE_LIMIT = 70
_HEADER_WIDTH = 76
# Real mail nests a few levels; deeper structures are attacks, and their text is not worth
# walking for.
_MAX_DEPTH = 50


@dataclass(frozen=True)
class DigestInfo:
    """What a digest says about its list."""

    list_name: str  # display name, e.g. "dev"
    list_address: str  # posting address, e.g. "dev@lists.example.com"
    request_address: str  # e.g. "dev-request@lists.example.com"
    volume: int
    issue: int
    date: datetime  # aware UTC
    description: str = ""
    footer: str = ""  # plain text appended at the end (unsubscribe instructions etc.)
    language: str = "en"  # of the masthead and the part descriptions; the subject is Mailman's


@dataclass(frozen=True)
class _Post:
    """One raw post, read once and described the way both digest forms need it."""

    subject: str
    sender: str
    headers: tuple[tuple[str, str], ...]
    text: str
    message: EmailMessage | None


def _words(info: DigestInfo) -> Callable[[str], str]:
    """`gettext` in the digest's language."""
    return catalogue(TRANSLATIONS, info.language).gettext


def _plural(info: DigestInfo) -> Callable[[str, str, int], str]:
    """`ngettext` in the digest's language."""
    return catalogue(TRANSLATIONS, info.language).ngettext


def digest_subject(info: DigestInfo) -> str:
    """Return the digest's subject in Mailman's wording, which subscribers' filters expect."""
    return f"{_one_line(info.list_name)} Digest, Vol {info.volume}, Issue {info.issue}"


def plain_digest(info: DigestInfo, messages: list[bytes]) -> EmailMessage:
    """An RFC 1153 plain-text digest of the raw `messages` (in order).

    The body is the masthead and table of contents, a line of 70 dashes, then each message
    (a few headers, a blank line, its text) followed by a line of 30 dashes, then the footer
    and the sign-off. Body lines that would read as a separator are indented by one space,
    so splitting on the separators always gives back the messages.
    """
    posts = [_read(raw) for raw in messages]
    parts = [_preamble(info, posts), PREAMBLE_SEPARATOR, ""]
    for post in posts:
        for name, value in post.headers:
            parts.extend(
                textwrap.wrap(
                    f"{name}: {value}",
                    width=_HEADER_WIDTH,
                    subsequent_indent="\t",
                    break_long_words=False,
                    break_on_hyphens=False,
                )
            )
        parts.extend(["", _escape_separators(post.text), "", MESSAGE_SEPARATOR, ""])
    footer = _escape_separators(info.footer or "")
    if footer:
        parts.extend([footer, ""])
    _ = _words(info)
    sign_off = _("End of %(digest)s") % {"digest": digest_subject(info)}
    parts.extend([sign_off, "*" * len(sign_off)])

    digest = _envelope(info)
    _set_text(digest, "\n".join(parts) + "\n")
    return digest


def mime_digest(info: DigestInfo, messages: list[bytes]) -> EmailMessage:
    """A MIME digest: multipart/mixed with a text/plain table of contents, then a
    multipart/digest holding each message as message/rfc822, then the footer as text/plain.

    The posts are embedded as received, so readers can reply to each one and see its
    attachments. The footer part is left out when the list has no footer.
    """
    posts = [_read(raw) for raw in messages]
    count = len(posts)

    contents = MIMEPart(policy=_POLICY)
    _set_text(contents, _preamble(info, posts))
    ngettext = _plural(info)
    contents["Content-Description"] = ngettext(
        "Today's Topics (%(count)s message)", "Today's Topics (%(count)s messages)", count
    ) % {"count": count}

    bundle = MIMEPart(policy=_POLICY)
    bundle["Content-Type"] = "multipart/digest"
    bundle.set_payload([])
    for raw, post in zip(messages, posts, strict=True):
        bundle.attach(_embedded(raw, post))

    digest = _envelope(info)
    digest.make_mixed()
    digest.attach(contents)
    digest.attach(bundle)
    footer = _clean(info.footer or "").strip("\n")
    if footer.strip():
        closing = MIMEPart(policy=_POLICY)
        _set_text(closing, footer + "\n")
        _ = _words(info)
        closing["Content-Description"] = _("Digest Footer")
        digest.attach(closing)
    return digest


def _envelope(info: DigestInfo) -> EmailMessage:
    """Headers shared by both digest forms; List-* headers are the sending pipeline's job."""
    digest = EmailMessage(policy=_POLICY)
    digest["From"] = info.request_address
    digest["To"] = info.list_address
    digest["Subject"] = digest_subject(info)
    digest["Date"] = format_datetime(info.date)
    digest["Message-ID"] = make_msgid(domain=_list_domain(info))
    digest["MIME-Version"] = "1.0"
    digest["Precedence"] = "list"
    return digest


def _list_domain(info: DigestInfo) -> str:
    """The domain for the digest's Message-ID: the list's own, in ASCII form.

    ``make_msgid`` would otherwise ask the resolver for this host's name, which is slow and
    names the wrong machine.
    """
    for address in (info.list_address, info.request_address):
        domain = address.rpartition("@")[2].strip().strip(">").lower()
        if "@" in address and domain:
            try:
                return domain.encode("idna").decode("ascii")
            except UnicodeError:
                continue
    return "localhost"


def _preamble(info: DigestInfo, posts: list[_Post]) -> str:
    """Masthead and table of contents, shared by the plain digest and the MIME digest."""
    name = _one_line(info.list_name)
    _ = _words(info)
    lines = [digest_subject(info), ""]
    description = _escape_separators(info.description or "")
    if description:
        lines.extend([description, ""])
    lines.extend(
        [
            _("Send %(name)s mailing list submissions to") % {"name": name},
            f"\t{info.list_address}",
            "",
            _("To subscribe or unsubscribe, or for help, write to"),
            f"\t{info.request_address}",
            "",
            _("When replying, please edit your Subject line so it is more specific than"),
            _('"Re: Contents of %(name)s digest..."') % {"name": name},
            "",
            _("Today's Topics:"),
            "",
        ]
    )
    for number, post in enumerate(posts, start=1):
        lines.extend(_topic_lines(number, post.subject, post.sender))
    lines.append("")
    return "\n".join(lines)


def _topic_lines(number: int, subject: str, sender: str) -> list[str]:
    """One table-of-contents entry, "   1. Subject (Sender)", wrapped as Mailman wraps it."""
    lines = textwrap.wrap(
        f"{number:2}. {subject}",
        width=_TOPIC_WIDTH,
        break_long_words=False,
        break_on_hyphens=False,
    )
    if sender:
        by = f" ({sender})"
        if len(lines[-1]) + len(by) > _TOPIC_LINE_LIMIT:
            lines.append(by.strip())
        else:
            lines[-1] += by
    return ["  " + lines[0]] + ["      " + line for line in lines[1:]]


def _read(raw: bytes) -> _Post:
    """Describe one raw post; never raises, because one bad post must not lose the digest."""
    try:
        message = email.message_from_bytes(raw, policy=_POLICY)
        headers = tuple(
            (name, value) for name in PLAIN_DIGEST_HEADERS if (value := _header(message, name))
        )
        subject = _header(message, "Subject") or "(no subject)"
        sender = _sender(message)
    except Exception:
        return _Post("(no subject)", "", (), _decode(raw, None), None)
    try:
        text = _body_text(message)
    except Exception:
        text = _decode(_raw_body(raw), None)
    return _Post(subject, sender, headers, text, message)


def _header(message: EmailMessage, name: str) -> str:
    """A header's decoded value on one line, or "" when absent or unreadable."""
    try:
        value = message.get(name)
        text = "" if value is None else str(value)
    except Exception:
        # The structured parse failed; the raw value still says something.
        found = [value for key, value in message.raw_items() if key.lower() == name.lower()]
        text = str(found[0]) if found else ""
    return _one_line(_clean(text))


def _sender(message: EmailMessage) -> str:
    """The first author's display name, or the address when there is no name."""
    try:
        addresses = message["From"].addresses
        first = addresses[0]
        return _one_line(_clean(first.display_name or first.addr_spec))
    except Exception:
        pairs = getaddresses([_header(message, "From")])
        if not pairs:
            return ""
        return _one_line(pairs[0][0] or pairs[0][1])


def _body_text(message: EmailMessage) -> str:
    """The readable text of a post: its best text part, with dropped attachments named.

    Plain text is preferred to HTML wherever it is in the message. Other renderings of the
    chosen text (the HTML twin of a plain part, with its inline images) are left out
    silently; everything else that is not inline text becomes a one-line note.
    """
    body = message.get_body(preferencelist=("plain", "html"))
    if body is None and message.get_content_maintype() == "text":
        body = message
    leaves = list(_leaves(message))
    twin_root = None
    for leaf, ancestors in leaves:
        if leaf is body:
            twin_root = next(
                (a for a in reversed(ancestors) if a.get_content_type() == "multipart/alternative"),
                None,
            )
    chunks: list[str] = []
    notes: list[str] = []
    for leaf, ancestors in leaves:
        if leaf is body:
            chunks.append(_part_text(leaf))
        elif twin_root is not None and _is_other_rendering(leaf, ancestors, twin_root):
            continue
        elif leaf.get_content_maintype() == "multipart":
            # A multipart without a usable boundary: its raw text is all there is to show.
            chunks.append(_decode(_payload(leaf), None))
        elif leaf.get_content_type() == "text/plain" and not _is_named_attachment(leaf):
            chunks.append(_part_text(leaf))
        else:
            notes.append(_attachment_note(leaf))
    text = "\n\n".join(chunk.strip("\n") for chunk in chunks if chunk.strip())
    if notes:
        text = "\n\n".join(filter(None, [text, "\n".join(notes)]))
    return text


def _leaves(message: EmailMessage) -> Iterator[tuple[EmailMessage, list[EmailMessage]]]:
    """Yield every leaf part in document order with its multipart ancestors, outermost first.

    Iterative and depth-capped, so hostile nesting costs neither the stack nor quadratic
    time. An attached message is a leaf: it is one attachment, not part of this post's text.
    """
    stack: list[tuple[EmailMessage, list[EmailMessage]]] = [(message, [])]
    while stack:
        part, ancestors = stack.pop()
        if part.get_content_maintype() == "multipart" and part.is_multipart():
            if len(ancestors) >= _MAX_DEPTH:
                continue
            children = [child for child in part.get_payload() if isinstance(child, EmailMessage)]
            stack.extend((child, [*ancestors, part]) for child in reversed(children))
        else:
            yield part, ancestors


def _is_other_rendering(
    leaf: EmailMessage, ancestors: list[EmailMessage], twin_root: EmailMessage
) -> bool:
    """Whether `leaf` is another rendering of the chosen text inside its multipart/alternative:
    an unnamed text part, or anything inside a multipart/related (the pictures of an HTML
    body). A named file in the other branch is a real attachment and still gets its note."""
    if not any(a is twin_root for a in ancestors):
        return False
    if leaf.get_content_maintype() == "text" and not _is_named_attachment(leaf):
        return True
    below = ancestors[[id(a) for a in ancestors].index(id(twin_root)) + 1 :]
    return any(a.get_content_type() == "multipart/related" for a in below)


def _is_named_attachment(part: EmailMessage) -> bool:
    """Whether the sender meant `part` as a file rather than as part of the message text."""
    return part.get_content_disposition() == "attachment" or part.get_filename() is not None


def _attachment_note(part: EmailMessage) -> str:
    """The line that stands in the plain digest for a part it does not carry."""
    try:
        name = _one_line(_clean(str(part.get_filename() or ""))) or "unnamed"
    except Exception:
        name = "unnamed"
    return f"[attachment: {name} ({part.get_content_type()}), not included]"


def _part_text(part: EmailMessage) -> str:
    """Decode a text part in its declared charset, turning HTML into readable lines."""
    try:
        label = part.get_content_charset()
    except Exception:
        label = None
    text = _decode(_payload(part), label)
    if part.get_content_subtype() == "html":
        text = html_to_text(text)
    return text


def _payload(part: EmailMessage) -> bytes:
    """A part's payload with its transfer encoding undone; raw bytes if it cannot be."""
    data = part.get_payload(decode=True)
    if isinstance(data, bytes):
        return data
    payload = part.get_payload()
    return payload.encode("utf-8", "surrogateescape") if isinstance(payload, str) else b""


def _decode(data: bytes, label: str | None) -> str:
    """Decode bytes declared as `label`, falling back to UTF-8, then Windows-1252.

    A missing, unknown or wrong label is common in real mail; the fallbacks read what the
    sender most likely meant rather than filling the digest with replacement characters.
    """
    candidates = []
    if label:
        with contextlib.suppress(LookupError, ValueError, TypeError):  # an unknown label
            codec = codecs.lookup(label.strip().strip("\"'"))
            if getattr(codec, "_is_text_encoding", True) and codec.name not in _NOT_CHARSETS:
                candidates.append(codec.name)
    for name in [*candidates, "utf-8"]:
        try:
            return data.decode(name)
        except (UnicodeError, ValueError):
            continue
    return data.decode("cp1252", "replace")


def _clean(text: str) -> str:
    """Turn raw 8-bit bytes (held by the email package as surrogate escapes) back into text."""
    if text.isascii():
        return text
    try:
        return _decode(text.encode("utf-8", "surrogateescape"), None)
    except UnicodeError:
        return text.encode("utf-8", "replace").decode("utf-8")


def _one_line(text: str) -> str:
    """Collapse all whitespace, line breaks included, so a header cannot forge digest lines."""
    return " ".join(text.split())


def _raw_body(raw: bytes) -> bytes:
    """The bytes after the header block, for a post whose structure could not be read."""
    ends = [(raw.find(sep), len(sep)) for sep in (b"\r\n\r\n", b"\n\n")]
    found = [(at, size) for at, size in ends if at >= 0]
    if not found:
        return raw
    at, size = min(found)
    return raw[at + size :]


def _escape_separators(text: str) -> str:
    """Normalise line breaks and indent lines that a digest burster would take as separators.

    RFC 1153 requires it for the 30-dash line; the 70-dash line is escaped too so that text
    in the preamble cannot end it early.
    """
    lines = [
        " " + line if line.rstrip() in (MESSAGE_SEPARATOR, PREAMBLE_SEPARATOR) else line
        for line in _clean(text).replace("\x00", "").splitlines()
    ]
    while lines and not lines[0].strip():
        lines.pop(0)
    while lines and not lines[-1].strip():
        lines.pop()
    return "\n".join(lines)


def _embedded(raw: bytes, post: _Post) -> MIMEPart:
    """A message/rfc822 part holding `post` as received, or as text if it cannot be sent."""
    part = MIMEPart(policy=_POLICY)
    message = post.message
    if message is not None:
        try:
            # Serialising must work now, not later in the caller's hands: an 8-bit body in
            # an unknown charset, for one, breaks the text (not the bytes) serialisation.
            message.as_bytes(policy=_POLICY)
            message.as_string(policy=_POLICY)
            part.set_content(message, cte="7bit" if raw.isascii() else "8bit")
            return part
        except Exception:
            part = MIMEPart(policy=_POLICY)
    stand_in = EmailMessage(policy=_POLICY)
    for name, value in post.headers:
        try:
            stand_in[name] = value
        except Exception:
            continue
    _set_text(stand_in, _escape_separators(post.text) + "\n")
    part.set_content(stand_in)
    return part


def _set_text(part: MIMEPart, text: str) -> None:
    """Set a UTF-8 text/plain body, never base64-encoded.

    Lines that fit the policy's line length go as they are (7bit or 8bit, as the email
    package picks); longer ones make the body quoted-printable. Left to itself the email
    package sometimes picks base64, which hides a plain digest from anyone reading or
    bursting it as text.
    """
    text = text.replace("\x00", "").encode("utf-8", "replace").decode("utf-8")
    longest = max((len(line) for line in text.encode("utf-8").splitlines()), default=0)
    limit = part.policy.max_line_length or longest
    cte = None if longest <= limit else "quoted-printable"
    part.set_content(text, charset="utf-8", cte=cte)
