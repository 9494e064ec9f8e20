"""The spool keeps the bytes a 250 promised until they are archived, and no longer."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import select

from archiver.core import Core
from archiver.models import SpoolEntry
from archiver.notify import NotifiedWaker
from archiver.spool import Incoming, Spool, SpoolError, new_queue_id
from tests.support import JOURNAL, simple_message


def incoming(n: int) -> Incoming:
    return Incoming(
        queue_id=new_queue_id(),
        envelope_from="alice@example.com",
        recipients=(JOURNAL,),
        data=simple_message(f"spool{n}@example.com"),
        protocol="smtp",
        peer="127.0.0.1:1",
        received_at=datetime.now(UTC),
        trusted=True,
    )


def test_committed_batches_can_be_read_back_exactly(core: Core) -> None:
    items = [incoming(n) for n in range(5)]
    core.spool.commit_batch(items[:2])
    core.spool.commit_batch(items[2:])
    with core.sessions() as session:
        entries = list(session.scalars(select(SpoolEntry).order_by(SpoolEntry.id)))
        assert [Spool.read(entry) for entry in entries] == [item.data for item in items]


def test_a_batch_that_fails_leaves_nothing_behind(core: Core) -> None:
    first = incoming(1)
    core.spool.commit_batch([first])
    duplicate_queue_id = Incoming(**{**first.__dict__, "data": b"other bytes\r\n"})
    with pytest.raises(SpoolError):
        core.spool.commit_batch([incoming(2), duplicate_queue_id])
    with core.sessions() as session:
        assert Spool.pending(session) == 1


def test_a_worker_in_another_process_hears_of_each_committed_batch(core: Core) -> None:
    """On PostgreSQL the intake and the workers may be different processes: a committed
    batch wakes a listening worker at once; a failed batch wakes nobody."""
    if core.engine.dialect.name != "postgresql":
        pytest.skip("one service owns a SQLite database; it wakes its worker directly")
    waker = NotifiedWaker(core.engine.url)
    assert waker.listening.wait(30)
    first = incoming(1)
    core.spool.commit_batch([first])
    assert waker.wait(10)
    waker.clear()
    with pytest.raises(SpoolError):
        core.spool.commit_batch([first])  # the same queue id again: rolled back
    assert not waker.wait(1)


def test_a_lists_mail_is_archived_before_a_backlog_of_journal_copies(core: Core) -> None:
    """A list post waits for people; journal copies wait for nobody."""
    backlog = [incoming(n) for n in range(5)]
    post = Incoming(**{**incoming(99).__dict__, "priority": 0})
    core.spool.commit_batch(backlog)
    core.spool.commit_batch([post])
    worker = core.worker()
    assert worker.run_once(limit=1) == 1
    with core.sessions() as session:
        left = set(session.scalars(select(SpoolEntry.queue_id)))
    assert post.queue_id not in left and len(left) == 5
