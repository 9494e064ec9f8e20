"""Real-world mail: every message of the corpus goes in over SMTP and is archived."""

from __future__ import annotations

import re
from datetime import UTC, datetime

from sqlalchemy import select

from archiver.archive import dedupe_key
from archiver.mailfiles import iter_path
from archiver.models import Message
from archiver.parse import parse_message
from tests.support import CORPUS, JOURNAL, NOT_MAIL


def corpus_messages() -> list[bytes]:
    """Every corpus message as an MTA puts it on the wire.

    mbox and MMDF files are split, other files are one message each; line endings become
    CRLF and a final line break is added where the file has none, as Postfix does.
    """
    files = sorted(p for p in CORPUS.rglob("*") if p.is_file() and p.suffix not in NOT_MAIL)
    messages = [found.data for path in files for found in iter_path(path)]
    wire = [re.sub(rb"\r?\n", b"\r\n", data) for data in messages]
    return [data if data.endswith(b"\r\n") else data + b"\r\n" for data in wire]


def test_every_corpus_message_is_accepted_and_archived(make_service) -> None:
    messages = corpus_messages()
    assert len(messages) > 1200
    service = make_service()
    accepted = 0
    with service.smtp() as client:
        for data in messages:
            refused = client.sendmail("archive-test@example.com", [JOURNAL], data)
            assert refused == {}
            accepted += 1
    assert accepted == len(messages)
    figures = service.wait_until_archived(timeout=300)

    received = datetime.now(UTC)
    expected = set()
    for data in messages:
        parsed = parse_message(data, received)
        expected.add(dedupe_key(parsed))
    with service.core().sessions() as session:
        archived = set(session.scalars(select(Message.dedupe_key)))
    assert figures["messages"] == len(expected)
    assert archived == expected
    assert "Traceback" not in service.log()
    assert "archiving failed" not in service.log()
