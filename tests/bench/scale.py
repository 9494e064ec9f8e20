"""Scale-out benchmark: what a second process of a role adds, on one PostgreSQL database.

`arsip serve --role ...` lets a deployment run several intake, worker and indexer
processes against one PostgreSQL database and one data directory. This script measures,
for 1 and 2 processes (`--processes 1,2`) side by side in one run:

1. End to end, received -> searchable. An intake-only process (`--role intake`) takes N
   messages into the spool of a fresh database and is stopped, so the intake's speed does
   not limit what follows. The script then holds every spool row (`SELECT ... FOR
   UPDATE`: workers claim with `SKIP LOCKED`, so they find nothing), starts K
   `--role worker` and K `--role indexer` processes, waits until they are up and idle,
   and lets go of the rows. The clock runs from that commit until `spool_pending` and
   `index_pending` (`archiver.report.stats`) are both 0. The search backend is
   PostgreSQL full text (`ARSIP_SEARCH_BACKEND=postgres`): it is the one a scale-out
   deployment uses and the only one more than one process may write, so there is one
   indexer per worker. `--search-backend whoosh` runs a single indexer instead.
2. Intake: K `--role intake` processes on a fresh database with no worker, the same
   number of concurrent SMTP sessions (`--sessions`) spread round-robin over their
   ports; messages acknowledged with 250 per second.

Where the time goes is reported next to the rates:
- CPU seconds of each group of processes (workers, indexers, intakes, PostgreSQL, the
  SMTP client, this script) from /proc, and the whole machine's busy, iowait and idle
  shares from /proc/stat; what is busy beyond our processes is other load, and a run
  that shared the CPU with more than a quarter of a core of it is marked `*`. This
  matters more than usual: `arsip serve` runs its worker and indexer at the lowest CPU
  priority (SCHED_IDLE), so any other load on the machine starves them first.
- what the database sessions were doing, from `pg_stat_activity` sampled every 50 ms
  (running a statement, waiting for the archive lock, for the WAL flush of a commit or
  for the client, or idle in a transaction while the client parses and writes blobs), as
  the average number of sessions in each state; and, for a server on this machine, the
  CPU time of the sessions serving workers, indexers and intakes.
- the statements that took the database's time (`pg_stat_statements`, which the private
  cluster preloads; left out when a given server lacks it).
The logs are read too: a spool entry archived twice or a document indexed twice would
be duplicate work between processes, and the thread count must not depend on how many
workers archived the mail.

The mail is `ingest.py`'s generator: about 5 KB a message, 60 correspondents over five
domains, 30 % replies in threads, 15 % with a PDF, CSV or image attachment, encoded-word
headers. Every configuration gets a fresh database and a fresh data directory; nothing
runs the scheduler or the web UI.

PostgreSQL: by default the script starts a private cluster of Debian's `postgresql`
package (as the `postgres` user when run as root) on 127.0.0.1 and a free port, with
`fsync=on`, `synchronous_commit=on` and `full_page_writes=on`, because the commit that
makes a message durable is part of what is measured (`tests/with-postgres.sh` turns
fsync off, which would hide it). Its data lives under the temporary directory and only
its postmaster, by PID, is stopped at the end. `--database-url URL` uses a server that
is already running instead (a role that may CREATE DATABASE); the settings it reports
for fsync and synchronous_commit are printed.

    .venv/bin/python tests/bench/scale.py [--messages N] [--processes 1,2] [--rounds R]
                                          [--sessions S] [--search-backend postgres|whoosh]
                                          [--database-url URL] [--skip e2e|intake]

With `--rounds R` every measurement is repeated R times (1, 2, 1, 2, ...) and the table
shows the median of each, with every round's figure beneath: on a small shared machine
one run can be off by a few tens of percent.

Everything runs on 127.0.0.1. Every phase has a time limit. The figures are a
measurement, not a test: nothing is asserted about them. The exit status is 1 when a
message was refused or never became searchable, or a process could not be started.
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import json
import os
import platform
import re
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(Path(__file__).resolve().parent)]

import ingest  # noqa: E402
from ingest import (  # noqa: E402
    CLOCK_TICKS,
    HOST,
    SendResult,
    TreeMonitor,
    arsip_env,
    find_arsip,
    free_ports,
    generate,
    log_problems,
    process_tree,
    stop_process,
)
from sqlalchemy import Engine, create_engine, text  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402

from archiver.config import load_settings  # noqa: E402
from archiver.core import Core, build_core  # noqa: E402
from archiver.report import stats  # noqa: E402

MAX_MESSAGES = 200_000
MAX_PROCESSES = 16
MAX_ROUNDS = 10
BENCH_APP = "arsip-scale-bench"  # application_name of this script's own connections
ACTIVITY_INTERVAL = 0.05
POLL_INTERVAL = 0.2
DISTURBED_CORES = 0.25  # other processes using more than this mark a run with *
SETTLE_CPU_SHARE = 0.05  # processes count as idle below this share of a core
ARCHIVED_LINE = re.compile(r"queue_id=(\S+) archived as message (\d+)( \(copy)?")
INDEXED_LINE = re.compile(r"indexed (\d+) messages, removed (\d+)")


# ---------------------------------------------------------------------------------------
# PostgreSQL


class PrivatePostgres:
    """A throw-away PostgreSQL cluster with production durability, on 127.0.0.1.

    The server runs in the foreground as our child (under `runuser` when we are root), so
    its postmaster and backends are one process tree whose CPU time can be read, and
    stopping it means signalling the postmaster we started, by its PID.
    """

    def __init__(self, parent: str | None) -> None:
        binaries = sorted(
            glob.glob("/usr/lib/postgresql/*/bin/initdb"),
            key=lambda p: [int(n) for n in re.findall(r"\d+", p)],
        )
        if not binaries:
            raise SystemExit(
                "no PostgreSQL server found (/usr/lib/postgresql/*/bin): install Debian's "
                "postgresql package (apt-get install postgresql) or pass --database-url"
            )
        self.bindir = Path(binaries[-1]).parent
        self.port = free_ports(1)[0]
        self.root = Path(tempfile.mkdtemp(prefix="arsip-scale-pg-", dir=parent))
        self.as_root = os.geteuid() == 0
        if self.as_root:
            shutil.chown(self.root, "postgres", "postgres")
        self.data = self.root / "data"
        self.log_path = self.root / "server.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = f"postgresql+psycopg://postgres@{HOST}:{self.port}/postgres"

    def _command(self, *args: str) -> list[str]:
        return ["runuser", "-u", "postgres", "--", *args] if self.as_root else list(args)

    def start(self) -> PrivatePostgres:
        """initdb (synced, as a real installation) and start; wait until it answers."""
        subprocess.run(
            self._command(
                str(self.bindir / "initdb"),
                "-D",
                str(self.data),
                "-U",
                "postgres",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--locale=C.UTF-8",
            ),
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        settings = {
            "listen_addresses": HOST,
            "fsync": "on",
            "synchronous_commit": "on",
            "full_page_writes": "on",
            "max_connections": "200",
            # Which statements the database spends its time on (about 1 % overhead).
            "shared_preload_libraries": "pg_stat_statements",
        }
        options = [f"-c{name}={value}" for name, value in settings.items()]
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                self._command(
                    str(self.bindir / "postgres"),
                    "-D",
                    str(self.data),
                    "-p",
                    str(self.port),
                    "-k",
                    str(self.root),
                    *options,
                ),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        engine = create_engine(self.url)
        deadline = time.monotonic() + 60
        try:
            while True:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"postgres exited:\n{self.log_path.read_text()[-2000:]}")
                try:
                    with engine.connect() as connection:
                        connection.execute(text("SELECT 1"))
                    return self
                except Exception:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.2)
        finally:
            engine.dispose()

    def stop(self) -> None:
        """Fast shutdown of the postmaster we started, then remove its files."""
        if self.proc is not None and self.proc.poll() is None:
            postmaster = self._postmaster_pid()
            if postmaster is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(postmaster, signal.SIGINT)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                if postmaster is not None:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(postmaster, signal.SIGQUIT)
                self.proc.wait(timeout=30)
        shutil.rmtree(self.root, ignore_errors=True)

    def _postmaster_pid(self) -> int | None:
        """The postmaster's PID from its pid file, if it is one of our descendants."""
        assert self.proc is not None
        try:
            pid = int((self.data / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None
        return pid if pid in process_tree(self.proc.pid) else None


class Databases:
    """Fresh databases on one server, one per configuration, dropped afterwards."""

    def __init__(self, admin_url: str) -> None:
        self.admin_url = admin_url
        self.admin = create_engine(
            admin_url,
            isolation_level="AUTOCOMMIT",
            connect_args={"application_name": BENCH_APP},
        )
        self.statements = self._statements_available()

    def _statements_available(self) -> bool:
        """Whether the server keeps per-statement times (pg_stat_statements preloaded)."""
        try:
            with self.admin.connect() as connection:
                connection.execute(text("CREATE EXTENSION IF NOT EXISTS pg_stat_statements"))
                connection.execute(text("SELECT 1 FROM pg_stat_statements LIMIT 1")).all()
            return True
        except Exception:
            return False

    def reset_statements(self) -> None:
        """Forget statement times so far (all databases)."""
        if self.statements:
            with self.admin.connect() as connection:
                connection.execute(text("SELECT pg_stat_statements_reset()"))

    def top_statements(self, url: str, count: int = 6) -> list[str]:
        """The statements of `url`'s database that took the most time since the reset."""
        if not self.statements:
            return []
        query = text(
            "SELECT s.calls, s.total_exec_time, s.rows, s.query FROM pg_stat_statements s"
            " JOIN pg_database d ON d.oid = s.dbid WHERE d.datname = :name"
            " ORDER BY s.total_exec_time DESC LIMIT :count"
        )
        with self.admin.connect() as connection:
            rows = connection.execute(query, {"name": make_url(url).database, "count": count})
            return [
                f"{total / 1000:.1f} s in {calls:,} calls ({total / max(calls, 1):.2f} ms each,"
                f" {rows / max(calls, 1):,.0f} rows): {_shorten(statement)}"
                for calls, total, rows, statement in rows
            ]

    def server_settings(self) -> dict[str, str]:
        """What decides the cost of a commit, for the record."""
        names = ("server_version", "fsync", "synchronous_commit", "full_page_writes")
        names += ("wal_sync_method", "shared_buffers", "max_wal_size")
        with self.admin.connect() as connection:
            return {name: str(connection.execute(text(f"SHOW {name}")).scalar()) for name in names}

    def create(self, label: str) -> str:
        """A new empty database; returns its URL."""
        name = f"arsip_scale_{label}_{secrets.token_hex(4)}"
        with self.admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
        return make_url(self.admin_url).set(database=name).render_as_string(hide_password=False)

    def checkpoint(self) -> None:
        """Start each measurement with no dirty buffers left by the one before."""
        with contextlib.suppress(Exception), self.admin.connect() as connection:
            connection.execute(text("CHECKPOINT"))

    def drop(self, url: str) -> None:
        name = make_url(url).database
        with self.admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))

    def close(self) -> None:
        self.admin.dispose()


def _shorten(statement: str, width: int = 110) -> str:
    """One line of a statement, long parameter lists folded."""
    flat = re.sub(r"\s+", " ", statement).strip()
    flat = re.sub(r"(\$\d+(?:::\w+(?:\(\d+\))?)?, ){3,}", "$.., ", flat)
    return flat if len(flat) <= width else flat[: width - 3] + "..."


def bench_engine(url: str, **options: Any) -> Engine:
    """An engine for this script's own queries, named so the activity sampler skips them."""
    return create_engine(url, connect_args={"application_name": BENCH_APP}, **options)


# ---------------------------------------------------------------------------------------
# Watching: CPU of the machine, and what the database sessions do


def machine_ticks() -> dict[str, int]:
    """Cumulative CPU ticks of the whole machine by kind, from /proc/stat."""
    with open("/proc/stat") as handle:
        values = [int(v) for v in handle.readline().split()[1:9]]
    user, nice, system, idle, iowait, irq, softirq, steal = values
    return {
        "busy": user + nice + system + irq + softirq + steal,
        "iowait": iowait,
        "idle": idle,
    }


def machine_shares(before: dict[str, int], after: dict[str, int]) -> dict[str, float]:
    """Busy, iowait and idle as shares of all the machine's CPU time in between."""
    delta = {kind: after[kind] - before[kind] for kind in before}
    total = sum(delta.values()) or 1
    return {kind: value / total for kind, value in delta.items()}


def _statement(query: str) -> str:
    """A short name for a statement: its verb and first table."""
    words = query.strip().split(None, 1)
    if not words:
        return "?"
    verb = words[0].upper()
    if "pg_advisory_xact_lock" in query:
        return "advisory lock"
    if verb in {"COMMIT", "BEGIN", "ROLLBACK"}:
        return verb
    table = re.search(r"\b(?:INTO|FROM|UPDATE)\s+\"?(\w+)", query, re.IGNORECASE)
    return f"{verb} {table.group(1)}" if table else verb


def classify(state: str, wait_type: str | None, wait_event: str | None, query: str) -> str:
    """What one database session is doing, in words."""
    what = _statement(query or "")
    if state.startswith("idle in transaction"):
        return f"idle in transaction (client working), last {what}"
    if wait_type == "Lock" and wait_event == "advisory":
        return "waiting for an advisory lock (archive lock)"
    if wait_type in {"IO", "LWLock"} and wait_event and wait_event.startswith("WAL"):
        return f"{what}: waiting for WAL ({wait_event})"
    if wait_type == "Client":
        return f"{what}: waiting for the client ({wait_event})"
    if wait_type:
        return f"{what}: waiting ({wait_type}/{wait_event})"
    return f"{what}: running"


def backend_role(query: str) -> str | None:
    """Which kind of Arsip process a database session serves, judging by a statement it
    ran (pooled connections keep serving one process, so one telling statement is enough)."""
    if "search_documents" in query:
        return "indexer"
    if "INTO spool" in query or "intake_ledger" in query:
        return "intake"
    if "pg_advisory_xact_lock" in query or "INTO messages" in query or "FROM spool" in query:
        return "worker"
    return None


def _backend_ticks(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            fields = handle.read().rsplit(b")", 1)[1].split()
        return int(fields[11]) + int(fields[12])
    except (OSError, IndexError, ValueError):
        return None


class ActivitySampler:
    """Samples pg_stat_activity of one database every `ACTIVITY_INTERVAL` seconds: what
    the sessions do, and (when the server runs on this machine) the CPU time of each
    session's backend process, charged to the kind of Arsip process it serves."""

    def __init__(self, url: str, local: bool) -> None:
        self.engine = bench_engine(url, pool_size=1)
        self.local = local
        self.samples = 0
        self.states: Counter[str] = Counter()
        self.roles: dict[int, str] = {}
        self.first_ticks: dict[int, int] = {}
        self.last_ticks: dict[int, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="activity", daemon=True)

    def __enter__(self) -> ActivitySampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.engine.dispose()

    def _run(self) -> None:
        query = text(
            "SELECT pid, state, wait_event_type, wait_event, query FROM pg_stat_activity"
            " WHERE datname = current_database() AND backend_type = 'client backend'"
            " AND application_name <> :me"
        )
        with self.engine.connect() as connection:
            connection.execution_options(isolation_level="AUTOCOMMIT")
            while True:
                rows = connection.execute(query, {"me": BENCH_APP}).all()
                self.samples += 1
                for pid, state, wait_type, wait_event, statement in rows:
                    self._see(pid, statement or "")
                    if state != "idle":
                        self.states[classify(state or "", wait_type, wait_event, statement)] += 1
                if self._stop.wait(ACTIVITY_INTERVAL):
                    break
            for pid in self.last_ticks:
                self._see(pid, "")

    def _see(self, pid: int, statement: str) -> None:
        role = backend_role(statement)
        if role is not None:
            self.roles.setdefault(pid, role)
        if self.local:
            ticks = _backend_ticks(pid)
            if ticks is not None:
                self.first_ticks.setdefault(pid, ticks)
                self.last_ticks[pid] = ticks

    def top(self, count: int = 8, floor: float = 0.02) -> list[tuple[str, float]]:
        """The commonest states, as the average number of sessions in each."""
        if not self.samples:
            return []
        return [
            (state, n / self.samples)
            for state, n in self.states.most_common(count)
            if n / self.samples >= floor
        ]

    def backend_cpu(self) -> dict[str, float]:
        """CPU seconds of the database sessions, by the kind of process they serve."""
        found: Counter[str] = Counter()
        for pid, last in self.last_ticks.items():
            found[self.roles.get(pid, "other")] += (last - self.first_ticks[pid]) / CLOCK_TICKS
        return dict(found)


# ---------------------------------------------------------------------------------------
# The service's processes


class ArsipProcess:
    """One `arsip serve --role ROLES` with its own ports and log file."""

    def __init__(
        self, command: str, workdir: Path, name: str, roles: str, base_env: dict[str, str]
    ) -> None:
        self.name = name
        self.roles = roles
        ports = free_ports(3)
        self.smtp_port = ports[0]
        self.env = {
            **base_env,
            "ARSIP_SMTP_PORT": str(ports[0]),
            "ARSIP_LMTP_PORT": str(ports[1]),
            "ARSIP_WEB_PORT": str(ports[2]),
        }
        self.log_path = workdir / f"{name}.log"
        self._log = open(self.log_path, "wb")  # noqa: SIM115  (closed in stop())
        self.proc = subprocess.Popen(
            [command, "serve", "--role", roles],
            cwd=workdir,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        self.monitor = TreeMonitor(self.proc.pid).start()
        self.cpu_mark = 0.0

    def up(self) -> bool:
        """Whether it is serving: SMTP answers for an intake, the log says so otherwise."""
        if self.proc.poll() is not None:
            raise RuntimeError(f"{self.name} exited with {self.proc.returncode}:\n{self.log()}")
        if "intake" in self.roles.split(","):
            try:
                with socket.create_connection((HOST, self.smtp_port), timeout=2) as sock:
                    return sock.recv(512).startswith(b"220")
            except OSError:
                return False
        return "arsip is up" in self.log()

    def mark(self) -> None:
        """Remember the CPU time so far; `cpu()` counts from here."""
        self.monitor.sample()
        self.cpu_mark = self.monitor.cpu_seconds()

    def cpu(self) -> float:
        """CPU seconds of the process and its children since `mark()`."""
        self.monitor.sample()
        return self.monitor.cpu_seconds() - self.cpu_mark

    def log(self) -> str:
        return self.log_path.read_text("utf-8", "replace")

    def stop(self) -> None:
        """SIGTERM to the process we started, then any child of it that lingers."""
        self.monitor.stop()
        stop_process(self.proc, self.monitor.members())
        self._log.close()


def wait_up(processes: Sequence[ArsipProcess], timeout: float = 120) -> None:
    """Wait until every process serves, then until together they use (almost) no CPU:
    a freshly spawned child spends a second or two importing before it works."""
    deadline = time.monotonic() + timeout
    while not all(process.up() for process in processes):
        if time.monotonic() > deadline:
            raise RuntimeError(f"not up after {timeout:.0f} s: {processes[0].log()[-2000:]}")
        time.sleep(0.2)
    last = sum(process.cpu() for process in processes)
    while time.monotonic() < deadline:
        time.sleep(0.5)
        now = sum(process.cpu() for process in processes)
        if now - last < 0.5 * SETTLE_CPU_SHARE:
            return
        last = now


def stop_all(processes: Sequence[ArsipProcess]) -> None:
    """Stop processes in parallel: a stopping worker may take a while to finish a batch."""
    threads = [threading.Thread(target=process.stop) for process in processes]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


# ---------------------------------------------------------------------------------------
# The two measurements


@dataclass
class Where:
    """Where the time of one measured phase went."""

    seconds: float = 0.0
    cpu: dict[str, list[float]] = field(default_factory=dict)  # group -> per process
    machine: dict[str, float] = field(default_factory=dict)
    activity: list[tuple[str, float]] = field(default_factory=list)
    statements: list[str] = field(default_factory=list)
    pg_sessions: dict[str, float] = field(default_factory=dict)  # role -> CPU s

    @property
    def other_cores(self) -> float:
        """Cores kept busy by processes not ours (and the kernel) during the phase."""
        ours = sum(sum(values) for values in self.cpu.values()) / (self.seconds or 1e-9)
        return max(0.0, self.machine.get("busy", 0) * (os.cpu_count() or 1) - ours)

    def lines(self) -> list[str]:
        """Human-readable lines for the report."""
        wall = self.seconds or 1e-9
        parts = []
        for group, values in self.cpu.items():
            each = " + ".join(f"{v:.1f}" for v in values) if len(values) > 1 else ""
            parts.append(
                f"{group} {sum(values):.1f}"
                + (f" ({each})" if each else "")
                + f" = {sum(values) / wall:.2f} cores"
            )
        total = sum(sum(values) for values in self.cpu.values())
        out = [f"CPU s over {self.seconds:.1f} s: " + "; ".join(parts)]
        cores = os.cpu_count() or 1
        other = self.other_cores
        out.append(
            f"all of it {total:.1f} CPU s = {total / wall:.2f} of {cores} cores; "
            f"machine busy {self.machine.get('busy', 0):.0%}, iowait "
            f"{self.machine.get('iowait', 0):.0%}, idle {self.machine.get('idle', 0):.0%}"
            f" (processes not ours, and the kernel's own work: {other:.2f} cores)"
        )
        if self.activity:
            out.append(
                "database sessions (average number in each state): "
                + "; ".join(f"{state} {mean:.2f}" for state, mean in self.activity)
            )
        if self.pg_sessions:
            postgres = sum(self.cpu.get("postgres", [0.0]))
            rest = postgres - sum(self.pg_sessions.values())
            out.append(
                "postgres CPU s by whom its sessions serve: "
                + ", ".join(f"{role} {v:.1f}" for role, v in sorted(self.pg_sessions.items()))
                + f"; the rest (its background processes, this script's sessions) {rest:.1f}"
            )
        if self.statements:
            out.append("statements that took the database's time:")
            out += [f"  {line}" for line in self.statements]
        return out


@dataclass
class IntakeResult:
    """K intake processes taking the same mail."""

    processes: int
    sessions: int
    send: SendResult
    spooled: int
    where: Where
    problems: list[str]

    @property
    def rate(self) -> float:
        return self.send.rate


@dataclass
class EndToEndResult:
    """K workers (and indexers) draining the same spool."""

    processes: int
    indexers: int
    fill_rate: float
    messages: int
    spool_empty_s: float | None
    searchable_s: float | None
    archived: int
    threads: int
    documents: int
    duplicates: int
    copies: int
    indexed_lines: int
    batches: dict[str, int]
    where: Where
    problems: list[str]

    @property
    def rate(self) -> float | None:
        return self.messages / self.searchable_s if self.searchable_s else None

    @property
    def archive_rate(self) -> float | None:
        return self.messages / self.spool_empty_s if self.spool_empty_s else None


class Stats:
    """`archiver.report.stats` on the configuration's database, in one snapshot a call
    (REPEATABLE READ): it counts the index queue before the spool, so under READ
    COMMITTED a batch committed in between could look like spool and queue both empty."""

    def __init__(self, env: dict[str, str]) -> None:
        settings = load_settings(environ=env, config_file=Path("/nonexistent/arsip.toml"))
        self.core: Core = build_core(settings)
        self.engine = bench_engine(settings.database_url, isolation_level="REPEATABLE READ")

    def __call__(self) -> dict[str, Any]:
        with self.core.sessions(bind=self.engine) as session:
            return dict(stats(session))

    def scalar(self, sql: str) -> int:
        with self.engine.connect() as connection:
            return int(connection.execute(text(sql)).scalar() or 0)

    def close(self) -> None:
        self.engine.dispose()
        self.core.engine.dispose()


def configuration_env(workdir: Path, database_url: str, backend: str) -> dict[str, str]:
    env = arsip_env(workdir / "data", free_ports(3))
    env.update(
        ARSIP_DATABASE_URL=database_url,
        ARSIP_SEARCH_BACKEND=backend,
        ARSIP_LOG_LEVEL="INFO",  # one line per message: how duplicate work is found
    )
    return env


def all_problems(processes: Sequence[ArsipProcess]) -> list[str]:
    found = []
    for process in processes:
        found += [f"{process.name}: {problem}" for problem in log_problems(process.log())]
    return found


def run_intake(
    command: str, root: Path, dbs: Databases, k: int, args: argparse.Namespace
) -> IntakeResult:
    """K intake processes, no worker: how fast the same sessions get their 250s."""
    print(f"- intake, {k} process(es): starting ...", end=" ", flush=True)
    workdir = Path(tempfile.mkdtemp(prefix=f"intake-{k}-", dir=root))
    url = dbs.create(f"intake{k}")
    env = configuration_env(workdir, url, args.search_backend)
    processes: list[ArsipProcess] = []
    figures = Stats(env)
    try:
        # The first one migrates the new database; the others would only wait for it.
        processes.append(ArsipProcess(command, workdir, "intake-1", "intake", env))
        wait_up(processes)
        for number in range(2, k + 1):
            processes.append(ArsipProcess(command, workdir, f"intake-{number}", "intake", env))
        wait_up(processes)
        dbs.checkpoint()
        dbs.reset_statements()
        print("sending ...", end=" ", flush=True)
        for process in processes:
            process.mark()
        before = machine_ticks()
        bench_cpu = os.times()
        pg_mark = args.pg_cpu()
        with ActivitySampler(url, args.local_pg) as activity:
            sent = ingest.send_all(
                [p.smtp_port for p in processes],
                args.messages,
                args.sessions,
                args.client_procs,
                args.send_timeout,
            )
        after = machine_ticks()
        own = os.times()
        where = Where(
            seconds=sent.seconds,
            cpu={
                "intake": [p.cpu() for p in processes],
                "postgres": [args.pg_cpu() - pg_mark],
                "smtp client": [sent.client_cpu],
                "this script": [own.user + own.system - bench_cpu.user - bench_cpu.system],
            },
            machine=machine_shares(before, after),
            activity=activity.top(),
            statements=dbs.top_statements(url),
            pg_sessions=activity.backend_cpu(),
        )
        spooled = int(figures()["spool_pending"])
        print(f"{sent.rate:,.0f} msgs/s acknowledged", flush=True)
    finally:
        stop_all(processes)
        figures.close()
        dbs.drop(url)
    return IntakeResult(k, args.sessions, sent, spooled, where, all_problems(processes))


def fill_spool(
    command: str, workdir: Path, env: dict[str, str], args: argparse.Namespace
) -> SendResult:
    """Send the mail through one intake-only process, then stop it."""
    intake = ArsipProcess(command, workdir, "fill-intake", "intake", env)
    try:
        wait_up([intake])
        return ingest.send_all(
            [intake.smtp_port], args.messages, args.sessions, args.client_procs, args.send_timeout
        )
    finally:
        intake.stop()


@contextlib.contextmanager
def spool_held(url: str) -> Iterator[int]:
    """Every spool row locked by this script until the block ends; yields how many.

    Workers claim with `FOR UPDATE SKIP LOCKED`, so until then they find nothing to do
    and can start, import and settle without the clock running.
    """
    engine = bench_engine(url)
    try:
        with engine.connect() as connection:
            held = len(connection.execute(text("SELECT id FROM spool FOR UPDATE")).all())
            yield held
            connection.commit()
    finally:
        engine.dispose()


def run_end_to_end(
    command: str, root: Path, dbs: Databases, k: int, args: argparse.Namespace
) -> EndToEndResult:
    """Fill the spool, then time K workers and their indexers until all is searchable."""
    indexers = k if args.search_backend == "postgres" else 1
    print(f"- end to end, {k} worker(s), {indexers} indexer(s): filling ...", end=" ", flush=True)
    workdir = Path(tempfile.mkdtemp(prefix=f"e2e-{k}-", dir=root))
    url = dbs.create(f"e2e{k}")
    env = configuration_env(workdir, url, args.search_backend)
    figures = Stats(env)
    processes: list[ArsipProcess] = []
    spool_empty_s = searchable_s = None
    try:
        filled = fill_spool(command, workdir, env, args)
        problems = [f"fill: {kind} x{n}" for kind, n in filled.failures.items()]
        print(f"{filled.rate:,.0f} msgs/s; starting ...", end=" ", flush=True)
        with spool_held(url) as held:
            for number in range(1, k + 1):
                processes.append(ArsipProcess(command, workdir, f"worker-{number}", "worker", env))
            for number in range(1, indexers + 1):
                processes.append(
                    ArsipProcess(command, workdir, f"indexer-{number}", "indexer", env)
                )
            wait_up(processes)
            dbs.checkpoint()
            dbs.reset_statements()
            for process in processes:
                process.mark()
            pg_mark = args.pg_cpu()
            before = machine_ticks()
            bench_cpu = os.times()
            print(f"draining {held:,} ...", end=" ", flush=True)
        began = time.monotonic()
        last_change, last_left = began, -1
        polls_since_empty = 0
        with ActivitySampler(url, args.local_pg) as activity:
            while True:
                now = time.monotonic()
                figure = figures()
                spool, queue = int(figure["spool_pending"]), int(figure["index_pending"])
                if spool == 0 and spool_empty_s is None:
                    spool_empty_s = now - began
                if spool == 0 and queue == 0:
                    searchable_s = now - began
                    break
                polls_since_empty += spool == 0
                if spool + queue != last_left:
                    last_change, last_left = now, spool + queue
                if now - began > args.drain_timeout or now - last_change > args.stall_timeout:
                    problems.append(f"gave up with {spool} in the spool, {queue} to index")
                    break
                for process in processes:
                    if process.proc.poll() is not None:
                        raise RuntimeError(f"{process.name} exited:\n{process.log()[-2000:]}")
                time.sleep(POLL_INTERVAL)
        seconds = time.monotonic() - began
        after = machine_ticks()
        own = os.times()
        where = Where(
            seconds=seconds,
            cpu={
                "workers": [p.cpu() for p in processes if p.roles == "worker"],
                "indexers": [p.cpu() for p in processes if p.roles == "indexer"],
                "postgres": [args.pg_cpu() - pg_mark],
                "this script": [own.user + own.system - bench_cpu.user - bench_cpu.system],
            },
            machine=machine_shares(before, after),
            activity=activity.top(),
            statements=dbs.top_statements(url),
            pg_sessions=activity.backend_cpu(),
        )
        archived = int(figures()["messages"])
        threads = figures.scalar("SELECT count(DISTINCT thread_id) FROM messages")
        documents = (
            figures.scalar("SELECT count(*) FROM search_documents")
            if args.search_backend == "postgres"
            else -1
        )
        rate = args.messages / searchable_s if searchable_s else 0.0
        print(f"{rate:,.0f} msgs/s searchable", flush=True)
    finally:
        stop_all(processes)
        figures.close()
        dbs.drop(url)
    duplicates, copies, indexed, batches = count_work(processes)
    problems += all_problems(processes)
    return EndToEndResult(
        processes=k,
        indexers=indexers,
        fill_rate=filled.rate,
        messages=filled.ok,
        spool_empty_s=spool_empty_s,
        searchable_s=searchable_s,
        archived=archived,
        threads=threads,
        documents=documents,
        duplicates=duplicates,
        copies=copies,
        indexed_lines=indexed,
        batches=batches,
        where=where,
        problems=problems,
    )


def count_work(processes: Sequence[ArsipProcess]) -> tuple[int, int, int, dict[str, int]]:
    """From the logs: spool entries archived more than once, archived copies of a known
    message, documents the indexers wrote in all, and messages archived per process."""
    seen: Counter[str] = Counter()
    copies = indexed = 0
    per_process: dict[str, int] = {}
    for process in processes:
        text_ = process.log()
        done = 0
        for match in ARCHIVED_LINE.finditer(text_):
            seen[match.group(1)] += 1
            copies += match.group(3) is not None
            done += 1
        for match in INDEXED_LINE.finditer(text_):
            indexed += int(match.group(1))
            done += int(match.group(1))
        per_process[process.name] = done
    duplicates = sum(n - 1 for n in seen.values() if n > 1)
    return duplicates, copies, indexed, per_process


# ---------------------------------------------------------------------------------------
# Report


def _fmt(value: float | None, spec: str = ",.0f") -> str:
    return "-" if value is None else format(value, spec)


def _ratio(value: float | None, base: float | None) -> str:
    return f"{value / base:.2f}x" if value and base else "-"


def _disturbed(result: EndToEndResult | IntakeResult) -> str:
    """A mark for a run during which other processes took a noticeable share of the CPU."""
    return "*" if result.where.other_cores > DISTURBED_CORES else ""


def _clean(
    results: Sequence[EndToEndResult] | Sequence[IntakeResult], k: int
) -> list[EndToEndResult | IntakeResult]:
    """The runs with `k` processes that had the machine to themselves, or all of them if
    none did."""
    runs = [r for r in results if r.processes == k]
    return [r for r in runs if not _disturbed(r)] or runs


def _median(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return statistics.median(known) if known else None


def print_table(
    levels: Sequence[int], e2e: Sequence[EndToEndResult], intake: Sequence[IntakeResult]
) -> None:
    """One row per figure, one column per process count (the median over the rounds,
    leaving out disturbed runs when undisturbed ones exist), and the ratios to the first
    count."""
    header = ["", *(f"{k} process{'es' if k > 1 else ''}" for k in levels)]
    header += [f"{k} vs {levels[0]}" for k in levels[1:]]
    rows: list[list[str]] = []

    def row(
        name: str,
        results: Sequence[EndToEndResult] | Sequence[IntakeResult],
        value: Callable[[Any], float | None],
        spec: str = ",.0f",
        ratio: bool = True,
    ) -> None:
        values = [_median([value(r) for r in _clean(results, k)]) for k in levels]
        cells = [name, *(_fmt(v, spec) for v in values)]
        cells += [_ratio(v, values[0]) if ratio else "" for v in values[1:]]
        rows.append(cells)

    def each(name: str, results: Sequence[EndToEndResult] | Sequence[IntakeResult]) -> None:
        runs = [[r for r in results if r.processes == k] for k in levels]
        if max(len(r) for r in runs) > 1:
            cells = [" / ".join(_fmt(r.rate) + _disturbed(r) for r in run) for run in runs]
            rows.append([name, *cells, *([""] * (len(levels) - 1))])

    def cores(result: EndToEndResult | IntakeResult) -> float:
        return sum(sum(v) for v in result.where.cpu.values()) / (result.where.seconds or 1e-9)

    if e2e:
        row("end to end: received -> searchable, msgs/s", e2e, lambda r: r.rate)
        each("  each round, msgs/s", e2e)
        row("  archived (spool empty), msgs/s", e2e, lambda r: r.archive_rate)
        row("  seconds until spool empty", e2e, lambda r: r.spool_empty_s, ".1f", False)
        row("  seconds until searchable", e2e, lambda r: r.searchable_s, ".1f", False)
        row("  CPU cores used by our processes", e2e, cores, ".2f", False)
    if intake:
        row("intake: acknowledged msgs/s", intake, lambda r: r.rate)
        each("  each round, msgs/s", intake)
        row("  CPU cores used by our processes", intake, cores, ".2f", False)
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    for cells in [header, *rows]:
        first = cells[0].ljust(widths[0])
        rest = (cell.rjust(width) for cell, width in zip(cells[1:], widths[1:], strict=True))
        print("  ".join([first, *rest]))
    disturbed = [r for r in [*e2e, *intake] if _disturbed(r)]
    if disturbed:
        print(
            f"* {len(disturbed)} run(s) shared the CPU with other processes (more than "
            f"{DISTURBED_CORES} of a core on average; see 'processes not ours' below); "
            "the figures above are medians of the other runs where there are any"
        )


def print_details(e2e: Sequence[EndToEndResult], intake: Sequence[IntakeResult]) -> None:
    for result in e2e:
        documents = f"{result.documents:,}" if result.documents >= 0 else "- (whoosh)"
        per_process = ", ".join(f"{name} {n:,}" for name, n in result.batches.items())
        print(
            f"end to end, {result.processes} worker(s) + {result.indexers} indexer(s): "
            f"{result.messages:,} spooled (fill at {result.fill_rate:,.0f} msgs/s), "
            f"{result.archived:,} archived in {result.threads:,} threads, search_documents "
            f"{documents}; entries archived twice {result.duplicates}, copies of known "
            f"messages {result.copies}, documents indexed {result.indexed_lines:,}; "
            f"per process {per_process}"
        )
        for line in result.where.lines():
            print(f"  {line}")
        for problem in result.problems:
            print(f"  problem: {problem}")
    for result in intake:
        print(
            f"intake, {result.processes} process(es), {result.sessions} sessions "
            f"({result.send.client_procs} client process(es)): {result.send.ok:,} acknowledged, "
            f"{result.send.failed} refused, {result.spooled:,} in the spool"
        )
        for line in result.where.lines():
            print(f"  {line}")
        for name, number in result.send.failures.items():
            print(f"  failures {name}: {number}")
        for sample in result.send.samples:
            print(f"  e.g. {sample}")
        for problem in result.problems:
            print(f"  problem: {problem}")


def summary(
    args: argparse.Namespace, e2e: Sequence[EndToEndResult], intake: Sequence[IntakeResult]
) -> dict[str, Any]:
    def where(w: Where) -> dict[str, Any]:
        return {
            "seconds": round(w.seconds, 2),
            "cpu_s": {group: [round(v, 2) for v in values] for group, values in w.cpu.items()},
            "machine": {kind: round(share, 3) for kind, share in w.machine.items()},
        }

    return {
        "messages": args.messages,
        "sessions": args.sessions,
        "search_backend": args.search_backend,
        "cores": os.cpu_count(),
        "end_to_end": [
            {
                "workers": r.processes,
                "indexers": r.indexers,
                "searchable_msgs_per_s": None if r.rate is None else round(r.rate, 1),
                "archived_msgs_per_s": None if r.archive_rate is None else round(r.archive_rate, 1),
                "archived": r.archived,
                "threads": r.threads,
                "duplicates": r.duplicates,
                **where(r.where),
            }
            for r in e2e
        ],
        "intake": [
            {"processes": r.processes, "acked_msgs_per_s": round(r.rate, 1), **where(r.where)}
            for r in intake
        ],
    }


# ---------------------------------------------------------------------------------------
# Main


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command line options, with limits so a typo cannot start an endless run."""
    parser = argparse.ArgumentParser(
        description="Measure what a second worker or intake process adds on PostgreSQL."
    )
    parser.add_argument("--messages", type=int, default=5_000, help="messages per measurement")
    parser.add_argument(
        "--processes", default="1,2", help="comma-separated process counts to compare"
    )
    parser.add_argument(
        "--rounds", type=int, default=1, help="repeat everything; the table shows medians"
    )
    parser.add_argument(
        "--sessions", type=int, default=32, help="concurrent SMTP sessions (all intakes together)"
    )
    parser.add_argument(
        "--client-procs",
        type=int,
        default=0,
        help="SMTP client processes (0: one per two cores, at least one)",
    )
    parser.add_argument(
        "--search-backend",
        choices=("postgres", "whoosh"),
        default="postgres",
        help="postgres: one indexer per worker; whoosh: one indexer",
    )
    parser.add_argument(
        "--database-url",
        default="",
        help="an existing PostgreSQL server to use (default: start a private one)",
    )
    parser.add_argument(
        "--skip", choices=("e2e", "intake"), action="append", default=[], help="leave one out"
    )
    parser.add_argument("--send-timeout", type=float, default=900.0, help="limit per send")
    parser.add_argument("--drain-timeout", type=float, default=1800.0, help="limit per drain")
    parser.add_argument(
        "--stall-timeout", type=float, default=120.0, help="give up when nothing moves"
    )
    parser.add_argument("--arsip", default="", help="the arsip command (default: next to python)")
    parser.add_argument("--tmp", default=None, help="where to make the temporary directories")
    args = parser.parse_args(argv)
    try:
        args.levels = [int(part) for part in args.processes.split(",") if part.strip()]
    except ValueError:
        parser.error("--processes takes numbers like 1,2")
    if not args.levels or not all(1 <= k <= MAX_PROCESSES for k in args.levels):
        parser.error(f"--processes: each count must be between 1 and {MAX_PROCESSES}")
    if not 1 <= args.rounds <= MAX_ROUNDS:
        parser.error(f"--rounds must be between 1 and {MAX_ROUNDS}")
    if not 1 <= args.messages <= MAX_MESSAGES:
        parser.error(f"--messages must be between 1 and {MAX_MESSAGES}")
    if not 1 <= args.sessions <= ingest.MAX_SESSIONS:
        parser.error(f"--sessions must be between 1 and {ingest.MAX_SESSIONS}")
    args.client_procs = args.client_procs or max(1, (os.cpu_count() or 1) // 2)
    return args


def _raise_interrupt(signum: int, _frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: Sequence[str] | None = None) -> int:
    """Run both measurements for every process count; print the table and the details."""
    args = parse_args(argv)
    command = find_arsip(args.arsip)
    signal.signal(signal.SIGTERM, _raise_interrupt)  # clean up on SIGTERM as on Ctrl-C
    print(
        f"machine: {os.cpu_count()} cores ({len(os.sched_getaffinity(0))} usable), "
        f"{platform.machine()}, Python {platform.python_version()}, "
        f"{platform.system()} {platform.release()}"
    )
    before = machine_ticks()
    time.sleep(1.0)
    idle_check = machine_shares(before, machine_ticks())
    print(f"machine before the run: {idle_check['busy']:.0%} busy")
    if idle_check["busy"] > 0.1:
        print("warning: something else is using the CPU; the figures will show it")
    seconds, mean, multipart, replies = generate(args.messages)
    print(
        f"mail: {args.messages:,} messages, mean {mean:,.0f} bytes, {multipart} multipart, "
        f"{replies} replies; generated in {seconds:.1f} s"
    )
    root = Path(tempfile.mkdtemp(prefix="arsip-scale-", dir=args.tmp))
    server: PrivatePostgres | None = None
    dbs: Databases | None = None
    e2e: list[EndToEndResult] = []
    intake: list[IntakeResult] = []
    try:
        if args.database_url:
            admin_url = args.database_url
            args.pg_cpu = lambda: 0.0  # another machine's, or not ours to watch
            args.local_pg = False
        else:
            server = PrivatePostgres(args.tmp).start()
            admin_url = server.url
            pg_monitor = TreeMonitor(server.proc.pid if server.proc else 0).start()

            def pg_cpu() -> float:
                pg_monitor.sample()
                return pg_monitor.cpu_seconds()

            args.pg_cpu = pg_cpu
            args.local_pg = True
        dbs = Databases(admin_url)
        shown = ", ".join(f"{k}={v}" for k, v in dbs.server_settings().items())
        where = "private cluster" if server else "given server"
        print(f"postgres ({where}): {shown}")
        print(
            f"search backend: {args.search_backend} "
            + (
                "(one indexer process per worker process)"
                if args.search_backend == "postgres"
                else "(one indexer process: whoosh has a single writer)"
            )
        )
        print(f"SMTP: {args.sessions} sessions from {args.client_procs} client process(es)")
        for number in range(1, args.rounds + 1):
            if args.rounds > 1:
                print(f"round {number} of {args.rounds}")
            if "e2e" not in args.skip:
                for k in args.levels:
                    e2e.append(run_end_to_end(command, root, dbs, k, args))
            if "intake" not in args.skip:
                for k in args.levels:
                    intake.append(run_intake(command, root, dbs, k, args))
    except KeyboardInterrupt:
        print("\ninterrupted; cleaning up", file=sys.stderr)
        return 130
    finally:
        if dbs is not None:
            dbs.close()
        if server is not None:
            server.stop()
        shutil.rmtree(root, ignore_errors=True)
        ingest._PAYLOADS.clear()

    print()
    print_table(args.levels, e2e, intake)
    print()
    print_details(e2e, intake)
    print(json.dumps(summary(args, e2e, intake), separators=(",", ":")))
    lost = any(r.searchable_s is None or r.archived != r.messages for r in e2e)
    refused = any(r.send.failed or r.spooled != r.send.ok for r in intake)
    return 1 if lost or refused else 0


if __name__ == "__main__":
    sys.exit(main())
