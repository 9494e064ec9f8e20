"""The list engine as the core sees it: an `Extension` that owns the lists' addresses,
takes their mail in the spool worker, and runs fan-out and schedules in the background.
"""

from __future__ import annotations

import logging
import threading
from datetime import timedelta
from functools import partial

from apscheduler.schedulers.background import BackgroundScheduler
from sqlalchemy import delete, event, select
from sqlalchemy.orm import Session

from archiver.archive import RawMessage
from archiver.core import Core
from archiver.extensions import Handling, at_once_too
from lists import bouncing, digesting
from lists.addresses import Kind, ListAddress
from lists.arrival import Arrival, arrive
from lists.bounces import (
    Bounce,
    decode_verp,
    delivery_report,
    parse_bounce,
    split_verp_signature,
)
from lists.commands import Commands, command_sender
from lists.delivery import DeliveryLoop
from lists.directory import ListDirectory
from lists.dmarc import DmarcLookup
from lists.membership import Membership, members_with_role
from lists.models import (
    Action,
    DigestEntry,
    MailingList,
    OutboxMessage,
    OutboxRecipient,
    Pending,
    Role,
    utcnow,
)
from lists.outbox import enqueue
from lists.pipeline.dmarc import asks_policy
from lists.posting import Poster
from lists.rules.unverified_sender import asks_for_proof
from lists.tokens import VERP_SIGNATURE_CHARS, verp_signature_matches

log = logging.getLogger(__name__)

DIGEST_HOUR = 0  # UTC; daily digests go out then
OUTBOX_KEEP = timedelta(days=7)  # finished deliveries stay this long, for a look at them
WAKE_ON_COMMIT = "lists.wake_delivery"  # session.info key: the commit hook is in place


class ListEngine:
    """Mailing lists on top of the archive's core."""

    def __init__(self, core: Core) -> None:
        self.core = core
        settings = core.settings
        dns = settings.dns_server
        self.directory = ListDirectory(core.sessions)
        self.dmarc = DmarcLookup([dns.host], dns.port) if dns else DmarcLookup()
        self.membership = Membership(settings.public_url)
        self.poster = Poster(core.archive, self.dmarc, settings.public_url)
        self.commands = Commands(self.membership, self.poster)
        self.delivery = DeliveryLoop(core.sessions, settings)

    def claims(self, address: str) -> bool:
        """Whether `address` is one of a list's addresses."""
        return self.directory.parse(address) is not None

    def owns_domain(self, domain: str) -> bool:
        """Whether a list lives in `domain` (other addresses there are unknown users)."""
        return self.directory.has_domain(domain)

    def prepare(self, message: RawMessage, recipients: list[str]) -> Handling:
        """Parse the message once and, when it is a post, ask DNS what posting needs (the
        From domain's DMARC policy, a DKIM key); outside any transaction, each lookup within
        its time limit. The returned step does the rest in the worker's transaction."""
        posts = [
            where
            for where in map(self.directory.parse, recipients)
            if where is not None and where.kind is Kind.POST
        ]
        lists: list[MailingList] = []
        if posts:
            with self.core.sessions() as session:
                lists = [m for where in posts if (m := self._list(session, where)) is not None]
        arrival = arrive(
            message,
            self.dmarc,
            policy=any(asks_policy(mlist) for mlist in lists),
            proof=any(asks_for_proof(mlist) for mlist in lists),
        )
        return partial(self._handle, arrival=arrival, recipients=recipients)

    def _handle(self, session: Session, arrival: Arrival, recipients: list[str]) -> None:
        """Mail to list addresses: posts, commands, confirmations, owners' mail, bounces."""
        queue_id = arrival.raw.queue_id
        changed = False  # a post's handlers changed the message: the next address re-parses
        for recipient in recipients:
            where = self.directory.parse(recipient)
            mlist = None if where is None else self._list(session, where)
            if where is None or mlist is None:
                log.warning("queue_id=%s %s is no list address now", queue_id, recipient)
                continue
            if changed:
                arrival = arrival.again()
            self._dispatch(session, mlist, where, arrival)
            changed = where.kind is Kind.POST
        # deliver what this commits at once rather than at the next poll (once per batch)
        if not session.info.get(WAKE_ON_COMMIT):
            session.info[WAKE_ON_COMMIT] = True
            event.listen(session, "after_commit", lambda _: self.delivery.wake(), once=True)

    def start(self, stop: threading.Event) -> list[threading.Thread]:
        """Fan-out: each worker delivers the outbox rows it leases."""
        sender = threading.Thread(target=self.delivery.run, args=(stop,), name="list-delivery")
        sender.start()
        return [sender]

    def schedule(self, scheduler: BackgroundScheduler) -> None:
        """Daily digests (and, at once, any a dead scheduler missed), expiring
        confirmations, and forgetting old deliveries.

        The digest job sends what holds a post from before the digest hour: at that hour
        it is every digest, and at start only what a dead scheduler missed.
        """
        scheduler.add_job(
            self.send_digests,
            "cron",
            hour=DIGEST_HOUR,
            kwargs={"missed_only": True},
            id="digests",
            coalesce=True,
            **at_once_too(),
        )
        scheduler.add_job(self.expire_pending, "interval", hours=1, id="expire-pending")
        scheduler.add_job(self.purge_outbox, "interval", hours=1, id="purge-outbox")

    def send_digests(self, missed_only: bool = False) -> int:
        """Send every list's collected digest (the daily job); returns recipients.

        `missed_only` sends only digests holding a post from before the last daily run,
        which a scheduler that was down at that hour did not send.
        """
        sent = 0
        last_run = utcnow().replace(hour=DIGEST_HOUR, minute=0, second=0, microsecond=0)
        if last_run > utcnow():
            last_run -= timedelta(days=1)
        with self.core.sessions.begin() as session:
            query = select(MailingList)
            if missed_only:
                query = query.where(
                    MailingList.id.in_(
                        select(DigestEntry.list_id).where(DigestEntry.added_at < last_run)
                    )
                )
            for mlist in session.scalars(query):
                sent += digesting.send_digest(session, mlist)
        self.delivery.wake()
        return sent

    def expire_pending(self) -> int:
        """Drop confirmations nobody used in time."""
        with self.core.sessions.begin() as session:
            result = session.execute(delete(Pending).where(Pending.expires_at < utcnow()))
        return result.rowcount or 0

    def purge_outbox(self) -> int:
        """Forget deliveries finished a week ago, and messages nobody waits for any more."""
        cutoff = utcnow() - OUTBOX_KEEP
        with self.core.sessions.begin() as session:
            done = session.execute(
                delete(OutboxRecipient).where(
                    OutboxRecipient.status != "pending", OutboxRecipient.done_at < cutoff
                )
            )
            waiting = select(OutboxRecipient.message_id)
            session.execute(
                delete(OutboxMessage).where(
                    OutboxMessage.created_at < cutoff, OutboxMessage.id.not_in(waiting)
                )
            )
        return done.rowcount or 0

    def _dispatch(
        self, session: Session, mlist: MailingList, where: ListAddress, arrival: Arrival
    ) -> None:
        message = arrival.raw
        if where.kind is Kind.BOUNCES:
            self._bounce(session, mlist, where, message)
            return
        parsed = arrival.message
        if where.kind is Kind.POST:
            action = self.poster.receive(session, mlist, arrival)
            if action is Action.ACCEPT and digesting.over_threshold(session, mlist):
                digesting.send_digest(session, mlist)
        elif not message.envelope_from:
            # commands from the null sender are bounces or auto-replies: never answer them
            log.info("queue_id=%s ignored: no sender to answer", message.queue_id)
        elif where.kind is Kind.OWNER and message.verdict and message.verdict.virus:
            # mail to the owners is passed on whole: never pass on a virus
            log.info(
                "queue_id=%s to the owners dropped: %s", message.queue_id, message.verdict.virus
            )
        elif where.kind is Kind.OWNER:
            owners = members_with_role(session, mlist, Role.OWNER)
            enqueue(session, message.data, mlist.address_for("bounces"), owners, "notice", mlist.id)
        elif (sender := command_sender(parsed, message.envelope_from)) is None:
            log.info("queue_id=%s ignored: From names no single plain address", message.queue_id)
        elif where.kind is Kind.REQUEST:
            self.commands.request(session, mlist, parsed, sender)
        elif where.kind is Kind.JOIN:
            self.commands.join(session, mlist, sender)
        elif where.kind is Kind.LEAVE:
            self.commands.leave(session, mlist, sender)
        elif where.kind is Kind.CONFIRM:
            self.commands.confirm(session, mlist, where.detail, parsed, sender)

    def _bounce(
        self, session: Session, mlist: MailingList, where: ListAddress, message: RawMessage
    ) -> None:
        """A bounce counts against a member only when it is surely about mail the list sent
        them: it came back to the VERP address signed for them (the report, if readable,
        says how bad), or it is an RFC 3464 report about a message the outbox sent them.
        Anything else (a forged bounce naming a member, prose naming anyone) is logged and
        scores nothing."""
        signed = self._signed_recipient(mlist, where.detail)
        if signed is not None:
            reported = parse_bounce(message.data)
            found = [b for b in reported if b.address == signed] or reported[:1]
            permanent = found[0].permanent if found else not message.envelope_from
            status = found[0].status if found else None
            diagnostic = found[0].diagnostic if found else "bounce without a report"
            counted = [Bounce(signed, permanent, status, diagnostic)]
        else:
            # The plain bounce address, or an unsigned VERP address (mail sent before
            # signatures, or a forgery): only a report about a message the outbox sent.
            named = None
            if where.detail:
                decoded = decode_verp(f"{mlist.name}-bounces+{where.detail}@{mlist.domain}")
                named = decoded[1] if decoded else ""
            report = delivery_report(message.data)
            counted = [
                bounce
                for bounce in (report.bounces if report else [])
                if named in (None, bounce.address)
                and bouncing.was_sent(session, mlist, report.message_id, bounce.address)
            ]
        if counted:
            bouncing.record(session, mlist, counted)
        log.info(
            "queue_id=%s bounce for %s: %s",
            message.queue_id,
            mlist.address,
            ", ".join(b.address for b in counted)
            or "no recipient the list surely sent to (unsigned, or about no message it sent)",
        )

    def _signed_recipient(self, mlist: MailingList, detail: str) -> str | None:
        """The recipient a VERP `+detail` names under a valid signature, else None."""
        signature, rest = split_verp_signature(detail, VERP_SIGNATURE_CHARS)
        if not signature:
            return None
        decoded = decode_verp(f"{mlist.name}-bounces+{rest}@{mlist.domain}")
        if decoded is None:
            return None
        secret_key = self.core.settings.signing_key()
        if not verp_signature_matches(secret_key, mlist.address, decoded[1], signature):
            return None
        return decoded[1]

    def _list(self, session: Session, where: ListAddress) -> MailingList | None:
        return session.scalar(
            select(MailingList).where(
                MailingList.name == where.name, MailingList.domain == where.domain
            )
        )
