"""Sending digests: a list's collected posts go out once a day, or sooner when they pass
the list's size threshold, as a plain (RFC 1153) or MIME digest to those who asked."""

from __future__ import annotations

import logging

from sqlalchemy import delete, func, or_, select
from sqlalchemy.orm import Session, undefer

from archiver.deleted import DeletedMessages
from archiver.locks import transaction_lock
from lists.digests import DigestInfo, mime_digest, plain_digest
from lists.models import Delivery, DigestEntry, MailingList, Member, Role, utcnow
from lists.outbox import enqueue
from lists.wording import language_of, words

log = logging.getLogger(__name__)


def over_threshold(session: Session, mlist: MailingList) -> bool:
    """Whether the collected posts are past the list's digest size."""
    size = session.scalar(
        select(func.coalesce(func.sum(DigestEntry.size), 0)).where(DigestEntry.list_id == mlist.id)
    )
    return bool(mlist.digest_size_kb) and (size or 0) >= mlist.digest_size_kb * 1024


def send_digest(session: Session, mlist: MailingList) -> int:
    """Send the collected posts as this list's next digest issue; returns recipients.

    One at a time per list across the deployment: the scheduler's daily run and a worker
    whose post filled the digest must not both send the same posts.
    """
    transaction_lock(session, f"digest:{mlist.id}")
    session.flush()
    session.refresh(mlist)  # the issue number another sender may just have moved on
    entries = list(
        session.scalars(
            select(DigestEntry)
            .options(undefer(DigestEntry.data))
            .where(DigestEntry.list_id == mlist.id)
            .order_by(DigestEntry.id)
        )
    )
    if not entries:
        return 0
    info = DigestInfo(
        list_name=mlist.display_name or mlist.name,
        list_address=mlist.address,
        request_address=mlist.address_for("request"),
        volume=mlist.digest_volume,
        issue=mlist.digest_issue,
        date=utcnow(),
        description=mlist.description,
        footer=words(mlist).gettext("To leave the list, write to %(leave)s")
        % {"leave": mlist.address_for("leave")},
        language=language_of(mlist),
    )
    posts = [entry.data for entry in entries]
    sent = 0
    for mode, build in ((Delivery.PLAIN_DIGEST, plain_digest), (Delivery.MIME_DIGEST, mime_digest)):
        recipients = list(
            session.scalars(
                select(Member.address).where(
                    Member.list_id == mlist.id,
                    Member.role == Role.MEMBER,
                    Member.delivery == mode,
                    Member.disabled_reason.is_(None),
                )
            )
        )
        if not recipients:
            continue
        digest = build(info, posts)
        for name in ("List-Id", "List-Post", "List-Unsubscribe", "X-Loop"):
            del digest[name]
        digest["List-Id"] = f"{mlist.display_name or mlist.name} <{mlist.list_id}>"
        digest["List-Post"] = f"<mailto:{mlist.address}>"
        digest["List-Unsubscribe"] = f"<mailto:{mlist.address_for('leave')}>"
        digest["X-Loop"] = mlist.address
        sent += enqueue(
            session,
            digest.as_bytes(),
            mlist.address_for("bounces"),
            recipients,
            "digest",
            mlist.id,
        )
    session.execute(delete(DigestEntry).where(DigestEntry.id.in_([e.id for e in entries])))
    mlist.digest_issue += 1
    mlist.digest_last_sent_at = utcnow()
    log.info("digest %s issue %d sent to %d", mlist.address, info.issue, sent)
    return sent


def forget_posts(session: Session, deleted: DeletedMessages) -> int:
    """Take the posts that are copies of `deleted` messages out of every list's next
    digest (an erased or expired post is not mailed out again); returns how many. Only
    posts filed under one of their Message-IDs are read (and those kept before posts had
    one), so a sweep's batch costs no read of every post waiting."""
    maybe = or_(DigestEntry.message_id.in_(sorted(deleted.keys)), DigestEntry.message_id.is_(None))
    waiting = session.execute(select(DigestEntry.id, DigestEntry.data).where(maybe)).all()
    doomed = [entry_id for entry_id, data in waiting if data in deleted]
    if doomed:
        session.execute(delete(DigestEntry).where(DigestEntry.id.in_(doomed)))
    return len(doomed)
