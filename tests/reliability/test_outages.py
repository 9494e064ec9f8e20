"""Outages: what Arsip does while something it depends on is gone, and after it is back.

The database stops under load, the smarthost is unreachable, the disk fills up, the
search index is locked or damaged. Mail that got 250 is never lost; mail that could not
be stored gets a 4xx, so the sender tries again; and Arsip recovers by itself, or with
`arsip reindex` for search.
"""

from __future__ import annotations

import json
import secrets
import shutil
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from email import message_from_bytes
from pathlib import Path

import pytest
from sqlalchemy import select, update

from lists.models import OutboxRecipient
from tests.reliability.outages import (
    MailPump,
    archived_ids,
    fill,
    index_write_lock,
    private_postgres,
    send,
    small_filesystem,
)
from tests.support import LIST_DOMAIN, RunningService, SmarthostSink

LIST = f"outage@{LIST_DOMAIN}"
OWNER = "owner@example.com"
MEMBERS = tuple(f"member{n}@example.org" for n in range(1, 7))


def _accepted(replies) -> list[str]:
    return [r.message_id for r in replies if r.code == 250]


def _assert_all_archived(service: RunningService, message_ids: list[str]) -> None:
    service.wait_until_archived(timeout=90)
    missing = set(message_ids) - archived_ids(service, message_ids)
    assert not missing, f"acknowledged but not archived: {sorted(missing)}\n{service.log()}"


def test_a_stopped_database_gets_451_and_the_intake_recovers_by_itself(make_service) -> None:
    with private_postgres() as postgres:
        service = make_service(postgres.url)
        with MailPump(service, "pg") as pump:
            pump.wait_for("2", 10, since=0)
            postgres.stop()
            stopped = time.monotonic()
            pump.wait_for("4", 5, since=stopped)
            restarting = time.monotonic()
            postgres.start()
            pump.wait_for("2", 10, since=time.monotonic(), timeout=90)
        replies = pump.snapshot()
        # Begun after the server was down and answered before it was started again.
        during = [r.code for r in replies if r.started >= stopped and r.finished < restarting]
        assert during and all(400 <= code < 500 for code in during), during
        assert any(r.code == 250 for r in replies if r.started < stopped)
        _assert_all_archived(service, _accepted(replies))
        assert service.process is not None and service.process.poll() is None, service.log()


def _post(sender: str, subject: str) -> bytes:
    return (
        f"From: {sender}\r\nTo: {LIST}\r\nSubject: {subject}\r\n"
        f"Message-ID: <{secrets.token_hex(8)}@example.com>\r\n"
        "Date: Mon, 02 Feb 2026 10:00:00 +0000\r\n\r\nPlease read this.\r\n"
    ).encode()


class RefusingSink(SmarthostSink):
    """A smarthost that answers every transaction `421` while `refusing` is set."""

    refusing = True

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        if self.refusing:
            return "421 4.3.2 Service not available, try again later"
        envelope.mail_from = address
        return "250 OK"


def _outbox_attempted(service: RunningService, rows: int) -> None:
    deadline = time.monotonic() + 30
    tried = 0
    while time.monotonic() < deadline:
        with service.core().sessions() as session:
            tried = len(
                session.scalars(
                    select(OutboxRecipient.id).where(OutboxRecipient.attempts > 0)
                ).all()
            )
        if tried >= rows:
            return
        time.sleep(0.2)
    raise AssertionError(f"{tried} of {rows} outbox rows tried\n{service.log()}")


def _retry_now(service: RunningService) -> None:
    """Let the outbox's retry time come at once (its first retry is 30 s away)."""
    with service.core().sessions.begin() as session:
        session.execute(
            update(OutboxRecipient)
            .where(OutboxRecipient.status == "pending")
            .values(next_attempt_at=datetime.now(UTC))
        )


def test_posts_during_a_smarthost_outage_reach_every_member_once(make_service) -> None:
    sink = RefusingSink()  # not started: connections are refused
    service = make_service(ARSIP_SMARTHOST=sink.address)
    service.run_cli("lists", "create", LIST, "--owner", OWNER, check=True)
    service.run_cli("lists", "add-member", LIST, *MEMBERS, "--no-confirm", check=True)
    subjects = [f"Outage post {n}" for n in range(1, 4)]
    with service.smtp() as client:
        for subject in subjects[:2]:
            client.sendmail(MEMBERS[0], [LIST], _post(MEMBERS[0], subject))
    _outbox_attempted(service, 2 * len(MEMBERS))
    with sink:  # the smarthost is back, but says 421 for a while
        with service.smtp() as client:
            client.sendmail(MEMBERS[1], [LIST], _post(MEMBERS[1], subjects[2]))
        _retry_now(service)
        time.sleep(0.5)
        _outbox_attempted(service, 3 * len(MEMBERS))
        assert not sink.received
        sink.refusing = False
        _retry_now(service)
        for member in MEMBERS:
            sink.wait_for(member, count=len(subjects), timeout=60)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with service.core().sessions() as session:
                statuses = Counter(session.scalars(select(OutboxRecipient.status)))
            if set(statuses) == {"sent"}:
                break
            time.sleep(0.2)
        assert set(statuses) == {"sent"}, statuses
        for member in MEMBERS:
            got = Counter(
                str(message_from_bytes(data)["Subject"]) for _, data in sink.messages_to(member)
            )
            assert got == Counter(f"[outage] {s}" for s in subjects), (member, got)


def _disk_service(make_service, disk: Path) -> RunningService:
    return make_service(ARSIP_DATA_DIR=str(disk / "var"))


def _send_many(service: RunningService, tag: str, count: int, body: str = "", first: int = 0):
    numbers = range(first, first + count)
    return [send(service, f"{tag}-{n}@outage.test", f"{tag} {n}", body) for n in numbers]


def test_a_full_disk_gets_452_never_250_and_mail_flows_when_space_is_back(
    make_service, tmp_path: Path
) -> None:
    with small_filesystem(tmp_path / "disk") as disk:
        service = _disk_service(make_service, disk)
        before = _send_many(service, "before", 3)
        assert [r.code for r in before] == [250] * 3
        service.wait_until_archived()
        filler = fill(disk)
        # Bigger than any room SQLite's log may still have from earlier writes.
        body = "A line of a large message that does not fit.\r\n" * 40_000
        during = _send_many(service, "full", 4, body)
        assert all(r.code in (451, 452) for r in during), [r.code for r in during]
        filler.unlink()
        after = _send_many(service, "after", 3, body)
        assert [r.code for r in after] == [250] * 3, service.log()
        _assert_all_archived(service, _accepted(before + after))
        refused = [r.message_id for r in during]
        assert not archived_ids(service, refused)


@contextmanager
def immutable(paths: list[Path]) -> Iterator[None]:
    """Make files and folders unwritable even for root (the ext4 immutable attribute):
    writes through files already open fail too, as on a data dir remounted read-only."""
    if shutil.which("chattr") is None:
        pytest.skip("chattr is not installed")
    done: list[Path] = []
    try:
        for path in paths:
            if subprocess.run(["chattr", "+i", str(path)], capture_output=True).returncode:
                pytest.skip(f"the file system of {path} has no immutable attribute")
            done.append(path)
        yield
    finally:
        for path in reversed(done):
            subprocess.run(["chattr", "-i", str(path)], check=True)


def test_an_unwritable_data_dir_gets_451_never_250_and_mail_flows_again(make_service) -> None:
    service = make_service()
    before = _send_many(service, "writable", 2)
    assert [r.code for r in before] == [250] * 2
    service.wait_until_archived()
    data = service.settings.data_dir
    frozen = [data, *sorted(data.glob("arsip.db*"))]
    with immutable(frozen):
        during = _send_many(service, "frozen", 3)
        assert all(r.code in (451, 452) for r in during), [r.code for r in during]
    after = _send_many(service, "thawed", 3)
    assert [r.code for r in after] == [250] * 3, service.log()
    _assert_all_archived(service, _accepted(before + after))
    assert not archived_ids(service, [r.message_id for r in during])


def _reindex(service: RunningService) -> None:
    """Run `arsip reindex`, again when it says the live indexer is busy writing (as an
    operator would, following its advice)."""
    for _ in range(10):
        rebuilt = service.run_cli("reindex")
        if rebuilt.returncode == 0 or "try again" not in rebuilt.stderr:
            break
        time.sleep(1)
    assert rebuilt.returncode == 0, rebuilt.stderr


def _found(service: RunningService, word: str) -> int:
    result = service.run_cli("search", "--json", word, "--limit", "1")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)["total"]


def test_a_locked_search_index_leaves_the_intake_alone_and_reindex_catches_up(
    make_service,
) -> None:
    service = make_service()
    word = "lockedindex" + secrets.token_hex(4)
    first = _send_many(service, word, 2)
    service.wait_until_archived()
    deadline = time.monotonic() + 30
    while _found(service, word) < 2 and time.monotonic() < deadline:
        time.sleep(0.3)
    with index_write_lock(service.settings.index_dir):
        during = _send_many(service, word, 5, first=100)
        assert [r.code for r in during] == [250] * 5
        _assert_all_archived(service, _accepted(during))
        busy = service.run_cli("reindex")
        assert busy.returncode != 0 and "try again" in busy.stderr, busy.stderr
    _reindex(service)
    assert _found(service, word) == len(first) + len(during)


def test_a_corrupt_search_index_leaves_the_intake_alone_and_reindex_repairs_it(
    make_service,
) -> None:
    service = make_service()
    word = "corruptindex" + secrets.token_hex(4)
    first = _send_many(service, word, 3)
    service.wait_until_archived()
    deadline = time.monotonic() + 30
    while _found(service, word) < 3 and time.monotonic() < deadline:
        time.sleep(0.3)
    segments = [
        path
        for path in service.settings.index_dir.glob("v*/*")
        if path.is_file() and not path.name.endswith("LOCK") and not path.name.startswith(".")
    ]
    assert segments
    for path in segments:
        path.write_bytes(b"\xde\xad" * 64)
    during = _send_many(service, word, 5, first=100)
    assert [r.code for r in during] == [250] * 5
    _assert_all_archived(service, _accepted(during))
    _reindex(service)
    assert _found(service, word) == len(first) + len(during)
