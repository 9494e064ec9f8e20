"""Fault scenarios for the reliability suite, shared by the tests and `report.py`.

A scenario runs a real `arsip serve` on loopback, does something unkind to it, lets it
settle, and counts what came out. It returns a `Row` for the report's table and keeps
the details (which Message-IDs were lost or duplicated) for the test's assertions.
"""

from __future__ import annotations

import contextlib
import functools
import os
import random
import signal
import smtplib
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from email.parser import BytesHeaderParser
from pathlib import Path

import pytest
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from archiver.models import Message
from archiver.search.backend import SearchBackend
from archiver.search.service import search
from archiver.search.viewer import Viewer
from archiver.service import Core
from lists.models import OutboxRecipient, utcnow
from tests.reliability.outages import (
    MailPump,
    Reply,
    fill,
    private_postgres,
    send,
    small_filesystem,
)
from tests.support import (
    JOURNAL,
    JOURNAL_DOMAIN,
    LIST_DOMAIN,
    RunningService,
    SmarthostSink,
    alive,
    children_of,
    eventually,
    service_env,
    simple_message,
    state,
)

LIST = f"crash@{LIST_DOMAIN}"
MEMBERS = ("ann@example.org", "bob@example.net", "cho@example.com", "dee@example.org")
# Blind copies reach the archive as addresses in the journal domain (an MTA's BCC map).
BCC = (f"eve@{JOURNAL_DOMAIN}", f"fay@{JOURNAL_DOMAIN}")
LIST_SHARE = 20  # every 20th message is a list post (5%)
BCC_SHARE = 7  # every 7th journal copy also carries a Bcc envelope recipient
ATTEMPTS = 60  # how often a client tries one message before it gives up, as an MTA would
SEARCH_SAMPLE = 200


def env_int(name: str, default: int) -> int:
    """A scenario size from the environment (the tests' own knob, not Arsip's settings)."""
    value = os.environ.get(name, "")
    return int(value) if value.strip() else default


@dataclass
class Row:
    """One line of the reliability table."""

    scenario: str
    faults: int = 0
    sent: int = 0
    acknowledged: int = 0
    archived: int = 0
    lost: int = 0
    duplicated: int = 0
    list_posts: int = 0
    deliveries_expected: int = 0
    deliveries_made: int = 0
    duplicate_deliveries: int = 0
    notes: str = ""


@dataclass
class Attempts:
    """What the clients saw, shared by their threads."""

    acknowledged: set[str] = field(default_factory=set)
    uncertain: set[str] = field(default_factory=set)  # an attempt failed before its answer
    given_up: set[str] = field(default_factory=set)
    posts: set[str] = field(default_factory=set)  # list posts acknowledged
    errors: Counter[str] = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)
    next_number: int = 0

    def take(self, total: int) -> int | None:
        with self.lock:
            if self.next_number >= total:
                return None
            self.next_number += 1
            return self.next_number - 1


@dataclass
class CrashOutcome:
    """The crash scenario's row and the evidence behind it."""

    row: Row
    lost: list[str]
    duplicated: list[str]
    unsearchable: list[str]
    sample_misses: list[str]
    undelivered: list[tuple[str, str]]
    duplicate_deliveries: list[tuple[str, str, int]]
    retried_duplicates: list[tuple[str, str, int]]
    released_leases: int
    orphans: list[int]
    log_path: Path


def mail_for(number: int) -> tuple[str, str, list[str], bytes, bool]:
    """Message number `number` of the load: (Message-ID, sender, recipients, bytes, is a
    list post)."""
    message_id = f"crash-{number}@example.com"
    if number % LIST_SHARE == 0:
        member = MEMBERS[number // LIST_SHARE % len(MEMBERS)]
        data = simple_message(
            message_id,
            subject=f"Post {number}",
            sender=member,
            to=LIST,
            body=f"List post number {number}.\r\n" * 5,
        )
        return message_id, member, [LIST], data, True
    recipients = [JOURNAL]
    if number % BCC_SHARE == 0:
        recipients.append(BCC[number % len(BCC)])
    body = f"Journal copy number {number}, word crashload{number}.\r\n" * 20
    data = simple_message(message_id, subject=f"Journal {number}", body=body)
    return message_id, "alice@example.com", recipients, data, False


def send_load(port: int, total: int, seen: Attempts, stop: threading.Event) -> None:
    """One SMTP session's share of the load: reconnect after every failure and try the
    same message again, as an MTA would; remember which messages got their 250."""
    client: smtplib.SMTP | None = None
    number = seen.take(total)
    tries = 0
    while number is not None and not stop.is_set():
        message_id, sender, recipients, data, is_post = mail_for(number)
        try:
            if client is None:
                client = smtplib.SMTP("127.0.0.1", port, timeout=30)
            tries += 1
            client.sendmail(sender, recipients, data)
        except (OSError, smtplib.SMTPException) as exc:
            with seen.lock:
                seen.uncertain.add(message_id)
                seen.errors[type(exc).__name__] += 1
            if client is not None:
                with contextlib.suppress(OSError):
                    client.close()
            client = None
            if tries >= ATTEMPTS:
                with seen.lock:
                    seen.given_up.add(message_id)
                number, tries = seen.take(total), 0
            else:
                time.sleep(0.05)
            continue
        with seen.lock:
            seen.acknowledged.add(message_id)
            if is_post:
                seen.posts.add(message_id)
        number, tries = seen.take(total), 0
    if client is not None:
        try:
            client.quit()
        except (OSError, smtplib.SMTPException):
            client.close()


SIGKILL_BIT = 1 << (signal.SIGKILL - 1)
PF_EXITING = 0x4  # linux/sched.h: the process has begun to exit


def dying(pid: int) -> bool:
    """Whether `pid` can run no more code of its own: a SIGKILL is pending for it (as the
    kernel sends a child whose parent died) or it has begun to exit."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
        flags = int(Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1].split()[6])
    except (OSError, IndexError, ValueError):
        return True  # gone
    pending = 0
    for line in status.splitlines():
        if line.startswith(("SigPnd:", "ShdPnd:")):
            pending |= int(line.split()[1], 16)
    return bool(pending & SIGKILL_BIT or flags & PF_EXITING)


def kill_hard(service: RunningService, orphans: list[int], grace: float = 10) -> None:
    """SIGKILL the service's main process and wait until its children are gone; a child
    still free to run after `grace` (the kernel did not kill it with its parent) is
    recorded and killed by PID."""
    assert service.process is not None
    pid = service.process.pid
    # Stopped first, the service cannot start a child between the listing and the kill:
    # one missed would go on holding the database's lock, and the restart be refused.
    os.kill(pid, signal.SIGSTOP)
    eventually(lambda: state(pid) == "T", 60, "the service to stop", interval=0.01)
    children = children_of(pid)
    os.kill(pid, signal.SIGKILL)
    service.process.wait()
    service.process = None
    deadline = time.monotonic() + grace
    for child in children:
        while alive(child) and not dying(child) and time.monotonic() < deadline:
            time.sleep(0.02)
        if alive(child) and not dying(child):
            orphans.append(child)
            os.kill(child, signal.SIGKILL)
    # A dying child runs no more code of its own, but holds the database's lock until it
    # has exited, which on a busy machine takes a while at idle priority.
    eventually(
        lambda: not any(alive(child) for child in children),
        120,
        "the killed service's children to exit",
        interval=0.02,
    )


def outbox_pending(service: RunningService) -> tuple[int, int]:
    """Pending outbox recipients: (all, those not due yet)."""
    now = utcnow()
    with service.core().sessions() as session:
        pending = OutboxRecipient.status == "pending"
        total = session.scalar(select(func.count()).where(pending)) or 0
        later = (
            session.scalar(
                select(func.count()).where(pending, OutboxRecipient.next_attempt_at > now)
            )
            or 0
        )
    return total, later


def release_leases(service: RunningService) -> int:
    """Make leased-but-unsent outbox rows due now, as the lease's expiry would minutes
    later; returns how many there were."""
    now = utcnow()
    with service.core().sessions.begin() as session:
        result = session.execute(
            update(OutboxRecipient)
            .where(OutboxRecipient.status == "pending", OutboxRecipient.next_attempt_at > now)
            .values(next_attempt_at=now - timedelta(seconds=1))
        )
        return result.rowcount or 0


def settle(service: RunningService, timeout: float) -> int:
    """Wait until spool, index queue and outbox are empty; returns how many outbox rows
    had to have their lease released (rows a killed process had leased)."""
    released = 0
    deadline = time.monotonic() + timeout
    quiet_since: float | None = None
    while time.monotonic() < deadline:
        figures = service.stats()
        total, later = outbox_pending(service)
        if figures["spool_pending"] == 0 and figures["index_pending"] == 0 and total == 0:
            return released
        if figures["spool_pending"] == 0 and total and total == later:
            # Only rows leased by a dead process remain; give the live one a moment, then
            # stand in for the clock.
            quiet_since = quiet_since or time.monotonic()
            if time.monotonic() - quiet_since > 2:
                released += release_leases(service)
                quiet_since = None
        else:
            quiet_since = None
        time.sleep(0.2)
    raise AssertionError(
        f"did not settle: {service.stats()}, outbox {outbox_pending(service)}\n{service.log()}"
    )


def list_service(workdir: Path, sink: SmarthostSink) -> RunningService:
    """`arsip serve` in `workdir` with `sink` as its smarthost and the list of `MEMBERS`
    (no DMARC look-ups), started; the caller stops it."""
    env = service_env(workdir / "var", None, ARSIP_SMARTHOST=sink.address)
    service = RunningService(env, workdir / "serve.log")
    try:
        service.start()
        service.run_cli("lists", "create", LIST, "--owner", "owner@example.com", check=True)
        service.run_cli("lists", "set", LIST, "--dmarc", "never", check=True)
        service.run_cli("lists", "add-member", LIST, *MEMBERS, "--no-confirm", check=True)
    except BaseException:
        service.close()
        raise
    return service


def crash_scenario(
    workdir: Path,
    messages: int | None = None,
    kills: int | None = None,
    sessions: int | None = None,
    seed: int | None = None,
) -> CrashOutcome:
    """16 SMTP sessions send journal copies and list posts while `arsip serve` is
    SIGKILLed and restarted `kills` times; then count what was archived and delivered."""
    messages = messages or env_int("ARSIP_CRASH_MESSAGES", 5000)
    kills = env_int("ARSIP_CRASH_KILLS", 10) if kills is None else kills
    sessions = sessions or env_int("ARSIP_CRASH_SESSIONS", 16)
    seed = env_int("ARSIP_CRASH_SEED", 7) if seed is None else seed
    rng = random.Random(seed)
    workdir.mkdir(parents=True, exist_ok=True)
    with SmarthostSink() as sink:
        service = list_service(workdir, sink)
        try:
            seen = Attempts()
            stop = threading.Event()
            clients = [
                threading.Thread(
                    target=send_load, args=(service.smtp_port, messages, seen, stop), daemon=True
                )
                for _ in range(sessions)
            ]
            # Kill at random points of the load, so every kill lands while mail flows.
            marks = sorted(rng.uniform(0.03, 0.95) * messages for _ in range(kills))
            orphans: list[int] = []
            faults = 0
            for client in clients:
                client.start()
            try:
                for mark in marks:
                    while seen.next_number < mark and any(c.is_alive() for c in clients):
                        time.sleep(0.01)
                    time.sleep(rng.uniform(0.0, 0.3))
                    kill_hard(service, orphans)
                    faults += 1
                    service.start()
            except BaseException:
                stop.set()  # no service to send to: the clients stop instead of retrying
                raise
            finally:
                for client in clients:
                    client.join(timeout=600)
                stop.set()
            released = settle(service, timeout=300)
            return _count(service, sink, seen, messages, faults, released, orphans)
        finally:
            service.close()


def _count(
    service: RunningService,
    sink: SmarthostSink,
    seen: Attempts,
    messages: int,
    faults: int,
    released: int,
    orphans: list[int],
) -> CrashOutcome:
    core = service.core()
    with core.sessions() as session:
        rows = session.execute(
            select(Message.message_id, Message.id).where(Message.message_id.like("crash-%"))
        ).all()
        counts = Counter(message_id for message_id, _ in rows)
        pks = {message_id: pk for message_id, pk in rows}
        backend = core.search_backend()
        try:
            indexed = set(backend.matching(None))
            sample = random.Random(1).sample(
                sorted(seen.acknowledged), min(SEARCH_SAMPLE, len(seen.acknowledged))
            )
            sample_misses = [
                message_id
                for message_id in sample
                if message_id not in found_by_id(core, session, backend, message_id)
            ]
        finally:
            backend.close()
    lost = sorted(mid for mid in seen.acknowledged if counts[mid] == 0)
    duplicated = sorted(mid for mid, count in counts.items() if count > 1)
    unsearchable = sorted(
        mid for mid in seen.acknowledged if mid in pks and pks[mid] not in indexed
    )

    delivered: Counter[tuple[str, str]] = Counter()
    for _, recipients, data in list(sink.received):
        message_id = message_id_of(data)
        for recipient in recipients:
            delivered[(message_id, recipient.lower())] += 1
    expected = [(post, member) for post in sorted(seen.posts) for member in MEMBERS]
    undelivered = [pair for pair in expected if delivered[pair] == 0]
    extra = [(post, member, n) for (post, member), n in delivered.items() if n > 1]
    # A post re-sent by its client after a lost 250 is a second post as far as SMTP knows.
    retried = [entry for entry in extra if entry[0] in seen.uncertain]
    crash_extra = [entry for entry in extra if entry[0] not in seen.uncertain]
    notes = []
    if released:
        notes.append(f"{released} outbox rows leased by a killed process released by the test")
    if retried:
        notes.append(f"{len(retried)} extra copies of posts their client sent twice")
    if seen.given_up:
        notes.append(f"{len(seen.given_up)} messages never acknowledged")
    if orphans:
        notes.append(f"{len(orphans)} children outlived their parent")
    row = Row(
        scenario=f"kill -9 `arsip serve` during load ({len(MEMBERS)}-member list)",
        faults=faults,
        sent=messages,
        acknowledged=len(seen.acknowledged),
        archived=sum(1 for mid in seen.acknowledged if counts[mid] >= 1),
        lost=len(lost),
        duplicated=len(duplicated),
        list_posts=len(seen.posts),
        deliveries_expected=len(expected),
        deliveries_made=sum(n for (post, _), n in delivered.items() if post in seen.posts),
        duplicate_deliveries=sum(n - 1 for _, _, n in extra),
        notes="; ".join(notes),
    )
    return CrashOutcome(
        row=row,
        lost=lost,
        duplicated=duplicated,
        unsearchable=unsearchable,
        sample_misses=sample_misses,
        undelivered=undelivered,
        duplicate_deliveries=crash_extra,
        retried_duplicates=retried,
        released_leases=released,
        orphans=orphans,
        log_path=service.log_path,
    )


def found_by_id(core: Core, session: Session, backend: SearchBackend, message_id: str) -> list[str]:
    """The Message-IDs an administrator's `msgid:` search for `message_id` finds."""
    page = search(session, backend, f"msgid:{message_id}", Viewer.administrator(), store=core.store)
    return [found.message_id for found in page.results]


def message_id_of(data: bytes) -> str:
    """The Message-ID of a delivered copy, without angle brackets."""
    value = BytesHeaderParser().parsebytes(data)["Message-ID"] or ""
    return str(value).strip().strip("<>")


Scenario = Callable[[Path], Row]


def crash_row(workdir: Path) -> Row:
    """The crash scenario as one row of the report."""
    return crash_scenario(workdir / "crash").row


def skippable(name: str) -> Callable[[Scenario], Scenario]:
    """For a scenario that needs something this machine may not offer (PostgreSQL
    binaries, a tmpfs mount): when its helper says skip, the row says so instead."""

    def wrap(scenario: Scenario) -> Scenario:
        @functools.wraps(scenario)
        def run(workdir: Path) -> Row:
            try:
                return scenario(workdir)
            except pytest.skip.Exception as exc:
                return Row(scenario=name, notes=f"skipped: {exc.msg}")

        return run

    return wrap


def _copies(service: RunningService, message_ids: list[str]) -> Counter[str]:
    """How many archive rows each of `message_ids` has (absent ones have none)."""
    counts: Counter[str] = Counter()
    with service.core().sessions() as session:
        for start in range(0, len(message_ids), 500):
            chunk = message_ids[start : start + 500]
            counts.update(
                session.scalars(select(Message.message_id).where(Message.message_id.in_(chunk)))
            )
    return counts


def _outage_row(
    scenario: str, service: RunningService, replies: list[Reply], faults: int, refused: int
) -> Row:
    """Count what a `MailPump` load saw against what the archive holds."""
    service.wait_until_archived(timeout=90)
    acknowledged = [r.message_id for r in replies if r.code == 250]
    counts = _copies(service, [r.message_id for r in replies])
    archived = sum(1 for mid in acknowledged if counts[mid] >= 1)
    other = Counter(r.code for r in replies if r.code != 250 and not 400 <= r.code < 500)
    notes = [f"{refused} refused with 4xx (sender retries later)"]
    if other:
        notes.append("other replies: " + ", ".join(f"{n}x {c}" for c, n in sorted(other.items())))
    return Row(
        scenario=scenario,
        faults=faults,
        sent=len(replies),
        acknowledged=len(acknowledged),
        archived=archived,
        lost=len(acknowledged) - archived,
        duplicated=sum(1 for n in counts.values() if n > 1),
        notes="; ".join(notes),
    )


PG_OUTAGE = "PostgreSQL stopped and restarted under load"
DISK_FULL = "disk full (tmpfs) during load"


@skippable(PG_OUTAGE)
def postgres_row(workdir: Path) -> Row:
    """One client sends journal copies while its private PostgreSQL is stopped and
    started again."""
    workdir.mkdir(parents=True, exist_ok=True)
    with private_postgres() as postgres:
        env = service_env(workdir / "var", postgres.url)
        service = RunningService(env, workdir / "serve.log")
        try:
            service.start()
            with MailPump(service, "pg") as pump:
                pump.wait_for("2", 10, since=0)
                postgres.stop()
                stopped = time.monotonic()
                pump.wait_for("4", 5, since=stopped)
                postgres.start()
                pump.wait_for("2", 10, since=time.monotonic(), timeout=90)
            replies = pump.snapshot()
            refused = sum(1 for r in replies if 400 <= r.code < 500)
            return _outage_row(PG_OUTAGE, service, replies, 1, refused)
        finally:
            service.close()


@skippable(DISK_FULL)
def disk_full_row(workdir: Path) -> Row:
    """One client sends small journal copies while the data directory's filesystem fills
    up; large ones sent meanwhile find no room, and all goes on once space is back."""
    workdir.mkdir(parents=True, exist_ok=True)
    with small_filesystem(workdir / "disk") as disk:
        env = service_env(disk / "var", None)
        service = RunningService(env, workdir / "serve.log")
        try:
            service.start()
            # Bigger than any room SQLite's log may still have from earlier writes.
            body = "A line of a large message that does not fit.\r\n" * 40_000
            with MailPump(service, "disk") as pump:
                pump.wait_for("2", 10, since=0)
                filler = fill(disk)
                full = [send(service, f"full-{n}@outage.test", f"full {n}", body) for n in range(4)]
                filler.unlink()
                after = [
                    send(service, f"after-{n}@outage.test", f"after {n}", body) for n in range(3)
                ]
                pump.wait_for("2", 10, since=time.monotonic())
            replies = pump.snapshot() + full + after
            refused = sum(1 for r in replies if 400 <= r.code < 500)
            return _outage_row(DISK_FULL, service, replies, 1, refused)
        finally:
            service.close()


def _attempted(service: RunningService, rows: int, timeout: float = 30) -> None:
    """Wait until `rows` outbox rows have had a delivery attempt."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with service.core().sessions() as session:
            tried = session.scalar(select(func.count()).where(OutboxRecipient.attempts > 0))
        if (tried or 0) >= rows:
            return
        time.sleep(0.2)
    raise AssertionError(f"outbox rows were not tried\n{service.log()}")


def smarthost_row(workdir: Path, posts: int = 5) -> Row:
    """List posts sent while the smarthost refuses connections; then it comes back."""
    workdir.mkdir(parents=True, exist_ok=True)
    sink = SmarthostSink()  # not started yet: connections to it are refused
    service = list_service(workdir, sink)
    try:
        seen = Attempts()
        with service.smtp() as client:
            for number in range(posts):
                message_id = f"smarthost-{number}@example.com"
                member = MEMBERS[number % len(MEMBERS)]
                data = simple_message(message_id, subject=f"Post {number}", sender=member, to=LIST)
                client.sendmail(member, [LIST], data)
                seen.acknowledged.add(message_id)
                seen.posts.add(message_id)
        _attempted(service, posts * len(MEMBERS))
        with sink:
            # The outbox waits before it tries again; `settle` stands in for the clock.
            settle(service, timeout=60)
            time.sleep(0.5)
            received = list(sink.received)
        counts = _copies(service, sorted(seen.acknowledged))
    finally:
        service.close()
    delivered: Counter[tuple[str, str]] = Counter()
    for _, recipients, data in received:
        for recipient in recipients:
            delivered[(message_id_of(data), recipient.lower())] += 1
    expected = {(post, member) for post in seen.posts for member in MEMBERS}
    made = sum(n for pair, n in delivered.items() if pair in expected)
    missing = sum(1 for pair in expected if delivered[pair] == 0)
    return Row(
        scenario="smarthost down, then back",
        faults=1,
        sent=posts,
        acknowledged=len(seen.acknowledged),
        archived=sum(1 for mid in seen.acknowledged if counts[mid] >= 1),
        lost=sum(1 for mid in seen.acknowledged if counts[mid] == 0),
        duplicated=sum(1 for n in counts.values() if n > 1),
        list_posts=len(seen.posts),
        deliveries_expected=len(expected),
        deliveries_made=made,
        duplicate_deliveries=sum(n - 1 for pair, n in delivered.items() if n > 1),
        notes=f"{missing} deliveries missing" if missing else "",
    )


# The report runs these in order.
SCENARIOS: list[Scenario] = [crash_row, postgres_row, disk_full_row, smarthost_row]
