"""Messages being deleted, as the keepers of copies outside the archive recognise them.

A plug-in may keep the bytes of an archived message elsewhere (the list engine keeps a
post for the next digest). When the archive deletes the message (a retention sweep, a
data subject's erasure), those copies must go in the same transaction: a digest must not
mail out what was just erased. A copy is the message when the archive itself would
call it so, by the same key that merges journal copies (`archiver.archive.dedupe_key`);
its Message-ID is read first, so most copies are never parsed whole.
"""

from __future__ import annotations

import email.policy
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from email.parser import BytesHeaderParser

from sqlalchemy import select
from sqlalchemy.orm import Session

from archiver.archive import dedupe_key
from archiver.models import Message, utcnow
from archiver.parse import parse_message, synthesize_message_id
from archiver.parse.headers import first_id

_HEADERS = BytesHeaderParser(policy=email.policy.compat32)


@dataclass(frozen=True)
class DeletedMessages:
    """The dedupe keys of the messages being deleted, by their Message-ID."""

    keys: dict[str, frozenset[str]]

    @classmethod
    def of(cls, session: Session, pks: Sequence[int]) -> DeletedMessages:
        """The messages `pks`, read before their rows are deleted."""
        found: dict[str, set[str]] = defaultdict(set)
        rows = session.execute(
            select(Message.message_id, Message.dedupe_key).where(Message.id.in_(pks))
        )
        for message_id, key in rows:
            found[message_id].add(key)
        return cls({message_id: frozenset(keys) for message_id, keys in found.items()})

    def __bool__(self) -> bool:
        return bool(self.keys)

    def __contains__(self, raw: object) -> bool:
        """Whether the raw bytes `raw` are a copy of one of the messages."""
        if not isinstance(raw, bytes | bytearray | memoryview):
            return False
        raw = bytes(raw)
        keys = self.keys.get(message_id_of(raw))
        return keys is not None and dedupe_key(parse_message(raw, utcnow())) in keys


def message_id_of(raw: bytes) -> str:
    """The Message-ID the archive gives these bytes, read from the headers alone: what a
    keeper of copies files each copy under, to find the copies of deleted messages."""
    try:
        value = _HEADERS.parsebytes(raw).get("message-id")
        found = first_id(str(value) if value is not None else None, bare_needs_at=False)
    except Exception:  # whatever the bytes: the parser's fallback decides below
        found = None
    return found or synthesize_message_id(raw)
