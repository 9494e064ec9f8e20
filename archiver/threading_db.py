"""Placing a batch of new messages into threads, with the database as JWZ's id table.

One query loads what the database knows of every id the batch mentions; the batch is then
threaded in memory, in order, so a reply in the same batch as its parent finds it. Only
the new id-to-thread rows and the rare thread merges are written back.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import insert, select, update
from sqlalchemy.orm import Session

from archiver.models import Message, ThreadRef
from archiver.parse import ParsedMessage
from archiver.threads import (
    SUBJECT_WINDOW,
    is_reply_subject,
    new_thread_id,
    subject_key,
    thread_candidates,
)


class BatchThreader:
    """Assigns thread ids to the messages of one archiving batch."""

    def __init__(self, session: Session, messages: list[ParsedMessage]) -> None:
        self.session = session
        wanted = {
            mid
            for parsed in messages
            for mid in thread_candidates(parsed.message_id, parsed.references, parsed.in_reply_to)
        }
        self.known: dict[str, str] = {}
        for chunk in _chunks(sorted(wanted), 500):
            rows = session.execute(
                select(ThreadRef.message_id, ThreadRef.thread_id).where(
                    ThreadRef.message_id.in_(chunk)
                )
            )
            self.known.update({message_id: thread_id for message_id, thread_id in rows})
        self.new_refs: dict[str, str] = {}
        self.by_subject: dict[str, tuple[datetime, str]] = {}

    def assign(self, parsed: ParsedMessage) -> str:
        """The thread of `parsed`; merges threads the message shows to be one."""
        candidates = thread_candidates(parsed.message_id, parsed.references, parsed.in_reply_to)
        found = [self.known[mid] for mid in candidates if mid in self.known]
        target = found[0] if found else self._by_subject(parsed) or new_thread_id(candidates[0])
        merged = set(found) - {target}
        if merged:
            self._merge(merged, target)
        for mid in candidates:
            if mid not in self.known:
                self.new_refs[mid] = target
            self.known[mid] = target
        key = subject_key(parsed.subject)
        if key:
            self.by_subject[key] = (parsed.date, target)
        return target

    def flush(self) -> None:
        """Write the id-to-thread rows the batch created."""
        if self.new_refs:
            self.session.execute(
                insert(ThreadRef),
                [{"message_id": mid, "thread_id": tid} for mid, tid in self.new_refs.items()],
            )
            self.new_refs.clear()

    def _merge(self, merged: set[str], target: str) -> None:
        self.flush()
        self.session.execute(
            update(Message).where(Message.thread_id.in_(merged)).values(thread_id=target)
        )
        self.session.execute(
            update(ThreadRef).where(ThreadRef.thread_id.in_(merged)).values(thread_id=target)
        )
        for mid, thread_id in self.known.items():
            if thread_id in merged:
                self.known[mid] = target
        for key, (date, thread_id) in self.by_subject.items():
            if thread_id in merged:
                self.by_subject[key] = (date, target)

    def _by_subject(self, parsed: ParsedMessage) -> str | None:
        """The subject fallback: only for a reply that carries no references at all."""
        if parsed.references or parsed.in_reply_to or not is_reply_subject(parsed.subject):
            return None
        key = subject_key(parsed.subject)
        if not key:
            return None
        earliest = parsed.date - SUBJECT_WINDOW
        in_batch = self.by_subject.get(key)
        if in_batch and earliest <= in_batch[0] <= parsed.date:
            return in_batch[1]
        return self.session.scalar(
            select(Message.thread_id)
            .where(
                Message.subject_key == key,
                Message.date >= earliest,
                Message.date <= parsed.date,
            )
            .order_by(Message.date.desc())
            .limit(1)
        )


def _chunks(items: list[str], size: int) -> list[list[str]]:
    return [items[start : start + size] for start in range(0, len(items), size)]
