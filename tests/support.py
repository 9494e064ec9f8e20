"""Helpers the tests share: a real `arsip serve` process and small messages."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import smtplib
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import NoReturn, TypeVar

import dns.message
import dns.rcode
import dns.rdatatype
import dns.rrset
import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from archiver.config import Settings, load_settings
from archiver.core import Core, build_core
from archiver.report import stats
from lists.dmarc import DmarcLookup
from tests.cli_runner import run_arsip_here

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT / "tests" / "fixtures" / "corpus"  # real mail, with its SOURCES.md
# Test tables and HTML attack documents that travel with the corpus but are not messages.
NOT_MAIL = {".json", ".tsv", ".md", ".html"}
ARSIP = str(Path(sys.executable).with_name("arsip"))
POSTGRES_URL = os.environ.get("ARSIP_TEST_POSTGRES_URL")

JOURNAL = "journal@archive.test"
JOURNAL_DOMAIN = "bcc.example.com"
ORIGINAL_DOMAIN = "example.com"
LIST_DOMAIN = "lists.example.com"
# The list the list stories share (see the `lists_service` fixture), and its people.
LIST = f"dev@{LIST_DOMAIN}"
OWNER = "owner@example.com"
ANN = "ann@example.org"
BOB = "bob@example.net"
STRANGER = "stranger@example.net"


def children_of(pid: int) -> list[int]:
    """The PIDs of a process's children (the spool worker and web processes), from /proc."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found += [int(child) for child in (task / "children").read_text().split()]
        except OSError:
            continue
    return found


T = TypeVar("T")


def eventually(
    check: Callable[[], T],
    timeout: float = 60,
    what: str | Callable[[], str] = "the condition",
    interval: float = 0.1,
) -> T:
    """Call `check` until it returns something true, and return that; fail after `timeout`.

    The one way the tests wait for the service. The deadline is generous because the
    worker runs at idle priority and tests run side by side: a slow machine makes a test
    slower, never wrong. `what` (or what it returns, read only on failure) says what was
    awaited, with the service's log where that helps.
    """
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(
                f"timed out after {timeout:g} s waiting for " + (what() if callable(what) else what)
            )
        time.sleep(interval)


def _state(stat: Path) -> str:
    """The one-letter state (R, S, D, T, Z…) in a /proc `stat` file; "" if it is gone."""
    try:
        return stat.read_text().rsplit(") ", 1)[1][0]
    except (OSError, IndexError):
        return ""


def state(pid: int) -> str:
    """The state of process `pid` (of its main thread); "" when it is gone."""
    return _state(Path(f"/proc/{pid}/stat"))


def alive(pid: int) -> bool:
    """Whether any thread of `pid` has yet to exit. A zombie is dead (its parent reaps it
    when it gets round to it), but a main thread turns zombie before the process's other
    threads have exited, and until the last has, the process's files stay open."""
    return any(
        _state(task / "stat") not in ("", "Z", "X") for task in Path(f"/proc/{pid}/task").glob("*")
    )


# Ports handed to servers the tests start come from below the kernel's ephemeral range
# (32768 and up, see /proc/sys/net/ipv4/ip_local_port_range), so no client connection's
# own port can take one between the test choosing it and the server binding it, and each
# xdist worker draws from its own slice, so two workers never hand out the same port.
PORT_BASE = 20000
PORT_SLICE = 1500
PORT_SLICES = 8
_next_port = 0


def _port_slice() -> int:
    """The first port of this test process's slice, from its xdist worker name (gw0, gw1…)."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw")
    index = int(worker) if worker.isdigit() else 0
    return PORT_BASE + (index % PORT_SLICES) * PORT_SLICE


def _bindable(port: int) -> bool:
    """Whether nothing holds `port` on 127.0.0.1 now (not even in TIME_WAIT)."""
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_ports(count: int) -> list[int]:
    """Distinct TCP ports on 127.0.0.1 that nobody listens on and no other test will get.

    Ports are taken in turn round this process's slice, so a port comes back only after
    the rest of the slice has been handed out.
    """
    global _next_port
    base = _port_slice()
    ports: list[int] = []
    for _ in range(PORT_SLICE):
        port = base + _next_port
        _next_port = (_next_port + 1) % PORT_SLICE
        if _bindable(port):
            ports.append(port)
            if len(ports) == count:
                return ports
    raise RuntimeError(f"no {count} free ports left in {base}-{base + PORT_SLICE - 1}")


def missing(reason: str) -> NoReturn:
    """Skip a test whose server is not here; in CI (`CI=true`, as `.ci/run` sets) fail it,
    so a run that lost its PostgreSQL cannot pass by skipping half the suite."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true, and {reason}")
    pytest.skip(reason)


@contextmanager
def postgres_database(template: str = "template1") -> Iterator[str]:
    """A new PostgreSQL database for one test, a copy of `template` (by default an empty
    one), dropped afterwards."""
    if not POSTGRES_URL:
        missing("ARSIP_TEST_POSTGRES_URL is not set (make test sets it)")
    name = f"arsip_test_{secrets.token_hex(6)}"
    admin = create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}" TEMPLATE "{template}"'))
    try:
        yield make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


# One TXT record is a string, or a tuple of the strings it is split into.
Records = dict[str, list[str | tuple[str, ...]]]


class TinyDns:
    """A UDP DNS server on 127.0.0.1 answering TXT queries from a table.

    Unknown names get NXDOMAIN, names in `servfail` get SERVFAIL; `queries` counts the
    questions received per name, which is how the tests see what the cache saved.
    """

    def __init__(self, records: Records, servfail: set[str] | None = None) -> None:
        self.records = {name.lower(): texts for name, texts in records.items()}
        self.servfail = servfail or set()
        self.queries: Counter[str] = Counter()
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.settimeout(0.05)
        self.port = self._sock.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                wire, peer = self._sock.recvfrom(4096)
            except TimeoutError:
                continue
            self._sock.sendto(self._answer(dns.message.from_wire(wire)).to_wire(), peer)

    def _answer(self, query: dns.message.Message) -> dns.message.Message:
        response = dns.message.make_response(query)
        question = query.question[0]
        name = question.name.to_text(omit_final_dot=True).lower()
        self.queries[name] += 1
        if name in self.servfail:
            response.set_rcode(dns.rcode.SERVFAIL)
        elif name not in self.records:
            response.set_rcode(dns.rcode.NXDOMAIN)
        elif question.rdtype == dns.rdatatype.TXT and self.records[name]:
            texts = [_rdata_text(record) for record in self.records[name]]
            response.answer.append(dns.rrset.from_text(question.name, 300, "IN", "TXT", *texts))
        return response

    def lookup(self, **options: float) -> DmarcLookup:
        """A lookup that asks this server and nobody else."""
        return DmarcLookup(nameservers=["127.0.0.1"], port=self.port, **options)

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self._sock.close()


def _rdata_text(record: str | tuple[str, ...]) -> str:
    """The zone-file form of one TXT record: each string quoted."""
    strings = (record,) if isinstance(record, str) else record
    return " ".join('"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"' for s in strings)


_QUIET_DNS: list[TinyDns] = []


def quiet_dns() -> TinyDns:
    """One loopback DNS server per test process that knows no names: services under test
    ask it for DMARC records, so no test ever queries the machine's resolvers."""
    if not _QUIET_DNS:
        _QUIET_DNS.append(TinyDns({}))
    return _QUIET_DNS[0]


def service_env(data_dir: Path, database_url: str | None = None, **extra: str) -> dict[str, str]:
    """The ARSIP_* variables for a service whose data lives in `data_dir`."""
    smtp_port, lmtp_port, web_port = free_ports(3)
    env = {
        "ARSIP_DATA_DIR": str(data_dir),
        "ARSIP_SMTP_HOST": "127.0.0.1",
        "ARSIP_SMTP_PORT": str(smtp_port),
        "ARSIP_LMTP_PORT": str(lmtp_port),
        "ARSIP_WEB_PORT": str(web_port),
        "ARSIP_BASE_URL": f"http://127.0.0.1:{web_port}",  # links in mail lead to this service
        "ARSIP_JOURNAL_ADDRESSES": JOURNAL,
        "ARSIP_JOURNAL_DOMAINS": f"{JOURNAL_DOMAIN}={ORIGINAL_DOMAIN}",
        "ARSIP_DOMAINS": LIST_DOMAIN,
        "ARSIP_DNS_SERVER": f"127.0.0.1:{quiet_dns().port}",
        "ARSIP_LOG_LEVEL": "INFO",
    }
    if database_url:
        env["ARSIP_DATABASE_URL"] = database_url
    env.update(extra)
    return env


def settings_from(env: dict[str, str]) -> Settings:
    """Settings as the service with `env` sees them."""
    return load_settings(environ=env, config_file=Path("/nonexistent/arsip.toml"))


def run_arsip(
    settings: Settings, *args: str, stdin: str = "", process: bool = False
) -> subprocess.CompletedProcess[str]:
    """Run the `arsip` command against the database and data directory of `settings`: in
    this process (tests/cli_runner.py), or with `process` as a process of its own, for
    the tests that keep the console script covered."""
    env = {"ARSIP_DATA_DIR": str(settings.data_dir), "ARSIP_DATABASE_URL": settings.database_url}
    if not process:
        return run_arsip_here(args, env, stdin=stdin)
    return subprocess.run(
        [ARSIP, *args],
        env={**os.environ, **env},
        cwd=ROOT,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
    )


class RunningService:
    """An `arsip serve` process started by a test, and ways to talk to it."""

    def __init__(self, env: dict[str, str], log_path: Path, roles: str = "all") -> None:
        self.env = env
        self.log_path = log_path
        self.roles = roles
        self.settings = settings_from(env)
        self.process: subprocess.Popen[bytes] | None = None
        self._core: Core | None = None

    @property
    def smtp_port(self) -> int:
        return self.settings.smtp_port

    @property
    def lmtp_port(self) -> int:
        return self.settings.lmtp_port

    def start(self) -> RunningService:
        """Start the service and wait until SMTP answers (or, without the intake role,
        until it says it is up)."""
        with open(self.log_path, "ab") as log:
            started_at = log.tell()
            self.process = subprocess.Popen(
                [ARSIP, "serve", "--role", self.roles],
                env={**os.environ, **self.env},
                cwd=ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        intake = self.roles == "all" or "intake" in self.roles.split(",")

        def up() -> bool:
            if self.process is None or self.process.poll() is not None:
                raise RuntimeError(f"arsip serve exited: {self.log()}")
            if not intake:
                return b"arsip is up" in self.log_path.read_bytes()[started_at:]
            try:
                with smtplib.SMTP("127.0.0.1", self.smtp_port, timeout=5) as client:
                    client.noop()
            except OSError:
                return False
            return True

        eventually(up, 60, lambda: f"arsip serve to start: {self.log()}")
        return self

    def stop(self, sig: int = signal.SIGTERM) -> int | None:
        """Stop the process we started (by its PID); returns its exit status."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        status = self.process.returncode
        self.process = None
        return status

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]

    def core(self) -> Core:
        """The archiver's parts on the service's database, for looking at the results."""
        if self._core is None:
            self._core = build_core(self.settings)
        return self._core

    def stats(self) -> dict[str, int]:
        with self.core().sessions() as session:
            return stats(session)

    def wait_until_archived(self, timeout: float = 60) -> dict[str, int]:
        """Wait for the spool to drain; returns the stats read after the drain, so the
        archive's count in them is final."""
        eventually(
            lambda: self.stats()["spool_pending"] == 0,
            timeout,
            lambda: f"the spool to drain: {self.stats()}\n{self.log()}",
        )
        return self.stats()

    def wait_until_indexed(self, timeout: float = 60) -> dict[str, int]:
        """Wait until everything received is archived and searchable."""
        self.wait_until_archived(timeout)
        eventually(
            lambda: self.stats()["index_pending"] == 0,
            timeout,
            lambda: f"the index queue to drain: {self.stats()}\n{self.log()}",
        )
        return self.stats()

    def search(self, *args: str) -> dict:
        """What `arsip search --json ARGS` answers."""
        result = self.run_cli("search", "--json", *args)
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)

    def wait_until_found(self, query: str, count: int = 1, timeout: float = 60) -> dict:
        """Wait until a search for `query` finds at least `count` messages; returns the
        search's answer. The queues are watched in this process and the command is run
        only once they are empty, since each run of it starts a Python."""

        def found() -> dict | None:
            figures = self.stats()
            if figures["spool_pending"] or figures["index_pending"]:
                return None
            answer = self.search(query)
            return answer if answer["total"] >= count else None

        return eventually(
            found,
            timeout,
            lambda: f"{count} messages matching {query!r}: {self.log()}",
            interval=0.2,
        )

    def wait_until_sent(self, timeout: float = 60) -> None:
        """Wait until the outbox has no recipient left to try: a copy is marked sent just
        after the smarthost's 250, which the sink may see first. Whatever the sink lacks
        then was never going to be sent."""
        from sqlalchemy import func, select

        from lists.models import OutboxRecipient

        def pending() -> int:
            with self.core().sessions() as session:
                return session.scalar(
                    select(func.count()).where(OutboxRecipient.status == "pending")
                )

        eventually(lambda: pending() == 0, timeout, lambda: f"the outbox to drain: {self.log()}")

    def smtp(self) -> smtplib.SMTP:
        return smtplib.SMTP("127.0.0.1", self.smtp_port, timeout=30)

    def lmtp(self) -> smtplib.LMTP:
        client = smtplib.LMTP("127.0.0.1", self.lmtp_port, timeout=30)
        return client

    def run_cli(
        self, *args: str, check: bool = False, stdin: str | None = None, process: bool = False
    ) -> subprocess.CompletedProcess[str]:
        """Run an `arsip` command against this service's settings (`stdin`: its input): in
        this process (tests/cli_runner.py), or with `process` as a process of its own, for
        the tests that keep the console script covered."""
        if not process:
            return run_arsip_here(args, self.env, stdin=stdin, check=check)
        return subprocess.run(
            [ARSIP, *args],
            env={**os.environ, **self.env},
            cwd=ROOT,
            input=stdin,
            capture_output=True,
            text=True,
            check=check,
            timeout=300,
        )

    def add_list(
        self, address: str, owner: str, members: tuple[str, ...] = (), **settings: str
    ) -> None:
        """Create a list with its owner and members (added without asking them), as
        `arsip lists create` and `lists add-member --no-confirm` do, but without starting
        two commands: for tests about what the list does, not about those commands."""
        from lists import admin
        from lists.membership import Membership

        membership = Membership(self.settings.public_url)
        with self.core().sessions.begin() as session:
            mlist = admin.create_list(
                session,
                membership,
                address,
                admin.ListSettings.from_form(settings, every_field=False),
                [owner],
                "tests",
            )
            assert mlist is not None, f"{address} exists already"
            added = admin.AddMembers.from_form({"addresses": "\n".join(members)})
            admin.add_members(session, membership, mlist, added, "tests")

    def close(self) -> None:
        self.stop()
        if self._core is not None:
            self._core.engine.dispose()


@contextmanager
def shared_service(
    folder: Path, database_url: str | None = None, **extra: str
) -> Iterator[RunningService]:
    """A running service in `folder` for the tests of one module that can share it (each
    adds its own mail and looks only at that), stopped when they are done: one start
    instead of one per test."""
    service = RunningService(service_env(folder / "var", database_url, **extra), folder / "log")
    try:
        yield service.start()
    finally:
        service.close()


def make_certificate(folder: Path) -> tuple[Path, Path]:
    """A self-signed certificate for `localhost` and its key, for STARTTLS; skips the test
    when openssl is missing."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to make a test certificate")
    cert, key = folder / "cert.pem", folder / "key.pem"
    request = ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj"]
    subprocess.run(
        ["openssl", *request, "/CN=localhost", "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )
    return cert, key


def signed_verp(service: RunningService, member: str, list_address: str = LIST) -> str:
    """The VERP envelope sender `service` gives its copies of `list_address`'s posts to
    `member`: bounces to it count against the member."""
    from lists.bounces import verp_address
    from lists.tokens import verp_signature

    signature = verp_signature(service.settings.signing_key(), list_address, member)
    name, _, domain = list_address.partition("@")
    return verp_address(name, domain, member, signature)


def write_mbox(path: Path, messages: list[bytes]) -> None:
    """An mbox file of `messages`, as another mail system would have exported it."""
    from archiver.mailfiles import mbox_entry

    with open(path, "wb") as handle:
        for message in messages:
            handle.write(mbox_entry(message, "alice@example.com", datetime(2026, 1, 1, tzinfo=UTC)))


def simple_message(
    message_id: str,
    subject: str = "Hello",
    sender: str = "alice@example.com",
    to: str = "bob@example.com",
    body: str = "Hello Bob,\r\n\r\nsee you tomorrow.\r\n",
    extra_headers: str = "",
) -> bytes:
    """A small, well-formed message with CRLF line endings."""
    return (
        f"From: Alice <{sender}>\r\nTo: {to}\r\nSubject: {subject}\r\n"
        f"Date: Mon, 02 Feb 2026 10:00:00 +0000\r\nMessage-ID: <{message_id}>\r\n"
        f"{extra_headers}MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{body}"
    ).encode()


class SmarthostSink:
    """An aiosmtpd server on loopback standing in for the smarthost: it keeps every
    transaction it accepts, and can refuse recipients whose domain is `refused.test`."""

    def __init__(self) -> None:
        self.received: list[tuple[str, list[str], bytes]] = []
        self._changed = threading.Condition()
        self.port = free_ports(1)[0]
        self.controller = Controller(self, hostname="127.0.0.1", port=self.port)

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address.lower().endswith("@refused.test"):
            return "550 5.1.1 No such user here"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        with self._changed:
            self.received.append(
                (envelope.mail_from, list(envelope.rcpt_tos), bytes(envelope.original_content))
            )
            self._changed.notify_all()
        return "250 2.0.0 Accepted"

    def __enter__(self) -> SmarthostSink:
        self.controller.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.controller.stop()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def messages_to(self, recipient: str) -> list[tuple[str, bytes]]:
        """(envelope sender, bytes) of what reached `recipient`."""
        with self._changed:
            return [(s, d) for s, rcpts, d in self.received if recipient.lower() in rcpts]

    def wait_for(self, recipient: str, count: int = 1, timeout: float = 60) -> list[bytes]:
        """Wait until `recipient` has `count` messages; returns their bytes. The deadline
        is generous: the worker runs at idle priority, and tests run two at a time."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                found = [d for _, rcpts, d in self.received if recipient.lower() in rcpts]
                if len(found) >= count:
                    return found
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(
                        f"{recipient} got {len(found)} of {count}; sink has "
                        f"{[(s, r) for s, r, _ in self.received]}"
                    )
                self._changed.wait(left)
