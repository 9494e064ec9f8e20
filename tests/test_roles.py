"""`arsip serve --role` as an operator meets it: a typo, a second service on SQLite, the
one whoosh writer, a scheduler that takes over from a dead one, a child that dies, and
workers on PostgreSQL that share the spool without archiving anything twice.

Every process here is a real `arsip serve` on loopback ports, stopped (by its PID) at the
end of its test; nothing waits a fixed time, everything polls up to a generous deadline.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import socket
import subprocess
import warnings
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from archiver import ledger, migrate
from archiver.core import Core, build_core
from archiver.ledger import DaySeal
from archiver.report import stats
from tests.support import (
    ARSIP,
    JOURNAL,
    ROOT,
    RunningService,
    alive,
    children_of,
    eventually,
    postgres_database,
    service_env,
    settings_from,
    simple_message,
)

DEADLINE = 60.0  # seconds: generous, since a loaded machine starts processes slowly
LOG_LINE = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} [A-Z]+ ")  # LOG_FORMAT's start
StartService = Callable[..., RunningService]


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh PostgreSQL database (the test is skipped without a server)."""
    with postgres_database() as url:
        yield url


@pytest.fixture
def postgres_core(tmp_path: Path, postgres_url: str) -> Iterator[Core]:
    """The archiver's parts on that database, migrated, for preparing and checking data."""
    core = build_core(settings_from(service_env(tmp_path / "var", postgres_url)))
    migrate.upgrade(core.engine)
    yield core
    core.engine.dispose()


@pytest.fixture
def start_service(tmp_path: Path) -> Iterator[StartService]:
    """Start `arsip serve --role ROLES` with the given environment, logging to NAME.log;
    every service started is stopped at the end of the test."""
    started: list[RunningService] = []

    def start(env: dict[str, str], name: str, roles: str = "all") -> RunningService:
        service = RunningService(env, tmp_path / f"{name}.log", roles=roles)
        started.append(service)
        return service.start()

    yield start
    for service in started:
        service.close()


def serve_refused(env: dict[str, str], roles: str = "all") -> subprocess.CompletedProcess[str]:
    """Run an `arsip serve` that is expected to refuse to start, and its output."""
    return subprocess.run(
        [ARSIP, "serve", "--role", roles],
        env={**os.environ, **env},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=DEADLINE,
    )


def service_children(pid: int) -> list[int]:
    """The children of `pid` that are parts of the service (background and web processes,
    which name themselves `arsip-...`)."""
    found = []
    for child in children_of(pid):
        try:
            name = Path(f"/proc/{child}/comm").read_text()
        except OSError:
            continue
        if name.startswith("arsip-"):
            found.append(child)
    return found


def background_child(service: RunningService, name: str) -> int:
    """The PID of the service's background child that names itself `name` (as `ps` shows
    it: /proc/PID/comm)."""
    assert service.process is not None

    def named() -> list[int]:
        return [
            pid
            for pid in service_children(service.process.pid)
            if Path(f"/proc/{pid}/comm").read_text().strip() == name
        ]

    children = eventually(named, what=f"the {name} child")
    assert len(children) == 1, f"expected one {name} child: {children}"
    return children[0]


def label(role: str, pid: int) -> str:
    """How a process of `role` names itself in messages and `arsip stats`."""
    return f"arsip {role} {socket.gethostname()}:{pid}"


def one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    """The one line a refused command explains itself in (log lines from before the
    refusal aside); fails on a traceback or a longer story."""
    output = result.stdout + result.stderr
    assert "Traceback" not in output, output
    lines = [line for line in result.stderr.splitlines() if line and not LOG_LINE.match(line)]
    assert len(lines) == 1, output
    assert lines[0].startswith("Error: "), output
    return lines[0]


def send(service: RunningService, count: int, prefix: str) -> list[str]:
    """Journal `count` small messages over one SMTP connection; the queue ids of the 250s."""
    queue_ids = []
    with service.smtp() as client:
        client.ehlo()
        for number in range(count):
            client.mail("alice@example.com")
            client.rcpt(JOURNAL)
            code, reply = client.data(simple_message(f"{prefix}-{number}@example.com"))
            assert code == 250, reply
            queue_ids.append(reply.decode().rsplit(" ", 1)[-1])
    return queue_ids


def drained_stats(service: RunningService) -> dict[str, int]:
    """`arsip stats` once the spool is empty, read again after it emptied: the figures of
    one `stats` call come from separate statements, so the call that saw the spool empty
    may have counted the messages just before the worker's commit."""
    service.wait_until_archived()
    return service.stats()


def archived_by(workers: list[RunningService]) -> list[list[str]]:
    """The queue ids each worker says it archived, from its log."""
    return [
        re.findall(r"queue_id=(\S+) archived as message", worker.log_path.read_text())
        for worker in workers
    ]


@pytest.mark.parametrize("roles", ["intake,bogus", ""])
def test_an_unknown_or_missing_role_is_refused_with_the_valid_ones_named(
    tmp_path: Path, roles: str
) -> None:
    """A typo in a unit file, or an unset variable in `--role $ROLE`, must say what would
    have been right, not start everything nor print a traceback."""
    result = serve_refused(service_env(tmp_path / "var"), roles=roles)
    assert result.returncode in (1, 2)
    line = one_line_error(result)
    assert ("bogus" in line) if roles else ("no role" in line)
    for role in ("all", "intake", "worker", "indexer", "scheduler", "web"):
        assert role in line


def test_a_second_service_on_one_sqlite_database_is_refused(
    tmp_path: Path, start_service: StartService
) -> None:
    """SQLite has one writer: a second service must be turned away, not slow the first
    down or corrupt it, and a killed service must not leave a lock that blocks a restart."""
    data_dir = tmp_path / "var"
    first = start_service(service_env(data_dir, ARSIP_WEB_PORT="0"), "first")
    assert first.process is not None
    first_pid = first.process.pid

    second_env = service_env(data_dir, ARSIP_WEB_PORT="0")  # the same database, own ports
    refused = serve_refused(second_env)
    assert refused.returncode == 1
    line = one_line_error(refused)
    assert f"another `arsip serve` (pid {first_pid}) uses the SQLite database" in line
    assert "PostgreSQL" in line

    # The refused start left the running service alone.
    assert first.process.poll() is None
    send(first, 1, "after-refusal")
    assert drained_stats(first)["messages"] == 1

    # Killed outright, the first leaves no lock behind that stops the next start.
    children = service_children(first_pid)
    first.stop(signal.SIGKILL)
    eventually(lambda: all(not alive(pid) for pid in children), what="the first service's children")
    again = start_service(second_env, "again")
    send(again, 1, "after-restart")
    assert drained_stats(again)["messages"] == 2


def test_the_whoosh_index_has_one_writer(
    tmp_path: Path, postgres_url: str, start_service: StartService
) -> None:
    """Two whoosh writers would corrupt the index, so the second is refused and told who
    writes it; PostgreSQL full text has no such limit."""
    data_dir = tmp_path / "var"  # shared, as the deployment's processes share a mount

    def env(backend: str) -> dict[str, str]:
        return service_env(data_dir, postgres_url, ARSIP_SEARCH_BACKEND=backend)

    writer = start_service(env("whoosh"), "whoosh-indexer", roles="indexer")
    assert writer.process is not None
    holder = label("indexer", writer.process.pid)
    for roles in ("indexer", "all"):
        refused = serve_refused(env("whoosh"), roles=roles)
        assert refused.returncode == 1, roles
        line = one_line_error(refused)
        assert f"the whoosh index has one writer and {holder} is it" in line
        assert "ARSIP_SEARCH_BACKEND=postgres" in line
    assert writer.process.poll() is None
    assert writer.stop() == 0

    # The PostgreSQL index takes any number of indexers.
    first = start_service(env("postgres"), "postgres-indexer-1", roles="indexer")
    second = start_service(env("postgres"), "postgres-indexer-2", roles="indexer")
    assert first.process is not None and second.process is not None
    assert first.process.poll() is None and second.process.poll() is None


def test_a_scheduler_takes_over_when_the_one_running_the_jobs_is_killed(
    tmp_path: Path, postgres_url: str, postgres_core: Core, start_service: StartService
) -> None:
    """Jobs such as sealing the ledger must not stop with the machine that ran them: a
    standby scheduler takes the lock, `arsip stats` says so, and it catches up at once."""
    core = postgres_core
    today = datetime.now(UTC).replace(hour=12, minute=0, second=0, microsecond=0)
    first_day, second_day = today - timedelta(days=3), today - timedelta(days=2)

    def add_ledger_entry(at: datetime) -> None:
        with core.sessions.begin() as session:
            ledger.record(session, [(at, hashlib.sha256(at.isoformat().encode()).hexdigest())])

    def sealed_days() -> set[str]:
        with core.sessions() as session:
            return set(session.scalars(select(DaySeal.day)))

    def holder() -> str:
        with core.sessions() as session:
            return str(stats(session)["scheduler"])

    # A day of mail that nobody sealed yet: whichever scheduler wins seals it at once.
    add_ledger_entry(first_day)
    candidates = [
        start_service(
            service_env(tmp_path / "var", postgres_url), f"scheduler-{n}", roles="scheduler"
        )
        for n in (1, 2)
    ]
    by_pid = {service.process.pid: service for service in candidates if service.process}
    running = eventually(holder, what="a scheduler to take the lock")
    assert running in {label("scheduler", pid) for pid in by_pid}, running
    eventually(lambda: first_day.date().isoformat() in sealed_days(), what="the first day's seal")

    printed = json.loads(candidates[0].run_cli("stats", "--json", check=True).stdout)
    assert printed["scheduler"] == running

    # Another finished day comes in; the scheduler that would seal it dies with `kill -9`,
    # the child holding the lock and the service it belongs to.
    add_ledger_entry(second_day)
    dead = by_pid[int(running.rsplit(":", 1)[1])]
    survivor_pid = next(pid for pid, service in by_pid.items() if service is not dead)
    survivor = by_pid[survivor_pid]
    os.kill(background_child(dead, "arsip-scheduler"), signal.SIGKILL)
    dead.stop(signal.SIGKILL)

    new_holder = label("scheduler", survivor_pid)
    eventually(lambda: holder() == new_holder, what=f"{new_holder} to take over")
    eventually(lambda: second_day.date().isoformat() in sealed_days(), what="the takeover's seal")
    printed = json.loads(survivor.run_cli("stats", "--json", check=True).stdout)
    assert printed["scheduler"] == new_holder
    survivor_log = survivor.log_path.read_text()
    assert "this process runs the scheduled jobs" in survivor_log
    assert "ledger: sealed 1 day(s)" in survivor_log


def test_the_indexer_is_not_left_the_idle_cpu_time_of_the_worker(
    tmp_path: Path, start_service: StartService
) -> None:
    """Archiving waits for CPU time the intake leaves (SCHED_IDLE), but new mail must
    become searchable during a long import too: the indexer runs in its own process,
    niced below the intake but at normal scheduling."""
    service = start_service(service_env(tmp_path / "var", ARSIP_WEB_PORT="0"), "serve")
    indexer = background_child(service, "arsip-indexer")
    worker = background_child(service, "arsip-scheduler")
    assert os.sched_getscheduler(worker) == os.SCHED_IDLE
    assert os.sched_getscheduler(indexer) == os.SCHED_OTHER
    assert 0 < os.getpriority(os.PRIO_PROCESS, indexer) < 19
    send(service, 3, "indexed")
    service.wait_until_archived()

    def found() -> str | None:
        out = service.run_cli("search", "msgid:indexed-2@example.com").stdout
        return out if "indexed-2@example.com" in out else None

    eventually(found, what="the indexer to make the mail searchable")


@pytest.mark.parametrize(
    ("comm", "name"),
    [("arsip-scheduler", "arsip-scheduler+worker"), ("arsip-indexer", "arsip-indexer")],
)
def test_a_child_that_dies_stops_the_service(
    tmp_path: Path, start_service: StartService, comm: str, name: str
) -> None:
    """A service whose worker or indexer died would look alive while archiving nothing,
    or while nothing new became searchable: it stops with status 1 and says which child
    died, for its supervisor to restart it."""
    service = start_service(service_env(tmp_path / "var", ARSIP_WEB_PORT="0"), "serve")
    assert service.process is not None
    os.kill(background_child(service, comm), signal.SIGKILL)
    assert service.process.wait(timeout=DEADLINE) == 1
    log = service.log()
    assert f"{name} exited with status -9; stopping" in log
    assert "Traceback" not in log


def test_two_workers_archive_each_message_exactly_once(
    tmp_path: Path, postgres_url: str, start_service: StartService
) -> None:
    """Workers on several machines claim spool rows with SKIP LOCKED: every accepted
    message is archived by exactly one of them."""
    data_dir = tmp_path / "var"
    workers = [
        start_service(service_env(data_dir, postgres_url), f"worker-{n}", roles="worker")
        for n in (1, 2)
    ]
    intake = start_service(service_env(data_dir, postgres_url), "intake", roles="intake")

    accepted = send(intake, 200, "shared-spool")
    assert len(set(accepted)) == 200
    assert drained_stats(intake)["messages"] == 200

    # Each worker logs a line per message after its commit: wait for the last lines.
    def all_logged() -> list[list[str]] | None:
        shares = archived_by(workers)
        return shares if sum(map(len, shares)) >= len(accepted) else None

    shares = eventually(all_logged, what="the workers' log lines")
    archived = Counter(queue_id for share in shares for queue_id in share)
    assert set(archived) == set(accepted)
    assert max(archived.values()) == 1, archived.most_common(3)
    if not all(shares):  # both usually take a share; one that claimed every batch is no bug
        warnings.warn(f"one worker archived everything: {[len(s) for s in shares]}", stacklevel=1)


def test_the_service_refuses_a_whoosh_whose_files_it_cannot_vouch_for(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from archiver import service

    monkeypatch.setattr(service.importlib.metadata, "version", lambda name: "2.7.5")
    with pytest.raises(service.StartError, match=r"needs whoosh 2\.7\.4"):
        service.require_whoosh_version()
