"""The text of archived messages, derived from their raw blobs whenever it is needed.

The compressed raw message is the one copy of a message's text: the database keeps no
body or attachment text beside it. Search documents, snippets, message and thread pages,
feeds and the API all read text through `message_text`, which fetches the blob and runs
the parser's own text extraction, so they show and index exactly what archiving saw.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from archiver.parse import MessageText
from archiver.parse import message_text as text_of_raw
from archiver.store import BlobCorruptError, BlobMissingError, DirectoryBlobStore

log = logging.getLogger(__name__)

NO_TEXT = MessageText("", [])
__all__ = ["NO_TEXT", "MessageText", "message_text", "message_texts", "text_of_raw"]


def message_text(
    store: DirectoryBlobStore, sha256: str, *, attachments: bool = True
) -> MessageText:
    """The body and attachment texts of the message stored as blob `sha256`.

    Without `attachments` only the body is decoded (cheaper: no PDF is read). A blob that
    is gone or damaged has no text (`arsip verify` reports it); a blob sealed under a key
    this store lacks raises `BlobKeyError`, a configuration problem the operator must see.
    """
    try:
        raw = store.get(sha256)
    except (BlobMissingError, BlobCorruptError) as exc:
        log.warning("no text for blob %s: %s", sha256, exc)
        return NO_TEXT
    return text_of_raw(raw, attachments=attachments)


def message_texts(
    store: DirectoryBlobStore, sha256s: Iterable[str], *, attachments: bool = True
) -> dict[str, MessageText]:
    """`message_text` for several blobs, by sha256 (each blob read once)."""
    return {sha256: message_text(store, sha256, attachments=attachments) for sha256 in set(sha256s)}
