"""Fan-out: the outbox, delivered to the smarthost by an asyncio loop in the worker.

Recipient rows are leased (their next attempt moved a few minutes ahead) in one
transaction, handed to the transport, and marked sent, failed or due again afterwards.
A crash between the lease and the marking leaves rows that come due again when the lease
runs out, so every recipient gets the post; only a crash between the smarthost's `250`
and our commit sends someone a second copy.

Personalised messages (the list's default) go one transaction per recipient, with a VERP
envelope sender signed for the recipient (so only real bounces score against a member)
and a signed one-click List-Unsubscribe link; the others go in
transactions of up to `BULK_RECIPIENTS` recipients grouped by domain.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections import defaultdict
from dataclasses import dataclass
from datetime import timedelta
from typing import TypeVar
from urllib.parse import quote

from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker, undefer

from archiver.config import Settings
from archiver.db import is_postgres
from lists import bouncing
from lists.bounces import Bounce, verp_address
from lists.models import MailingList, OutboxMessage, OutboxRecipient, utcnow
from lists.tokens import unsubscribe_signature, verp_signature
from lists.transport import Envelope, Outcome, Transport, transport_for

log = logging.getLogger(__name__)
T = TypeVar("T")

# Recipient rows leased at once: small enough that the first copies leave while a big
# list's rows are still being read, big enough to keep every connection busy.
BATCH = 2_000
BULK_RECIPIENTS = 50
LEASE = timedelta(minutes=5)
POLL_SECONDS = 0.05
GIVE_UP = timedelta(days=5)
FIRST_RETRY = 30.0  # seconds; doubles with each attempt
MAX_RETRY = 3600.0


@dataclass
class _Leased:
    row_id: int
    address: str
    message_id: int


class DeliveryLoop:
    """Delivers due outbox rows until stopped; `wake()` makes it look at once."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        settings: Settings,
        transport: Transport | None = None,
    ) -> None:
        self.sessions = sessions
        self.settings = settings
        self.transport = transport
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None

    def wake(self) -> None:
        """New rows were committed (any thread may say so): deliver them now rather than
        at the next poll."""
        loop, wake = self._loop, self._wake
        if loop is not None and wake is not None:
            loop.call_soon_threadsafe(wake.set)

    def run(self, stop: threading.Event) -> None:
        """The loop's thread body."""
        asyncio.run(self._main(stop))

    async def _main(self, stop: threading.Event) -> None:
        self._wake = asyncio.Event()
        self._loop = asyncio.get_running_loop()
        transport = self.transport or transport_for(
            self.settings.smarthost,
            self.settings.outgoing_dir,
            self.settings.outgoing_connections,
        )
        try:
            while not stop.is_set():
                try:
                    done = await self.deliver_due(transport)
                except Exception:
                    log.exception("outbox delivery failed; trying again shortly")
                    done = 0
                if not done:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), POLL_SECONDS)
                    self._wake.clear()
        finally:
            self._loop = None
            await transport.close()

    async def deliver_due(self, transport: Transport) -> int:
        """Deliver one batch of due rows; returns how many rows were tried."""
        leased, messages, lists = await asyncio.to_thread(self._lease)
        if not leased:
            return 0
        envelopes, owners = self._envelopes(leased, messages, lists)
        outcomes = await transport.send(envelopes)
        results = [
            (row, outcome)
            for rows, found in zip(owners, outcomes, strict=True)
            for row, outcome in zip(rows, found, strict=True)
        ]
        await asyncio.to_thread(self._record, results, messages)
        return len(leased)

    def _lease(self) -> tuple[list[_Leased], dict[int, OutboxMessage], dict[int, MailingList]]:
        now = utcnow()
        with self.sessions.begin() as session:
            query = (
                select(OutboxRecipient.id, OutboxRecipient.address, OutboxRecipient.message_id)
                .where(OutboxRecipient.status == "pending", OutboxRecipient.next_attempt_at <= now)
                .order_by(OutboxRecipient.id)
                .limit(BATCH)
            )
            if is_postgres(session.get_bind()):
                query = query.with_for_update(skip_locked=True)
            leased = [_Leased(*row) for row in session.execute(query)]
            if not leased:
                return [], {}, {}
            ids = [row.row_id for row in leased]
            for chunk in _chunks(ids, 5000):
                session.execute(
                    update(OutboxRecipient)
                    .where(OutboxRecipient.id.in_(chunk))
                    .values(next_attempt_at=now + LEASE)
                )
            message_ids = {row.message_id for row in leased}
            messages = {
                m.id: m
                for m in session.scalars(
                    select(OutboxMessage)
                    .options(undefer(OutboxMessage.data))
                    .where(OutboxMessage.id.in_(message_ids))
                )
            }
            list_ids = {m.list_id for m in messages.values() if m.list_id is not None}
            lists = {
                mlist.id: mlist
                for mlist in session.scalars(
                    select(MailingList).where(MailingList.id.in_(list_ids))
                )
            }
            session.expunge_all()
        return leased, messages, lists

    def _envelopes(
        self,
        leased: list[_Leased],
        messages: dict[int, OutboxMessage],
        lists: dict[int, MailingList],
    ) -> tuple[list[Envelope], list[list[_Leased]]]:
        envelopes: list[Envelope] = []
        owners: list[list[_Leased]] = []
        groups: dict[tuple[int, str], list[_Leased]] = defaultdict(list)
        for row in leased:
            message = messages[row.message_id]
            mlist = lists.get(message.list_id) if message.list_id is not None else None
            if message.personalize and mlist is not None:
                envelopes.append(self._personal(message, mlist, row.address))
                owners.append([row])
            else:
                groups[(row.message_id, row.address.rpartition("@")[2])].append(row)
        for (message_id, _), rows in groups.items():
            message = messages[message_id]
            for chunk in _chunks(rows, BULK_RECIPIENTS):
                recipients = tuple(row.address for row in chunk)
                envelopes.append(Envelope(message.sender, recipients, message.data))
                owners.append(chunk)
        return envelopes, owners

    def _personal(self, message: OutboxMessage, mlist: MailingList, address: str) -> Envelope:
        """One recipient's copy: VERP sender, and a one-click unsubscribe link of their own."""
        signature = unsubscribe_signature(self.settings.signing_key(), mlist.address, address)
        link = (
            f"{self.settings.public_url}/lists/{quote(mlist.address)}/unsubscribe"
            f"?address={quote(address)}&sig={signature}"
        )
        headers = (
            f"List-Unsubscribe: <{link}>,\r\n <mailto:{mlist.address_for('leave')}>\r\n"
            "List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n"
        ).encode()
        verp = verp_signature(self.settings.signing_key(), mlist.address, address)
        sender = verp_address(mlist.name, mlist.domain, address, verp)
        return Envelope(sender, (address,), headers + message.data)

    def _record(
        self, results: list[tuple[_Leased, Outcome]], messages: dict[int, OutboxMessage]
    ) -> None:
        now = utcnow()
        sent = [row.row_id for row, outcome in results if outcome.delivered]
        failed: list[tuple[_Leased, Outcome]] = []
        retry: list[tuple[_Leased, Outcome]] = []
        for row, outcome in results:
            if outcome.delivered:
                continue
            created = messages[row.message_id].created_at
            if outcome.permanent or now - created > GIVE_UP:
                failed.append((row, outcome))
            else:
                retry.append((row, outcome))
        with self.sessions.begin() as session:
            for chunk in _chunks(sent, 5000):
                session.execute(
                    update(OutboxRecipient)
                    .where(OutboxRecipient.id.in_(chunk))
                    .values(status="sent", done_at=now, last_reply="250")
                )
            for row, outcome in failed:
                session.execute(
                    update(OutboxRecipient)
                    .where(OutboxRecipient.id == row.row_id)
                    .values(status="failed", done_at=now, last_reply=_reply(outcome))
                )
            for row, outcome in retry:
                recipient = session.get(OutboxRecipient, row.row_id)
                if recipient is None:
                    continue
                recipient.attempts += 1
                recipient.next_attempt_at = now + _backoff(recipient.attempts)
                recipient.last_reply = _reply(outcome)
            self._bounces(session, failed, messages)
        if failed or retry:
            log.info(
                "outbox: %d delivered, %d failed, %d to retry", len(sent), len(failed), len(retry)
            )

    @staticmethod
    def _bounces(
        session: Session,
        failed: list[tuple[_Leased, Outcome]],
        messages: dict[int, OutboxMessage],
    ) -> None:
        """A refused or given-up recipient of a list's mail counts as a bounce."""
        by_list: dict[int, list[Bounce]] = defaultdict(list)
        for row, outcome in failed:
            list_id = messages[row.message_id].list_id
            if list_id is not None and messages[row.message_id].kind == "post":
                by_list[list_id].append(Bounce(row.address, True, None, _reply(outcome)))
        for list_id, bounces in by_list.items():
            mlist = session.get(MailingList, list_id)
            if mlist is not None:
                bouncing.record(session, mlist, bounces)


def _backoff(attempts: int) -> timedelta:
    """30 s, 1 min, 2 min, ... up to an hour between tries."""
    return timedelta(seconds=min(FIRST_RETRY * 2 ** max(attempts - 1, 0), MAX_RETRY))


def _reply(outcome: Outcome) -> str:
    return f"{outcome.code} {outcome.message}".strip()[:1000]


def _chunks(items: list[T], size: int) -> list[list[T]]:
    return [items[i : i + size] for i in range(0, len(items), size)]
