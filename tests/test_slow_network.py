"""A slow resolver holds up nobody else: the spool worker asks DNS what a list post
needs before it opens its transaction, so while the answer is on its way the intake
takes mail in and other workers archive theirs, and the answer, once it comes, is used.

A real worker, list engine and database (SQLite and PostgreSQL) with a loopback DNS
server that keeps its answer until the test lets it go: the order of events is the
test's, not a clock's.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from email import message_from_bytes
from email.policy import SMTP

import dns.message
import pytest
from sqlalchemy import select

from archiver.core import Core
from archiver.models import Message
from archiver.spool import Incoming, Spool, new_queue_id
from archiver.worker import SpoolWorker
from lists.engine import ListEngine
from lists.models import MailingList, Member, OutboxMessage
from tests.support import ANN, BOB, JOURNAL, LIST, LIST_DOMAIN, Records, TinyDns, simple_message

DANA = "dana@strict.example"  # her domain publishes p=reject: the list must rewrite From
WAIT = 30.0  # seconds before a step that never comes fails the test


class HeldDns(TinyDns):
    """A loopback DNS server that sets `asked` when the question about `held` comes and
    answers it only once `release` is set: a resolver exactly as slow as the test wants."""

    def __init__(self, records: Records, held: str) -> None:
        self.held = held
        self.asked = threading.Event()
        self.release = threading.Event()
        super().__init__(records)

    def _answer(self, query: dns.message.Message) -> dns.message.Message:
        if query.question[0].name.to_text(omit_final_dot=True).lower() == self.held:
            self.asked.set()
            self.release.wait(WAIT)
        return super()._answer(query)


@pytest.fixture
def held_dns() -> Iterator[HeldDns]:
    server = HeldDns({"_dmarc.strict.example": ["v=DMARC1; p=reject"]}, "_dmarc.strict.example")
    yield server
    server.release.set()
    server.close()


@pytest.fixture
def lists_core(core: Core, held_dns: HeldDns) -> Core:
    """The core with the list engine plugged in, asking `held_dns` with a time limit
    longer than any step of the test; the list dev@ with members Dana, Ann and Bob."""
    core.extend([ListEngine])
    engine = core.extensions[-1]
    assert isinstance(engine, ListEngine)
    engine.dmarc = engine.poster.dmarc = held_dns.lookup(timeout=WAIT)
    with core.sessions.begin() as session:
        mlist = MailingList(name="dev", domain=LIST_DOMAIN)
        session.add(mlist)
        session.flush()
        session.add_all(Member(list_id=mlist.id, address=who) for who in (DANA, ANN, BOB))
    return core


def take_in(core: Core, sender: str, recipient: str, data: bytes) -> None:
    """Spool a message as the intake does before it answers 250."""
    Spool(core.engine).commit_batch(
        [
            Incoming(
                queue_id=new_queue_id(),
                envelope_from=sender,
                recipients=(recipient,),
                data=data,
                protocol="smtp",
                peer="127.0.0.1:40000",
                received_at=datetime.now(UTC),
                priority=0 if recipient == LIST else 1,
            )
        ]
    )


def in_background(worker: SpoolWorker) -> threading.Thread:
    thread = threading.Thread(target=worker.run_once)
    thread.start()
    return thread


def archived(core: Core) -> set[str]:
    with core.sessions() as session:
        return set(session.scalars(select(Message.message_id)))


def post_from(core: Core) -> str:
    """The From of the post as the outbox sends it to the members."""
    with core.sessions() as session:
        data = session.scalars(select(OutboxMessage.data).where(OutboxMessage.kind == "post")).one()
    return str(message_from_bytes(data, policy=SMTP)["From"])


def test_mail_is_taken_in_while_a_posts_dmarc_lookup_waits(
    lists_core: Core, held_dns: HeldDns
) -> None:
    core = lists_core
    take_in(core, DANA, LIST, simple_message("post@strict.example", sender=DANA, to=LIST))
    take_in(core, "alice@example.com", JOURNAL, simple_message("first@example.com"))
    first = in_background(core.worker())  # the post and the journal copy: one batch
    assert held_dns.asked.wait(WAIT)
    # The intake commits to the same database while the worker waits for DNS.
    take_in(core, "alice@example.com", JOURNAL, simple_message("second@example.com"))
    held_dns.release.set()
    first.join(WAIT)
    assert not first.is_alive()
    assert core.worker().run_once() == 1
    assert archived(core) == {"post@strict.example", "first@example.com", "second@example.com"}
    assert post_from(core) == f"Alice via dev <{LIST}>"  # the answer came in time to count


def test_another_worker_archives_while_the_first_waits_for_dns(
    lists_core: Core, held_dns: HeldDns, database_url: str
) -> None:
    if not database_url.startswith("postgresql"):
        pytest.skip("SQLite runs one worker per database")
    core = lists_core
    take_in(core, DANA, LIST, simple_message("post@strict.example", sender=DANA, to=LIST))
    take_in(core, "alice@example.com", JOURNAL, simple_message("first@example.com"))
    first = in_background(core.worker())
    assert held_dns.asked.wait(WAIT)
    take_in(core, "alice@example.com", JOURNAL, simple_message("second@example.com"))
    # The first worker's batch is claimed: the second takes only the new copy, and its
    # archiving does not wait for the first worker's DNS answer.
    assert core.worker().run_once() == 1
    assert archived(core) == {"second@example.com"}
    held_dns.release.set()
    first.join(WAIT)
    assert not first.is_alive()
    assert archived(core) == {"post@strict.example", "first@example.com", "second@example.com"}
    assert post_from(core) == f"Alice via dev <{LIST}>"
