"""What `arsip stats` and `arsip show` print: plain dicts, ready for JSON."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from archiver.archive import ENVELOPE_FROM, ENVELOPE_TO
from archiver.locks import lock_holder
from archiver.models import Blob, Message
from archiver.search.indexer import queue_state
from archiver.spool import Spool


def stats(session: Session) -> dict[str, int | float | str | None]:
    """Counts an operator watches: archive size, compression, the two backlogs, and which
    process runs the scheduled jobs (PostgreSQL; "" while none does)."""
    # The backlogs first: a message the worker archives meanwhile then shows in the
    # archive's count, never in neither.
    spool_pending = Spool.pending(session)
    index_pending, oldest_age = queue_state(session)
    raw, stored = session.execute(
        select(
            func.coalesce(func.sum(Blob.size_raw), 0), func.coalesce(func.sum(Blob.size_stored), 0)
        )
    ).one()
    return {
        "messages": session.scalar(select(func.count()).select_from(Message)) or 0,
        "blobs": session.scalar(select(func.count()).select_from(Blob)) or 0,
        "blobs_bytes_raw": int(raw),
        "blobs_bytes_stored": int(stored),
        "spool_pending": spool_pending,
        "index_pending": index_pending,
        "index_oldest_age_s": None if oldest_age is None else round(oldest_age, 1),
        "scheduler": lock_holder(session, "scheduler"),
    }


def find_message(session: Session, message_id: str) -> Message | None:
    """The archived message with this Message-ID (angle brackets optional)."""
    wanted = message_id.strip().removeprefix("<").removesuffix(">")
    return session.scalars(
        select(Message).where(Message.message_id == wanted).order_by(Message.id).limit(1)
    ).first()


def describe(message: Message) -> dict[str, Any]:
    """One message's metadata as `arsip show --json` prints it."""

    def role(name: str) -> list[str]:
        return [a.address for a in message.addresses if a.role == name]

    def named(name: str) -> list[dict[str, str]]:
        return [{"name": a.name, "address": a.address} for a in message.addresses if a.role == name]

    return {
        "message_id": message.message_id,
        "subject": message.subject,
        "from": named("from"),
        "to": named("to"),
        "cc": named("cc"),
        "bcc": named("bcc"),
        "reply_to": named("reply_to"),
        "envelope_from": (role(ENVELOPE_FROM) or [message.envelope_from])[0],
        "envelope_recipients": sorted(role(ENVELOPE_TO)),
        "date": message.date.isoformat(),
        "received_at": message.received_at.isoformat(),
        "thread_id": message.thread_id,
        "in_reply_to": message.in_reply_to,
        "list_id": message.list_id,
        "sha256": message.sha256,
        "size": message.size,
        "source": message.source,
        "attachments": [
            {
                "filename": a.filename,
                "content_type": a.content_type,
                "size": a.size,
                "sha256": a.sha256,
                "has_text": a.text is not None,
            }
            for a in message.attachments
        ],
        "flags": list(message.flags),
    }
