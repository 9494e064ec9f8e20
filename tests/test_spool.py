"""The spool keeps the bytes a 250 promised until they are archived, and no longer."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import select

from archiver.models import SpoolEntry
from archiver.service import Core
from archiver.spool import Incoming, Spool, new_queue_id
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
    )


def test_committed_batches_can_be_read_back_exactly(core: Core) -> None:
    items = [incoming(n) for n in range(5)]
    core.spool.commit_batch(items[:2])
    core.spool.commit_batch(items[2:])
    with core.sessions() as session:
        entries = list(session.scalars(select(SpoolEntry).order_by(SpoolEntry.id)))
        assert [core.spool.read(entry) for entry in entries] == [item.data for item in items]


def test_the_segment_an_intake_appends_to_is_never_deleted_under_it(core: Core) -> None:
    core.spool.commit_batch([incoming(1)])
    with core.sessions.begin() as session:
        entries = list(session.scalars(select(SpoolEntry)))
        Spool.finish(session, [entry.id for entry in entries])
    segment = core.spool.directory / entries[0].segment
    with core.sessions() as session:
        core.spool.release(session, [segment.name])
    assert segment.exists(), "deleted while the intake still appends to it"
    core.spool.close()
    with core.sessions() as session:
        core.spool.release(session, [segment.name])
    assert not segment.exists()
