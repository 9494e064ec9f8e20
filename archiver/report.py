"""What `arsip stats` and `arsip show` print: plain dicts, ready for JSON."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from archiver.archive import ENVELOPE_FROM, ENVELOPE_TO
from archiver.contentcheck.verdict import CLAMD, SPAMD
from archiver.locks import lock_holder
from archiver.models import Blob, ContentCheck, Message
from archiver.search.indexer import queue_state
from archiver.spool import Spool

if TYPE_CHECKING:
    from archiver.contentcheck.checker import ContentChecker


def stats(session: Session) -> dict[str, int | float | str | None]:
    """Counts an operator watches: archive size, compression, the two backlogs, which
    process runs the scheduled jobs (PostgreSQL; "" while none does), and what the content
    checks found: messages checked, spam, with a virus, and left unchecked by a daemon that
    could not answer. Database only: `daemons` asks the daemons themselves."""
    # The backlogs first: a message the worker archives meanwhile then shows in the
    # archive's count, never in neither.
    spool_pending = Spool.pending(session)
    index_pending, oldest_age = queue_state(session)
    # Verdicts arrive with their messages: counted before them, a message archived
    # meanwhile cannot show as checked yet not archived.
    checks = _check_counts(session)
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
        **checks,
    }


def _check_counts(session: Session) -> dict[str, int]:
    checked, spam, virus, unchecked = session.execute(
        select(
            func.count(),
            func.count(case((ContentCheck.spam, 1))),
            func.count(ContentCheck.virus),
            func.count(case((ContentCheck.unchecked != "", 1))),
        )
    ).one()
    return {"checked": checked, "spam": spam, "virus": virus, "unchecked": unchecked}


def daemons(checker: ContentChecker | None) -> dict[str, bool | None]:
    """Whether spamd and clamd answer a PING now (None: not configured); up to two
    seconds when one is silent."""
    answers = checker.availability() if checker is not None else {}
    return {f"{name}_available": answers.get(name) for name in (SPAMD, CLAMD)}


def find_message(session: Session, message_id: str) -> Message | None:
    """The archived message with this Message-ID (angle brackets optional)."""
    wanted = message_id.strip().removeprefix("<").removesuffix(">")
    return session.scalars(
        select(Message).where(Message.message_id == wanted).order_by(Message.id).limit(1)
    ).first()


def content_checks(session: Session, message_pks: Iterable[int]) -> dict[int, ContentCheck]:
    """The content checks' verdicts on these messages, by message (never-checked ones are
    absent)."""
    pks = sorted(set(message_pks))
    if not pks:
        return {}
    rows = session.scalars(select(ContentCheck).where(ContentCheck.message_pk.in_(pks)))
    return {row.message_pk: row for row in rows}


def verdict(check: ContentCheck | None) -> dict[str, Any] | None:
    """What spamd and clamd said of a message, for `arsip show --json` and the API; None
    when it was never checked (archived before the checks, or with them switched off)."""
    if check is None:
        return None
    return {
        "checked_at": check.checked_at.isoformat(),
        "spam": check.spam,
        "spam_score": check.spam_score,
        "spam_threshold": check.spam_threshold,
        "spam_rules": _names(check.spam_rules),
        "virus": check.virus,
        "unchecked": _names(check.unchecked),
    }


def _names(joined: str) -> list[str]:
    return [name for name in joined.split(",") if name]


def describe(message: Message, check: ContentCheck | None) -> dict[str, Any]:
    """One message's metadata as `arsip show --json` prints it, with its content checks'
    verdict (`check`, from `content_checks`)."""

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
        "folders": [folder.folder for folder in message.folders],
        "sha256": message.sha256,
        "size": message.size,
        "source": message.source,
        "attachments": [
            {
                "filename": a.filename,
                "content_type": a.content_type,
                "size": a.size,
                "sha256": a.sha256,
                "has_text": a.has_text,
            }
            for a in message.attachments
        ],
        "flags": list(message.flags),
        "content_check": verdict(check),
    }
