"""`arsip import imap://...`: a remote account's mail into the archive, resumable by UID.

Each mailbox is read from where the last import of it stopped: its URL (no password),
UIDVALIDITY and the highest UID archived are kept in `import_cursors`, moved on in the
same transaction as each batch of mail, so an import cut short goes on from its last
batch. A server that renumbered a mailbox (a new UIDVALIDITY) has it read again from the
start; deduplication keeps that from archiving anything twice. Every message carries
its mailbox as its folder (`folder:`), and arrives when the server says it received it
(INTERNALDATE), as imapsync and offlineimap keep it: a message without a `Date:` is
dated by that, as mail the intake takes in is dated by its arrival.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from imapclient import IMAPClient
from sqlalchemy.orm import Session

from archiver.core import Core
from archiver.imap import ImapSource, connected, fetch, mailboxes, open_mailbox, uids_after
from archiver.importer import Importer
from archiver.mailfiles import FoundMessage
from archiver.models import ImportCursor


@dataclass
class MailboxReport:
    """What importing one mailbox did."""

    url: str
    folder: str
    read: int = 0
    added: int = 0
    duplicates: int = 0
    renumbered: bool = False  # its UIDVALIDITY changed: it was read from the start again
    index_waits: int = 0


def import_imap(
    core: Core,
    source: ImapSource,
    password: str,
    starttls: bool = False,
    cafile: Path | None = None,
    progress: bool = True,
    list_id: str | None = None,
    index_ahead: int = 0,
) -> list[MailboxReport]:
    """Archive the mail of `source`'s mailbox (or of every mailbox when it names none)
    that earlier imports did not; `ImapError` says why a mailbox could not be read."""
    with connected(source, password, starttls, cafile) as client:
        return [
            _import_mailbox(
                core, client, source.url(name), name, folder, progress, list_id, index_ahead
            )
            for name, folder in mailboxes(client, source)
        ]


def _import_mailbox(
    core: Core,
    client: IMAPClient,
    url: str,
    name: str,
    folder: str,
    progress: bool,
    list_id: str | None,
    index_ahead: int,
) -> MailboxReport:
    """Archive what mailbox `name` (at `url`) has above its cursor, moving the cursor on
    with each batch."""
    uidvalidity = open_mailbox(client, name)
    with core.sessions.begin() as session:
        after, renumbered = _resume(session, url, uidvalidity)
    uids = uids_after(client, after)
    found = (
        FoundMessage(
            item.data,
            1,
            f"{url};UID={item.uid}",
            boxed=True,
            folder=folder,
            uid=item.uid,
            received=item.received,
        )
        for item in fetch(client, uids)
    )

    def moved_on(session: Session, batch: list[FoundMessage]) -> None:
        _save(session, url, uidvalidity, max(message.uid for message in batch))

    with Importer(core, progress, len(uids), "msg", list_id, index_ahead) as run:
        run.show(folder)
        run.take(found, after_batch=moved_on)
    done = run.report
    return MailboxReport(
        url, folder, done.read, done.added, done.duplicates, renumbered, done.index_waits
    )


def _resume(session: Session, url: str, uidvalidity: int) -> tuple[int, bool]:
    """The UID to read on from in mailbox `url` (0: the start), and whether the server
    renumbered it since the last import; a new or renumbered mailbox's cursor is set to
    its start here."""
    cursor = session.get(ImportCursor, url)
    if cursor is not None and cursor.uidvalidity == uidvalidity:
        return cursor.last_uid, False
    _save(session, url, uidvalidity, 0)
    return 0, cursor is not None


def _save(session: Session, url: str, uidvalidity: int, last_uid: int) -> None:
    cursor = session.get(ImportCursor, url)
    if cursor is None:
        cursor = ImportCursor(source=url)
        session.add(cursor)
    cursor.uidvalidity = uidvalidity
    cursor.last_uid = last_uid
    cursor.updated_at = datetime.now(UTC)
