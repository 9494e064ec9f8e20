"""Scale-out on PostgreSQL: many `arsip serve --role ...` processes, one archive.

Two intake processes on different ports, two workers (one SIGKILLed half-way through
the load), one indexer and one scheduler share one database and one data directory;
every acknowledged message must be archived and searchable exactly once. Then a list
post to 500 members with two workers delivering must reach each member exactly once.

Size the load with ARSIP_SCALE_MESSAGES (default 5000).
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import select

from archiver.models import Message
from tests.reliability.faults import (
    LIST,
    MEMBERS,
    Attempts,
    env_int,
    found_by_id,
    message_id_of,
    send_load,
)
from tests.reliability.scale_out import Deployment, drained
from tests.support import LIST_DOMAIN, SmarthostSink, postgres_database, simple_message

# The tests of this file share the deployment and its load (a module fixture):
# `make test` keeps them in one test process (`--dist loadgroup`), so it is set up once.
pytestmark = pytest.mark.xdist_group("test_scale_out")


SESSIONS = 16
SEARCH_SAMPLE = 200
ARCHIVED = "archived as message"


@dataclass
class LoadOutcome:
    """What the clients were told and what the shared archive holds afterwards."""

    seen: Attempts
    copies: Counter[str]
    unsearchable: list[str]
    search_hits: dict[str, int]
    killed_worker_archived: bool
    survivor_archived_after_kill: bool
    scheduler: str


@pytest.fixture(scope="module")
def outcome(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LoadOutcome]:
    with postgres_database() as url, SmarthostSink() as sink:
        deployment = Deployment(
            tmp_path_factory.mktemp("scale"), url, {"ARSIP_SMARTHOST": sink.address}
        )
        try:
            yield _run_load(deployment, env_int("ARSIP_SCALE_MESSAGES", 5000))
        finally:
            deployment.close()


def _run_load(deployment: Deployment, messages: int) -> LoadOutcome:
    intakes = [deployment.start("intake-a", "intake"), deployment.start("intake-b", "intake")]
    intakes[0].run_cli("lists", "create", LIST, "--owner", "owner@example.com", check=True)
    intakes[0].run_cli("lists", "set", LIST, "--dmarc", "never", check=True)
    intakes[0].run_cli("lists", "add-member", LIST, *MEMBERS, "--no-confirm", check=True)
    deployment.start("worker-1", "worker")
    deployment.start("worker-2", "worker")
    deployment.start("indexer", "indexer")
    deployment.start("scheduler", "scheduler")

    seen, stop = Attempts(), threading.Event()
    clients = [
        threading.Thread(
            target=send_load,
            args=(intakes[number % 2].smtp_port, messages, seen, stop),
            daemon=True,
        )
        for number in range(SESSIONS)
    ]
    for client in clients:
        client.start()
    try:
        while seen.next_number < messages // 2 and any(c.is_alive() for c in clients):
            time.sleep(0.01)
        _wait_for_log(deployment, "worker-1", ARCHIVED)
        survivor_before = deployment.log("worker-2").count(ARCHIVED)
        deployment.kill("worker-1")
    finally:
        for client in clients:
            client.join(timeout=600)
        stop.set()
    drained(deployment, timeout=300)
    copies, unsearchable, hits = _count(deployment, seen)
    return LoadOutcome(
        seen=seen,
        copies=copies,
        unsearchable=unsearchable,
        search_hits=hits,
        killed_worker_archived=ARCHIVED in deployment.log("worker-1"),
        survivor_archived_after_kill=deployment.log("worker-2").count(ARCHIVED) > survivor_before,
        scheduler=str(deployment.any().stats()["scheduler"]),
    )


def _wait_for_log(deployment: Deployment, name: str, text: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while text not in deployment.log(name):
        assert time.monotonic() < deadline, f"{name} never logged {text!r}"
        time.sleep(0.05)


def _count(
    deployment: Deployment, seen: Attempts
) -> tuple[Counter[str], list[str], dict[str, int]]:
    """Archive rows per Message-ID, the acknowledged messages missing from the index, and
    how many results a search by Message-ID finds for a sample of them."""
    core = deployment.any().core()
    with core.sessions() as session:
        rows = session.execute(
            select(Message.message_id, Message.id).where(Message.message_id.like("crash-%"))
        ).all()
        backend = core.search_backend()
        try:
            indexed = set(backend.matching(None))
            sample = random.Random(3).sample(
                sorted(seen.acknowledged), min(SEARCH_SAMPLE, len(seen.acknowledged))
            )
            hits = {
                message_id: len(found_by_id(core, session, backend, message_id))
                for message_id in sample
            }
        finally:
            backend.close()
    copies = Counter(message_id for message_id, _ in rows)
    unsearchable = sorted(message_id for message_id, pk in rows if pk not in indexed)
    return copies, unsearchable, hits


@pytest.mark.timeout(900)
def test_the_load_went_through_both_intakes_and_a_worker_died_mid_load(
    outcome: LoadOutcome,
) -> None:
    assert len(outcome.seen.acknowledged) > 0.95 * env_int("ARSIP_SCALE_MESSAGES", 5000)
    assert outcome.killed_worker_archived, "the killed worker had archived nothing"
    assert outcome.survivor_archived_after_kill, "the other worker did not carry on"


def test_every_acknowledged_message_is_archived_exactly_once(outcome: LoadOutcome) -> None:
    lost = sorted(mid for mid in outcome.seen.acknowledged if outcome.copies[mid] == 0)
    twice = sorted(mid for mid, count in outcome.copies.items() if count > 1)
    assert not lost, f"{len(lost)} acknowledged messages were lost: {lost[:10]}"
    assert not twice, f"{len(twice)} messages archived more than once: {twice[:10]}"


def test_every_archived_message_is_searchable_exactly_once(outcome: LoadOutcome) -> None:
    assert not outcome.unsearchable, f"not in the index: {outcome.unsearchable[:10]}"
    wrong = {mid: n for mid, n in outcome.search_hits.items() if n != 1}
    assert not wrong, f"a search by Message-ID found these not exactly once: {wrong}"


def test_one_scheduler_runs_the_jobs(outcome: LoadOutcome) -> None:
    assert outcome.scheduler.startswith("arsip scheduler "), outcome.scheduler


@pytest.mark.timeout(600)
def test_a_post_to_500_members_reaches_each_once_with_two_workers(tmp_path: Path) -> None:
    members = [f"member{number:03}@example.org" for number in range(500)]
    posts = [f"scale-post-{number}@example.org" for number in range(3)]
    with postgres_database() as url, SmarthostSink() as sink:
        deployment = Deployment(tmp_path, url, {"ARSIP_SMARTHOST": sink.address})
        try:
            intake = deployment.start("intake", "intake")
            mlist = f"big@{LIST_DOMAIN}"
            intake.run_cli("lists", "create", mlist, "--owner", "owner@example.com", check=True)
            intake.run_cli("lists", "set", mlist, "--dmarc", "never", check=True)
            intake.run_cli("lists", "add-member", mlist, *members, "--no-confirm", check=True)
            deployment.start("worker-1", "worker")
            deployment.start("worker-2", "worker")
            with intake.smtp() as client:
                for message_id in posts:
                    client.sendmail(
                        members[0], [mlist], simple_message(message_id, sender=members[0], to=mlist)
                    )
            delivered = _deliveries(sink, set(posts), len(posts) * len(members))
        finally:
            deployment.close()
    missing = [(p, m) for p in posts for m in members if delivered[(p, m)] == 0]
    twice = {pair: n for pair, n in delivered.items() if n > 1}
    assert not missing, f"{len(missing)} deliveries never made: {missing[:10]}"
    assert not twice, f"{len(twice)} members got a post more than once: {list(twice)[:10]}"


def _deliveries(sink: SmarthostSink, posts: set[str], expected: int) -> Counter[tuple[str, str]]:
    """(post, recipient) -> copies, once `expected` deliveries arrived (or five minutes
    passed) and a moment more in which a duplicate in flight would show."""
    deadline = time.monotonic() + 300
    while len(_count_deliveries(sink, posts)) < expected and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(2)
    return _count_deliveries(sink, posts)


def _count_deliveries(sink: SmarthostSink, posts: set[str]) -> Counter[tuple[str, str]]:
    delivered: Counter[tuple[str, str]] = Counter()
    for _sender, recipients, data in list(sink.received):
        message_id = message_id_of(data)
        if message_id in posts:
            delivered.update((message_id, recipient.lower()) for recipient in recipients)
    return delivered
