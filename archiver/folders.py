"""The folders imported mail came from: a PST folder or an IMAP mailbox, per message.

A message is stored once however many times it is imported, so its folders are a set:
each import adds the folder it found the message in (`Inbox/Projects` from a PST, and
`Archive/2019` from an IMAP account) and none is ever taken away. Folder names keep the
source's own spelling with `/` between levels, whatever separator the source used.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from archiver.models import MessageFolder

MAX_FOLDER = 1000  # characters of a folder path kept: deeper paths are cut, not refused


def folder_path(parts: Iterable[str]) -> str:
    """A folder path from its levels, `/` between them: empty levels and surrounding space
    are dropped (`["Inbox", " Projects "]` -> `Inbox/Projects`)."""
    kept = [" ".join(part.split()) for part in parts]
    return "/".join(part for part in kept if part)[:MAX_FOLDER]


def add_folders(session: Session, folders: Iterable[tuple[int, str]]) -> set[int]:
    """Record (message id, folder) pairs not recorded yet, in the caller's transaction;
    returns the ids of the messages that gained a folder (their search entry is stale)."""
    wanted = {(pk, folder) for pk, folder in folders if folder}
    if not wanted:
        return set()
    have = {
        (pk, folder)
        for pk, folder in session.execute(
            select(MessageFolder.message_pk, MessageFolder.folder).where(
                MessageFolder.message_pk.in_({pk for pk, _folder in wanted})
            )
        )
    }
    new = sorted(wanted - have)
    if new:
        session.execute(
            insert(MessageFolder), [{"message_pk": pk, "folder": folder} for pk, folder in new]
        )
    return {pk for pk, _folder in new}


def folders_of(session: Session, message_pks: Iterable[int]) -> dict[int, list[str]]:
    """Each message's folders, in name order (messages without any are absent)."""
    found: dict[int, list[str]] = defaultdict(list)
    for pk, folder in session.execute(
        select(MessageFolder.message_pk, MessageFolder.folder)
        .where(MessageFolder.message_pk.in_(set(message_pks)))
        .order_by(MessageFolder.message_pk, MessageFolder.folder)
    ):
        found[pk].append(folder)
    return found
