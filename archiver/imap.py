"""Reading a remote mailbox over IMAP, for `arsip import imap://user@host/MAILBOX`.

The connection is encrypted unless it stays on this machine: `imaps://` is TLS from the
first byte (port 993), `imap://` with `--starttls` upgrades before logging in (port 143)
and fails if the server cannot, and plain `imap://` is refused, before any connection,
for every host but a loopback one (a local server, or an SSH tunnel's end). Certificates
are checked against the system's authorities, or a bundle the operator names.

Mail is read, never changed: mailboxes are opened read-only (EXAMINE) and bodies fetched
with BODY.PEEK, so no message is marked seen. Each comes with its INTERNALDATE, when the
server received it, which is its arrival as the archive records it. The password is used
to log in and for nothing else: it is in no URL, log line or audit entry
(`ImapSource.url` has no place for it).
"""

from __future__ import annotations

import ipaddress
import ssl
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit

from imapclient import IMAPClient
from imapclient.exceptions import IMAPClientError, LoginError

from archiver.folders import folder_path
from archiver.parse import as_utc

PORTS = {"imap": 143, "imaps": 993}
FETCH_BATCH = 100  # messages per UID FETCH: a round trip each, a few MB at most
TIMEOUT = 120.0  # seconds a server may stay silent before the import gives up
_UNSELECTABLE = {b"\\noselect", b"\\nonexistent"}


class ImapError(Exception):
    """What went wrong with a mailbox, in one line for the operator."""


@dataclass(frozen=True)
class ImapSource:
    """A mailbox URL as the operator gave it: `imaps://alice@host/INBOX`; no mailbox
    (`imaps://alice@host/`) means every mailbox of the account."""

    scheme: str
    user: str
    host: str
    port: int
    mailbox: str

    def url(self, mailbox: str | None = None) -> str:
        """The URL of `mailbox` (by default the one given), port included: what the
        import is recorded and resumed under. It never holds a password."""
        name = self.mailbox if mailbox is None else mailbox
        host = f"[{self.host}]" if ":" in self.host else self.host
        user = quote(self.user, safe="")
        return f"{self.scheme}://{user}@{host}:{self.port}/{quote(name, safe='/')}"

    @property
    def loopback(self) -> bool:
        """Whether the server is on this machine: `localhost` or a loopback address."""
        if self.host.lower() == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False


def is_imap_url(text: str) -> bool:
    """Whether an `arsip import` argument names a mailbox rather than a file."""
    return text.lower().startswith(("imap://", "imaps://"))


def parse_source(text: str) -> ImapSource:
    """The mailbox `text` names; `ImapError` says what is wrong with it."""
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError as exc:
        raise ImapError(f"{text}: not a mailbox URL ({exc})") from None
    scheme = parts.scheme.lower()
    if parts.password is not None:
        raise ImapError(
            "put no password in the URL (process lists and shell histories show it): "
            "give it on stdin with --password-stdin"
        )
    if not parts.username or not parts.hostname:
        raise ImapError(
            f"{text}: give the account and the server, as in {scheme}://user@host/INBOX"
        )
    if parts.query or parts.fragment:
        raise ImapError(f"{text}: a mailbox URL has no ?query or #fragment here")
    return ImapSource(
        scheme=scheme,
        user=unquote(parts.username),
        host=parts.hostname,
        port=port or PORTS[scheme],
        mailbox=unquote(parts.path).strip("/"),
    )


def check_transport(source: ImapSource, starttls: bool) -> None:
    """Refuse, before connecting, a connection that would carry the password in the clear
    off this machine (see the module's docstring)."""
    if source.scheme == "imaps" and starttls:
        raise ImapError("--starttls is for imap:// URLs: imaps:// is encrypted from the start")
    if source.scheme == "imap" and not starttls and not source.loopback:
        raise ImapError(
            f"imap://{source.host} would send the password and the mail unencrypted: use "
            f"imaps://{source.host}/... (TLS, port 993), or add --starttls (port 143)"
        )


@contextmanager
def connected(
    source: ImapSource, password: str, starttls: bool, cafile: Path | None = None
) -> Iterator[IMAPClient]:
    """A logged-in client for `source` for as long as the block runs."""
    check_transport(source, starttls)
    where = f"{source.host}:{source.port}"
    try:
        context = ssl.create_default_context(cafile=str(cafile) if cafile else None)
    except (OSError, ssl.SSLError) as exc:
        raise ImapError(f"cannot read the certificate authorities in {cafile}: {exc}") from None
    try:
        client = IMAPClient(
            source.host,
            source.port,
            ssl=source.scheme == "imaps",
            ssl_context=context,
            timeout=TIMEOUT,
        )
    except ssl.SSLCertVerificationError as exc:
        raise ImapError(
            f"{where}: its TLS certificate is not trusted ({exc.verify_message})"
        ) from None
    except (OSError, IMAPClientError) as exc:
        raise ImapError(f"cannot reach the IMAP server {where}: {_reason(exc)}") from None
    try:
        with answers(where):
            if starttls:
                _start_tls(client, context, where)
            try:
                client.login(source.user, password)
            except LoginError as exc:
                raise ImapError(
                    f"{where} refused the login of {source.user}: {_reason(exc)}"
                ) from None
        yield client
    finally:
        with suppress(OSError, IMAPClientError):
            client.logout()


@contextmanager
def answers(where: str) -> Iterator[None]:
    """Turn a server's refusal or a broken connection inside the block into `ImapError`."""
    try:
        yield
    except (OSError, IMAPClientError) as exc:
        raise ImapError(f"{where}: {_reason(exc)}") from None


def _start_tls(client: IMAPClient, context: ssl.SSLContext, where: str) -> None:
    if not client.has_capability("STARTTLS"):
        raise ImapError(f"{where} does not offer STARTTLS: use imaps:// if it has TLS on port 993")
    try:
        client.starttls(context)
    except ssl.SSLCertVerificationError as exc:
        raise ImapError(
            f"{where}: its TLS certificate is not trusted ({exc.verify_message})"
        ) from None


def mailboxes(client: IMAPClient, source: ImapSource) -> list[tuple[str, str]]:
    """The mailboxes to read, as (the server's name, the folder path with `/` between
    levels): the one `source` names, or every one that holds mail, INBOX first."""
    with answers(source.host):
        listed = client.list_folders()
    found = {name: _folder(name, delimiter) for _flags, delimiter, name in listed}
    if source.mailbox:
        if source.mailbox in found:
            return [(source.mailbox, found[source.mailbox])]
        if source.mailbox.upper() == "INBOX":  # its name is case-insensitive
            inbox = next((name for name in found if name.upper() == "INBOX"), None)
            if inbox is not None:
                return [(inbox, found[inbox])]
        names = ", ".join(sorted(found)) or "none"
        raise ImapError(f"no mailbox {source.mailbox!r} on {source.host} (it has: {names})")
    selectable = [
        (name, found[name])
        for flags, _delimiter, name in listed
        if not _UNSELECTABLE & {flag.lower() for flag in flags}
    ]
    return sorted(selectable, key=lambda pair: (pair[0].upper() != "INBOX", pair[1].lower()))


def _folder(name: str, delimiter: bytes | None) -> str:
    separator = delimiter.decode("ascii", "replace") if delimiter else None
    return folder_path(name.split(separator) if separator else [name])


def open_mailbox(client: IMAPClient, name: str) -> int:
    """Open `name` read-only (nothing in it can change); returns its UIDVALIDITY."""
    with answers(name):
        answer = client.select_folder(name, readonly=True)
    return int(answer[b"UIDVALIDITY"])


def uids_after(client: IMAPClient, last_uid: int) -> list[int]:
    """The UIDs above `last_uid` in the open mailbox, oldest first. (`n:*` always names
    the newest message, even below n: it is left out then.)"""
    with answers("UID SEARCH"):
        found = client.search(["UID", f"{last_uid + 1}:*"])
    return sorted(uid for uid in found if uid > last_uid)


@dataclass(frozen=True)
class Fetched:
    """One message of a mailbox: its UID, its bytes, and when the server received it
    (INTERNALDATE, in UTC; None if the server gave none)."""

    uid: int
    data: bytes
    received: datetime | None


def fetch(client: IMAPClient, uids: list[int]) -> Iterator[Fetched]:
    """Each message of `uids`, in that order, `FETCH_BATCH` at a time; one expunged
    since `uids_after` is passed over."""
    client.normalise_times = False  # INTERNALDATE with its zone, not as local time
    for start in range(0, len(uids), FETCH_BATCH):
        batch = uids[start : start + FETCH_BATCH]
        with answers("UID FETCH"):
            answer = client.fetch(batch, ["BODY.PEEK[]", "INTERNALDATE"])
        for uid in batch:
            found = answer.get(uid, {})
            data = found.get(b"BODY[]")
            if data is not None:
                yield Fetched(uid, data, _utc(found.get(b"INTERNALDATE")))


def _utc(moment: object) -> datetime | None:
    """An INTERNALDATE as imapclient reads it, in UTC (None: the server gave none)."""
    return as_utc(moment) if isinstance(moment, datetime) else None


def _reason(exc: BaseException) -> str:
    """An exception's own words, without the b'...' imaplib leaves round a server's."""
    if isinstance(exc, OSError):
        return exc.strerror or str(exc) or type(exc).__name__
    text = str(exc.args[0]) if exc.args else ""
    if text[:2] in ("b'", 'b"') and text[-1:] == text[1:2]:
        text = text[2:-1]
    return text or type(exc).__name__
