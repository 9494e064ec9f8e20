"""One message as a production holds it: its family of documents (the message, then each
attachment, numbered in a row), their native files and extracted text, and the load-file
row of each. Pure: the caller reads the message and writes the files.
"""

from __future__ import annotations

import hashlib
import mimetypes
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import PurePosixPath

from archiver.models import Attachment, Message
from archiver.parse import MessageText
from archiver.parse.parts import Part
from archiver.production.numbers import control_number
from archiver.production.plan import Planned

NATIVES, TEXT, DATA = "NATIVES", "TEXT", "DATA"
# The load file's columns, in order: the usual ones of review platforms, with the
# family's parent and every custodian a de-duplicated message was collected for
FIELDS = (
    "BegBates",
    "EndBates",
    "BegAttach",
    "EndAttach",
    "ParentBates",
    "Custodian",
    "AllCustodians",
    "From",
    "To",
    "CC",
    "BCC",
    "Subject",
    "DateSent",
    "FileName",
    "MD5Hash",
    "SHA256",
    "NativeLink",
    "TextLink",
    "MessageID",
    "ThreadID",
)
JOIN = "; "  # between the values of a field holding several (addresses, custodians)
_SUFFIX = re.compile(r"\.[a-z0-9]{1,10}")
_HEADER_ROLES = (("From", "from"), ("To", "to"), ("CC", "cc"), ("BCC", "bcc"))


@dataclass(frozen=True)
class Family:
    """A message's documents: load-file rows (the message first) and the files to write,
    as (path relative to the production, bytes). In mbox format the message's own
    native goes into the production's mbox instead of a file of its own."""

    rows: list[dict[str, str]]
    files: list[tuple[str, bytes]]


def family(
    message: Message,
    raw: bytes,
    text: MessageText,
    parts: dict[str, Part],
    doc: Planned,
    prefix: str,
    first: int,
    mbox: str | None = None,
) -> Family:
    """The documents of `message` (stored as `raw`), numbered from `first`.

    `text` is the message's extracted text and `parts` its attachments' bytes by sha256;
    `mbox` the production's mbox, where the message's native is, in mbox format.
    """
    number = control_number(prefix, first)
    attachments = sorted(message.attachments, key=lambda a: a.position)
    family_range = {
        "BegAttach": number,
        "EndAttach": control_number(prefix, first + len(attachments)),
        "Custodian": JOIN.join(doc.custodians),
        "AllCustodians": JOIN.join(doc.all_custodians),
    }
    files: list[tuple[str, bytes]] = []
    native = mbox or f"{NATIVES}/{number}.eml"
    if mbox is None:
        files.append((native, raw))
    text_path = f"{TEXT}/{number}.txt"
    files.append((text_path, _text_file(_email_text(message, text.body))))
    rows = [
        _row(
            number,
            family_range,
            **_people(message),
            Subject=message.subject,
            DateSent=iso_utc(message.date),
            FileName=PurePosixPath(native).name,
            **_hashes(raw),
            NativeLink=native,
            TextLink=text_path,
            MessageID=f"<{message.message_id}>",
            ThreadID=message.thread_id,
        )
    ]
    for offset, attachment in enumerate(attachments, start=1):
        own = control_number(prefix, first + offset)
        values = {"ParentBates": number, "FileName": attachment.filename or ""}
        part = parts.get(attachment.sha256)
        if part is not None:
            path = f"{NATIVES}/{own}{_extension(attachment)}"
            files.append((path, part.data))
            values.update(_hashes(part.data), NativeLink=path)
        else:  # the part could not be found again: say which one it was
            values["SHA256"] = attachment.sha256
        words = _attachment_text(text, attachment.position)
        if words is not None:
            path = f"{TEXT}/{own}.txt"
            files.append((path, _text_file(words)))
            values["TextLink"] = path
        rows.append(_row(own, family_range, **values))
    return Family(rows, files)


def iso_utc(moment: datetime) -> str:
    """A time as the load files write it: ISO 8601, UTC, to the second."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _row(number: str, family_range: dict[str, str], **values: str) -> dict[str, str]:
    row = dict.fromkeys(FIELDS, "")
    row.update(family_range, BegBates=number, EndBates=number, **values)
    return row


def _people(message: Message) -> dict[str, str]:
    """The From, To, CC and BCC fields: `Name <address>`, in address order."""
    found: dict[str, list[str]] = {field: [] for field, _ in _HEADER_ROLES}
    roles = {role: field for field, role in _HEADER_ROLES}
    for row in sorted(message.addresses, key=lambda a: a.address):
        if row.role in roles:
            shown = f"{row.name} <{row.address}>" if row.name else row.address
            found[roles[row.role]].append(shown)
    return {field: JOIN.join(values) for field, values in found.items()}


def _hashes(data: bytes) -> dict[str, str]:
    return {"MD5Hash": hashlib.md5(data).hexdigest(), "SHA256": hashlib.sha256(data).hexdigest()}


def _email_text(message: Message, body: str) -> str:
    """A message's extracted text: who, what and when, as the load file says it, then
    the body, so that the text alone reads as the mail did."""
    people = _people(message)
    lines = [f"{field}: {people[field]}" for field, _ in _HEADER_ROLES if people[field]]
    lines += [f"Subject: {message.subject}", f"Date: {iso_utc(message.date)}", "", body]
    return "\n".join(lines)


def _attachment_text(text: MessageText, position: int) -> str | None:
    return text.attachments[position] if position < len(text.attachments) else None


def _text_file(text: str) -> bytes:
    """Text as review platforms read it: UTF-8 with CRLF line ends."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    return "\r\n".join(lines).encode("utf-8", "replace")


def _extension(attachment: Attachment) -> str:
    """The native's suffix: its own name's when that is a plain one, else its type's."""
    suffix = PurePosixPath(attachment.filename or "").suffix.lower()
    if _SUFFIX.fullmatch(suffix):
        return suffix
    return mimetypes.guess_extension(attachment.content_type) or ".bin"
