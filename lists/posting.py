"""A post to a list: the rules decide, then it is delivered, held, rejected or dropped;
and a moderator's later decision on a held post."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage

from sqlalchemy import select
from sqlalchemy.orm import Session

from archiver.archive import Archive
from archiver.contentcheck.verdict import Verdict
from archiver.languages import Text
from lists import notices, pipeline
from lists.arrival import Arrival, from_domain, parse
from lists.dmarc import DmarcLookup
from lists.membership import has_role, is_banned, members_with_role
from lists.models import Action, HeldMessage, MailingList, Member, Role, utcnow
from lists.outbox import send_notice
from lists.pipeline.dmarc import asks_policy
from lists.rules import Post, decide
from lists.rules.content_check import ContentCheck
from lists.rules.unverified_sender import needs_proof
from lists.tokens import new_token
from lists.wording import LISTS

log = logging.getLogger(__name__)


@dataclass
class Poster:
    """What posting needs besides the post: the archive, DMARC lookups (for posts a
    moderator approves), the web's URL."""

    archive: Archive
    dmarc: DmarcLookup
    public_url: str

    def receive(self, session: Session, mlist: MailingList, arrival: Arrival) -> Action:
        """Run the rules on a post and act on their decision; returns the action.

        `arrival` carries the post parsed once and what DNS said of it (gathered before
        the transaction); its verdict is what the content checks said (None when off).
        """
        raw, message, sender = arrival.raw, arrival.message, arrival.sender
        verdict = raw.verdict
        roles = frozenset(
            session.scalars(
                select(Member.role).where(Member.list_id == mlist.id, Member.address == sender)
            )
        )
        moderated = bool(
            session.scalar(
                select(Member.moderated).where(
                    Member.list_id == mlist.id,
                    Member.address == sender,
                    Member.role == Role.MEMBER,
                )
            )
        )
        post = Post(
            mlist=mlist,
            message=message,
            size=len(raw.data),
            sender=sender,
            roles=roles,
            moderated=moderated,
            banned=is_banned(session, mlist, sender),
            verdict=verdict,
            vouched=not needs_proof(mlist, roles) or arrival.vouched,
        )
        decision = decide(post)
        subject = str(message.get("Subject", ""))
        log.info(
            "queue_id=%s post to %s from %s: %s%s",
            raw.queue_id,
            mlist.address,
            sender,
            decision.action,
            f" ({decision.rule}: {decision.reason})" if decision.rule else "",
        )
        if decision.action is Action.ACCEPT:
            self.deliver(
                session,
                mlist,
                message,
                sender,
                raw.received_at,
                arrival.from_policy,
                raw.queue_id,
                verdict,
            )
        elif decision.action is Action.HOLD:
            hold(
                session,
                mlist,
                raw.data,
                message,
                sender,
                decision.reason,
                decision.tell_sender,
                verdict,
                queue=mlist.page(self.public_url, "held"),
            )
        elif decision.rule == ContentCheck.name and verdict is not None and verdict.virus:
            virus_found(session, mlist, message, sender, verdict.virus)
        elif decision.action is Action.REJECT and sender:
            reply = notices.post_rejected(mlist, sender, subject, decision.reason)
            send_notice(session, reply, "", mlist.id)  # null sender: never bounce a bounce
        return decision.action

    def deliver(
        self,
        session: Session,
        mlist: MailingList,
        message: EmailMessage,
        sender: str,
        received_at: datetime,
        from_policy: str | None,
        queue_id: str = "",
        verdict: Verdict | None = None,
    ) -> None:
        """Send an accepted post through the pipeline (archive, digest, outbox); the
        archived copy keeps the content checks' `verdict`. `from_policy` is the DMARC
        policy of the From domain, looked up before the transaction."""
        delivery = pipeline.Delivery(
            mlist=mlist,
            message=message,
            sender=sender,
            session=session,
            archive=self.archive,
            from_policy=from_policy,
            public_url=self.public_url,
            received_at=received_at,
            queue_id=queue_id,
            verdict=verdict,
        )
        pipeline.run(delivery)
        log.info("queue_id=%s to %s: %s", queue_id, mlist.address, "; ".join(delivery.notes))

    def moderate(self, session: Session, held: HeldMessage, action: str, reason: str = "") -> Text:
        """A moderator's decision on a held post: approve, reject or discard; the answer,
        to be said in the moderator's language (a page's, or the list's in a reply)."""
        mlist = session.get(MailingList, held.list_id)
        if mlist is None:
            return LISTS.lazy_gettext("That list no longer exists.")
        data = session.scalar(select(HeldMessage.data).where(HeldMessage.id == held.id))
        session.delete(held)
        if action == "approve":
            verdict = Verdict.from_dict(held.verdict) if held.verdict else None
            message = parse(data or b"")
            # The caller's transaction is open: a moderator's decision is one post, and
            # the From domain's policy is mostly in the lookup's cache since it arrived.
            domain = from_domain(message) if asks_policy(mlist) else ""
            policy = self.dmarc.policy(domain) if domain else None
            self.deliver(session, mlist, message, held.sender, utcnow(), policy, verdict=verdict)
            return LISTS.lazy_gettext(
                "The post from %(sender)s was approved and sent to the list.", sender=held.sender
            )
        if action == "reject":
            why = reason or LISTS.lazy_gettext("a moderator rejected it")
            reply = notices.post_rejected(mlist, held.sender, held.subject, why)
            send_notice(session, reply, "", mlist.id)
            return LISTS.lazy_gettext("The post from %(sender)s was rejected.", sender=held.sender)
        return LISTS.lazy_gettext("The post from %(sender)s was discarded.", sender=held.sender)


def hold(
    session: Session,
    mlist: MailingList,
    data: bytes,
    message: EmailMessage,
    sender: str,
    reason: Text,
    tell_sender: bool = True,
    verdict: Verdict | None = None,
    queue: str = "",
) -> HeldMessage:
    """Keep a post for the moderators, tell them (with a link to the `queue` page, where
    they can read it before deciding) and, unless `tell_sender` is false, the poster
    why."""
    subject = str(message.get("Subject", ""))
    held = HeldMessage(
        token=new_token(),
        list_id=mlist.id,
        sender=sender,
        subject=subject[:1000],
        message_id=str(message.get("Message-ID", ""))[:1000],
        reason=str(reason),
        reason_text=reason.as_json(),
        data=data,
        verdict=verdict.as_dict() if verdict else None,
    )
    session.add(held)
    session.flush()
    moderators = members_with_role(session, mlist, Role.MODERATOR) + members_with_role(
        session, mlist, Role.OWNER
    )
    for moderator in dict.fromkeys(moderators):
        send_notice(
            session,
            notices.held_for_moderation(
                mlist, moderator, sender, subject, reason, held.token, data, queue
            ),
            mlist.address_for("bounces"),
            mlist.id,
        )
    if sender and tell_sender and not has_role(session, mlist, sender, Role.OWNER, Role.MODERATOR):
        send_notice(session, notices.post_held(mlist, sender, subject, reason), "", mlist.id)
    return held


def virus_found(
    session: Session, mlist: MailingList, message: EmailMessage, sender: str, signature: str
) -> None:
    """Tell the owners a post with a virus was dropped: who, what, which virus; never
    the message itself. The sender hears nothing (a virus's From is mostly forged)."""
    subject = str(message.get("Subject", ""))
    message_id = str(message.get("Message-ID", ""))
    for owner in members_with_role(session, mlist, Role.OWNER):
        send_notice(
            session,
            notices.virus_discarded(mlist, owner, sender, subject, message_id, signature),
            mlist.address_for("bounces"),
            mlist.id,
        )


def held_reason(held: HeldMessage) -> Text | str:
    """Why `held` waits, to be said in the reader's language; the English text of a post
    held before reasons were kept as texts."""
    if held.reason_text:
        return Text.from_json(LISTS, held.reason_text)
    return held.reason
