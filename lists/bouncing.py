"""What bounces do to members: a day with hard bounces raises a score by one (however many
posts bounced that day, so one bad day of a busy list is one point), and the score halves
every week; at the list's threshold delivery stops and the member and the owners are
told. A temporary failure is recorded but not scored: it may still be delivered."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from lists import notices
from lists.bounces import Bounce
from lists.membership import members_with_role
from lists.models import (
    BounceRecord,
    MailingList,
    Member,
    OutboxMessage,
    OutboxRecipient,
    Role,
    utcnow,
)
from lists.outbox import send_notice

log = logging.getLogger(__name__)

HALF_LIFE_DAYS = 7.0
SCORED_ONCE_PER = timedelta(days=1)


def decayed(score: float, since: datetime | None, now: datetime) -> float:
    """A bounce score after the time since the last bounce."""
    if since is None or score <= 0:
        return max(score, 0.0)
    days = max((now - since).total_seconds() / 86400, 0.0)
    return score * 0.5 ** (days / HALF_LIFE_DAYS)


def record(session: Session, mlist: MailingList, bounces: list[Bounce]) -> None:
    """Record bounces of this list's mail and act on members' scores."""
    now = utcnow()
    for bounce in bounces:
        session.add(
            BounceRecord(
                list_id=mlist.id,
                address=bounce.address,
                permanent=bounce.permanent,
                status=bounce.status or "",
                diagnostic=bounce.diagnostic[:2000],
                at=now,
            )
        )
        if not bounce.permanent:
            continue
        member = session.scalar(
            select(Member).where(
                Member.list_id == mlist.id,
                Member.address == bounce.address,
                Member.role == Role.MEMBER,
            )
        )
        if member is None:
            continue
        if member.last_bounce_at is not None and now - member.last_bounce_at < SCORED_ONCE_PER:
            continue  # this day has been counted
        member.bounce_score = decayed(member.bounce_score, member.last_bounce_at, now) + 1.0
        member.last_bounce_at = now
        log.info(
            "%s bounced for %s (%s), score %.1f",
            bounce.address,
            mlist.address,
            bounce.status or "no status",
            member.bounce_score,
        )
        if member.disabled_reason is None and member.bounce_score >= mlist.bounce_threshold:
            _disable(session, mlist, member)


def was_sent(session: Session, mlist: MailingList, message_id: str, address: str) -> bool:
    """Whether the outbox handed the smarthost `message_id` of `mlist` for `address`: what
    a delivery report that did not come back to a signed VERP address must be about."""
    if not message_id:
        return False
    found = session.scalar(
        select(OutboxRecipient.id)
        .join(OutboxMessage, OutboxMessage.id == OutboxRecipient.message_id)
        .where(
            OutboxMessage.list_id == mlist.id,
            OutboxMessage.message_id == message_id,
            OutboxRecipient.address == address,
            OutboxRecipient.status == "sent",
        )
        .limit(1)
    )
    return found is not None


def _disable(session: Session, mlist: MailingList, member: Member) -> None:
    member.disabled_reason = "bounce"
    log.warning("delivery to %s from %s stopped: too many bounces", member.address, mlist.address)
    notice = notices.delivery_disabled(mlist, member.address, member.bounce_score)
    # to the member, though it bounces: a mailbox that comes back finds the explanation
    send_notice(session, notice, "", mlist.id)
    for owner in members_with_role(session, mlist, Role.OWNER):
        copy = notices.delivery_disabled(mlist, member.address, member.bounce_score)
        del copy["To"]
        copy["To"] = owner
        send_notice(session, copy, "", mlist.id)
