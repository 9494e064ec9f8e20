"""Reading and writing mail files: mbox (mboxrd), maildirs and folders of messages.

The mbox reader streams, so a multi-gigabyte mbox costs no more memory than its largest
message, and it gives back each message's bytes exactly as they were stored, CRLF line
endings included, so that an export imported again has the same sha256s.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import BinaryIO

FROM_LINE = b"From "
MMDF_SEPARATOR = b"\x01\x01\x01\x01"
_NO_SENDER = "MAILER-DAEMON"
_ESCAPED_FROM = re.compile(rb"^>+From ")
_NEEDS_ESCAPE = re.compile(rb"^>*From ", re.MULTILINE)
HEADER_SCAN = 256 * 1024  # how much of a file `looks_like_mail` reads for its header block
_FIELD = re.compile(rb"^([!-9;-~]+)[ \t]*:")  # a field name: printable ASCII but ':'
_MAIL_FIELDS = {
    b"from",
    b"to",
    b"cc",
    b"date",
    b"subject",
    b"message-id",
    b"received",
    b"return-path",
    b"mime-version",
    b"sender",
    b"delivered-to",
}


class MailFileError(ValueError):
    """A path that is not a mail file, maildir or folder Arsip can read."""


@dataclass(frozen=True)
class FoundMessage:
    """One message found in a mail file, a PST or an IMAP mailbox, and how much of the
    input it accounted for (bytes of a file, or one message of a mailbox)."""

    data: bytes
    consumed: int
    origin: str
    # Found in an mbox or MMDF file, whose format says it holds mail (a file of its own
    # has only its contents to say so: `looks_like_mail`)
    boxed: bool = False
    folder: str = ""  # the PST folder or IMAP mailbox it was found in (`archiver.folders`)
    uid: int = 0  # its IMAP UID, which lets a later import go on from there (0: not IMAP)
    # When its server received it (IMAP's INTERNALDATE); None: the import's own time
    received: datetime | None = None


def is_mbox(path: Path) -> bool:
    """An mbox starts with a `From ` separator line (some exports put blank lines first)."""
    with open(path, "rb") as handle:
        return handle.read(4096).lstrip(b"\r\n").startswith(FROM_LINE)


def read_mbox(handle: BinaryIO, origin: str) -> Iterator[FoundMessage]:
    """Split an mbox into messages, undoing mboxrd `>From ` quoting.

    A `From ` line starts a message only at the top of the file or after an empty line,
    which keeps unquoted `From ` lines inside bodies (mboxo files) where they belong. The
    empty line before each separator belongs to the format, not to the message.
    """
    lines: list[bytes] = []
    consumed = 0
    previous_blank = True
    started = False
    for line in handle:
        if line.startswith(FROM_LINE) and previous_blank:
            if started:
                yield FoundMessage(_mbox_message(lines), consumed, origin, boxed=True)
            lines = []
            consumed = len(line)
            started = True
            previous_blank = False
            continue
        consumed += len(line)
        previous_blank = line in (b"\n", b"\r\n")
        if started:
            lines.append(line[1:] if _ESCAPED_FROM.match(line) else line)
    if started:
        yield FoundMessage(_mbox_message(lines), consumed, origin, boxed=True)


def _mbox_message(lines: list[bytes]) -> bytes:
    if lines and lines[-1] == b"\n":
        lines = lines[:-1]
    return b"".join(lines)


def mbox_entry(data: bytes, sender: str, when: datetime) -> bytes:
    """One message as mboxrd: separator line, quoted `From ` lines, trailing empty line."""
    stamp = time.asctime(when.timetuple())
    body = _NEEDS_ESCAPE.sub(rb">\g<0>", data)
    if not body.endswith(b"\n"):
        body += b"\n"
    separator = f"From {separator_sender(sender)} {stamp}\n".encode("ascii")
    return separator + body + b"\n"


def separator_sender(sender: str) -> str:
    """The sender as an mbox `From ` line can carry it: ASCII without spaces.

    Readers (Python's `mailbox`, and every tool built on it) decode that line as ASCII and
    split it at spaces. An internationalised domain is written in its IDNA (punycode) form;
    a sender that still is not plain ASCII (a UTF-8 local part) becomes `MAILER-DAEMON`, as
    for mail without a sender. The message's own bytes keep the real address.
    """
    local, at, domain = sender.strip().rpartition("@")
    if at and not domain.isascii():
        try:
            sender = f"{local}@{domain.encode('idna').decode('ascii')}"
        except UnicodeError:
            return _NO_SENDER
    if not sender or not sender.isascii() or not sender.isprintable() or " " in sender:
        return _NO_SENDER
    return sender


def iter_path(
    path: Path, set_aside: Callable[[Path], bool] | None = None
) -> Iterator[FoundMessage]:
    """Every message under `path`: an mbox or MMDF file, a message file, a maildir, a folder.

    Folders are walked in name order; a maildir's `tmp/` (half-delivered files) and hidden
    files are skipped, and any file in the tree that starts with `From ` is read as mbox.
    A file of a folder that `set_aside` takes (a PST, which the caller reads another way)
    is not read here at all.
    """
    if path.is_file():
        yield from _iter_file(path)
        return
    if not path.is_dir():
        raise MailFileError(f"{path}: no such file or folder")
    for child in sorted(path.rglob("*")):
        relative = child.relative_to(path).parts
        if any(part.startswith(".") for part in relative) or "tmp" in relative[:-1]:
            continue
        if child.is_file() and not (set_aside is not None and set_aside(child)):
            yield from _iter_file(child)


def read_mmdf(data: bytes, origin: str) -> Iterator[FoundMessage]:
    """Split an MMDF file: each message sits between two lines of four ^A characters."""
    for chunk in data.split(MMDF_SEPARATOR):
        message = chunk.removeprefix(b"\r\n").removeprefix(b"\n")
        if message.strip():
            yield FoundMessage(message, len(chunk) + len(MMDF_SEPARATOR), origin, boxed=True)


def _iter_file(path: Path) -> Iterator[FoundMessage]:
    if is_mbox(path):
        with open(path, "rb") as handle:
            yield from read_mbox(handle, str(path))
        return
    data = path.read_bytes()
    if data.startswith(MMDF_SEPARATOR):
        yield from read_mmdf(data, str(path))
    else:
        yield FoundMessage(data, len(data), str(path))


def looks_like_mail(data: bytes) -> bool:
    """Whether `data` starts as a message does (after any blank lines): with an RFC 5322
    header field (`Name: value`), in a block of fields (and their indented continuations)
    that names at least one field mail carries (From, Date, Received, Content-Type, ...).

    `arsip import` takes only files that pass: a JSON, HTML or binary file that strayed
    into a folder of mail has no such start. Mail broken further on (a malformed header
    line, a bad MIME part or charset) passes, and is archived flagged as ever.
    """
    lines = data[:HEADER_SCAN].lstrip(b"\r\n").splitlines()  # as `is_mbox`, blank lines first
    if not lines or not _FIELD.match(lines[0]):
        return False
    for line in lines:
        field = _FIELD.match(line)
        if field is None:
            if line[:1] in (b" ", b"\t"):
                continue
            break  # the end of the header block, or a broken line that ends it
        name = field.group(1).lower()
        if name in _MAIL_FIELDS or name.startswith(b"content-"):
            return True
    return False


def total_size(path: Path) -> int:
    """Bytes to read under `path`, for a progress bar."""
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
