"""Fan-out benchmark: how fast one post to a big list reaches every member.

For each list size and delivery mode it creates a list on a fresh `arsip serve`, adds the
members with `arsip lists add-member --file` (timed), posts one message of about 3 KB from
the list's owner over SMTP and measures, from the moment the post's `250` arrives:

- first delivery: until the smarthost accepted the first copy;
- total: until it accepted the copy for the last member, and so deliveries per second;
- peak RSS of `arsip serve` and its children, sampled from /proc every 0.1 s.

The smarthost is a recording aiosmtpd sink in a process of its own (this script started
again with `--sink`), so its CPU is not charged to Arsip and it holds no lock of Arsip's.
It accepts every recipient and every message and appends one line per recipient to a file,
flushed after each DATA: when DATA was accepted, when RCPT was accepted, the envelope
sender, the transaction number and the address. A copy counts as delivered when the sink
answered `250` to its DATA. The same process answers DNS on loopback with NXDOMAIN, so
the DMARC look-up a post makes stays on this machine and costs what a fast resolver costs.
The sink's CPU time is reported too: on a 2-core machine it competes with Arsip for the
cores, and aiosmtpd's cost per RCPT bounds what any sender can reach against it.

Before posting, the benchmark waits until the intake takes RCPT for the new list: the
intake answers from a snapshot of the lists that is refreshed every few seconds.
Process sampling and stopping come from `ingest.py` next to this file.

Members are `memberNNNNN@mK.bench.test` over 50 domains, so that grouping by domain matters
in bulk mode (`arsip lists create --bulk`, up to 50 recipients per transaction) and every
member gets a transaction of their own in personalised mode (the default: VERP sender and a
one-click unsubscribe link per copy). The figures are set against the issue's targets for
10,000 members on a 2-core machine and against GNU Mailman 3 measured on the same machine.

    .venv/bin/python tests/bench/fanout.py [--sizes 1000,10000] [--modes bulk,personal]
                                           [--timeout 300] [--keep DIR]

Everything runs on 127.0.0.1 under one temporary directory, removed at the end unless
`--keep DIR` names a directory to use and keep. Only processes this script started are
stopped, by their PID. A missed target is reported as MISSED and the exit status stays 0:
this is a measurement. The exit status is 1 when a member never got the post or the
service could not be started, because then there is nothing to measure.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import random
import selectors
import shutil
import signal
import smtplib
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from email.utils import formatdate, make_msgid
from pathlib import Path
from typing import Any

import dns.message
import dns.rcode
from aiosmtpd.smtp import SMTP
from ingest import WORDS, TreeMonitor, find_arsip, free_ports, log_problems, stop_process

HOST = "127.0.0.1"
LIST_DOMAIN = "lists.bench.test"
OWNER = "owner@owner.bench.test"
MEMBER_DOMAINS = 50
BODY_SIZE = 3000
SAMPLE_SECONDS = 0.1
MAX_MEMBERS = 200_000
MODES = ("bulk", "personal")
SCRIPT = Path(__file__).resolve()

# The targets, for 10,000 members on a 2-core machine.
TARGET_MEMBERS = 10_000
TARGET_TOTAL_S = {"bulk": 2.0, "personal": 15.0}
TARGET_FIRST_S = 0.3  # any size
TARGET_ADD_S = 5.0
TARGET_RSS_MB = 300.0  # any size

# GNU Mailman 3 on the same machine, 10,000 members.
MAILMAN_TOTAL_S = {"bulk": 6.8, "personal": 123.0}
MAILMAN_FIRST_S = 2.0
MAILMAN_ADD_S = 100.0
MAILMAN_RSS_MB = 1200.0  # in 15 processes


# ---------------------------------------------------------------------------------------
# The sink: a recording smarthost, and a DNS server that knows no names


class RecordingHandler:
    """Accepts every recipient and message; writes one line per recipient per DATA."""

    def __init__(self, out: Any) -> None:
        self.out = out
        self.transactions = 0
        self.recipients = 0
        # RCPT times of the transaction in progress, per SMTP session
        self._rcpt_times: dict[Any, tuple[Any, list[float]]] = {}

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list[str]
    ) -> str:
        """Accept, and note when."""
        now = time.time()
        current = self._rcpt_times.get(session)
        if current is None or current[0] is not envelope:
            current = (envelope, [])
            self._rcpt_times[session] = current
        current[1].append(now)
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        """Accept, and record every recipient of the transaction with the time of this 250."""
        now = time.time()
        _, rcpt_times = self._rcpt_times.pop(session, (None, []))
        self.transactions += 1
        sender = envelope.mail_from or "<>"
        lines = []
        for index, address in enumerate(envelope.rcpt_tos):
            rcpt = rcpt_times[index] if index < len(rcpt_times) else now
            lines.append(f"{now:.6f} {rcpt:.6f} {sender} {self.transactions} {address}\n")
        self.recipients += len(lines)
        self.out.write("".join(lines))
        self.out.flush()
        return "250 OK"


class NxdomainServer(asyncio.DatagramProtocol):
    """Answers every DNS query with NXDOMAIN."""

    def __init__(self) -> None:
        self.transport: Any = None  # the selector loop's datagram transport
        self.queries = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        try:
            query = dns.message.from_wire(data)
        except Exception:
            return  # not DNS: no answer, as a real server would do
        answer = dns.message.make_response(query)
        answer.set_rcode(dns.rcode.NXDOMAIN)
        self.queries += 1
        if self.transport is not None:
            self.transport.sendto(answer.to_wire(), addr)


async def serve_sink(record: Path) -> tuple[int, int, int]:
    """Run the sink until SIGTERM or SIGINT; returns (transactions, recipients, queries)."""
    loop = asyncio.get_running_loop()
    with open(record, "a", encoding="utf-8") as out:
        handler = RecordingHandler(out)

        def factory() -> SMTP:
            return SMTP(
                handler,
                loop=loop,
                enable_SMTPUTF8=True,
                decode_data=False,
                hostname="sink.bench.test",
                ident="fan-out sink",
            )

        server = await loop.create_server(factory, host=HOST, port=0, backlog=512)
        dns_transport, dns_server = await loop.create_datagram_endpoint(
            NxdomainServer, local_addr=(HOST, 0)
        )
        stopping = asyncio.Event()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stopping.set)
        smtp_port = server.sockets[0].getsockname()[1]
        dns_port = dns_transport.get_extra_info("sockname")[1]
        print(f"PORT {smtp_port} DNS {dns_port}", flush=True)
        await stopping.wait()
        server.close()
        dns_transport.close()
        await server.wait_closed()
    return handler.transactions, handler.recipients, dns_server.queries


def sink_main(record: Path) -> int:
    """The sink process's body."""
    transactions, recipients, queries = asyncio.run(serve_sink(record))
    print(f"RECEIVED {transactions} {recipients} {queries}", flush=True)
    return 0


class Sink:
    """This script as a sink, in a process of its own."""

    def __init__(self, record: Path) -> None:
        self.record = record
        record.touch()
        self.proc = subprocess.Popen(
            [sys.executable, str(SCRIPT), "--sink", str(record)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
        )
        assert self.proc.stdout is not None
        selector = selectors.DefaultSelector()
        selector.register(self.proc.stdout, selectors.EVENT_READ)
        ready = selector.select(timeout=30)
        selector.close()
        words = self.proc.stdout.readline().decode().split() if ready else []
        if len(words) != 4 or words[0] != "PORT" or words[2] != "DNS":
            self.stop()
            raise RuntimeError(f"the sink did not start: {words!r}")
        self.port = int(words[1])
        self.dns_port = int(words[3])

    def stop(self) -> str:
        """Stop the sink; returns its last words (what it received)."""
        stop_process(self.proc, [])
        said = self.proc.stdout.read().decode().strip() if self.proc.stdout else ""
        if self.proc.stdout:
            self.proc.stdout.close()
        return said


class SinkRecord:
    """Reads the sink's lines as they are appended; remembers where it stopped."""

    def __init__(self, path: Path) -> None:
        self._handle = open(path, "rb")  # noqa: SIM115  (closed in close())
        self._handle.seek(0, os.SEEK_END)
        self._rest = b""

    def new_lines(self) -> list[tuple[float, float, str, int, str]]:
        """(DATA time, RCPT time, envelope sender, transaction, address) of new lines."""
        chunk = self._handle.read()
        if not chunk:
            return []
        data = self._rest + chunk
        complete, _, self._rest = data.rpartition(b"\n")
        found = []
        for line in complete.decode("utf-8", "replace").splitlines():
            words = line.split(" ")
            if len(words) == 5:
                found.append((float(words[0]), float(words[1]), words[2], int(words[3]), words[4]))
        return found

    def close(self) -> None:
        """Let go of the file."""
        self._handle.close()


# ---------------------------------------------------------------------------------------
# The service


class Service:
    """`arsip serve` with a fresh data directory, started from that directory so that no
    `arsip.toml` in the checkout changes its configuration; stderr goes to a file."""

    def __init__(self, command: str, workdir: Path, sink: Sink, connections: int = 16) -> None:
        self.command = command
        self.workdir = workdir
        data_dir = workdir / "data"
        data_dir.mkdir(parents=True)
        smtp_port, lmtp_port, web_port = free_ports(3)
        self.port = smtp_port
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("ARSIP_")}
        self.env.update(
            ARSIP_DATA_DIR=str(data_dir),
            ARSIP_SMTP_HOST=HOST,
            ARSIP_SMTP_PORT=str(smtp_port),
            ARSIP_LMTP_PORT=str(lmtp_port),
            ARSIP_WEB_PORT=str(web_port),
            ARSIP_DOMAINS=LIST_DOMAIN,
            ARSIP_SMARTHOST=f"{HOST}:{sink.port}",
            ARSIP_DNS_SERVER=f"{HOST}:{sink.dns_port}",
            ARSIP_BASE_URL=f"https://{LIST_DOMAIN}",
            ARSIP_LOG_LEVEL="WARNING",
            ARSIP_OUTGOING_CONNECTIONS=str(connections),
        )
        self.log_path = workdir / "arsip-serve.log"
        self._log = open(self.log_path, "wb")  # noqa: SIM115  (closed in stop())
        self.proc = subprocess.Popen(
            [command, "serve"],
            cwd=workdir,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        # Watches the whole life, so that every child can be stopped in the end.
        self.lifetime = TreeMonitor(self.proc.pid, interval=1.0).start()
        self._wait_ready(timeout=90)

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"arsip serve exited with {self.proc.returncode}:\n{self.log_tail(0)}"
                )
            with (
                contextlib.suppress(OSError),  # not listening yet
                socket.create_connection((HOST, self.port), timeout=2) as sock,
            ):
                if sock.recv(512).startswith(b"220"):
                    return
            time.sleep(0.1)
        raise RuntimeError(f"arsip serve did not answer on port {self.port} in {timeout:.0f} s")

    def run_cli(self, *args: str, timeout: float) -> tuple[float, subprocess.CompletedProcess[str]]:
        """Run `arsip ARGS` against this service; returns (seconds, the finished process)."""
        began = time.monotonic()
        done = subprocess.run(
            [self.command, *args],
            cwd=self.workdir,
            env=self.env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        return time.monotonic() - began, done

    def log_size(self) -> int:
        """How many bytes the service has logged so far."""
        return self.log_path.stat().st_size

    def log_since(self, offset: int) -> str:
        """What the service logged after `offset`."""
        with open(self.log_path, "rb") as handle:
            handle.seek(offset)
            return handle.read().decode("utf-8", "replace")

    def log_tail(self, offset: int, lines: int = 40) -> str:
        """The last lines the service logged after `offset`."""
        return "\n".join(self.log_since(offset).splitlines()[-lines:]) or "(nothing)"

    def stop(self) -> None:
        """Stop the service and every process it started."""
        self.lifetime.stop()
        stop_process(self.proc, self.lifetime.members())
        self._log.close()


# ---------------------------------------------------------------------------------------
# One run: a list, its members, one post


@dataclass
class RunResult:
    """One list size in one mode."""

    members: int
    mode: str
    add_member_s: float
    added: str
    delivered: int = 0
    deliveries: int = 0
    transactions: int = 0
    first_s: float | None = None
    total_s: float | None = None
    first_rcpt_s: float | None = None
    last_rcpt_s: float | None = None
    post_reply_s: float = 0.0
    reachable_s: float = 0.0
    peak_rss_mb: float = 0.0
    cpu_s: float = 0.0
    sink_cpu_s: float = 0.0
    problems: list[str] = field(default_factory=list)
    error: str = ""

    @property
    def complete(self) -> bool:
        """Every member got the post."""
        return self.delivered == self.members

    @property
    def rate(self) -> float | None:
        """Deliveries per second from the post's 250 to the last one."""
        return self.members / self.total_s if self.complete and self.total_s else None


def member_addresses(count: int) -> list[str]:
    """`count` distinct members spread evenly over MEMBER_DOMAINS domains."""
    width = max(5, len(str(count)))
    return [
        f"member{n:0{width}d}@m{n % MEMBER_DOMAINS + 1}.bench.test" for n in range(1, count + 1)
    ]


def post_bytes(
    list_address: str,
    number: int,
    sender: str = OWNER,
    name: str = "List Owner",
    bench: str = "Fan-out",
) -> bytes:
    """A plain-text post of about BODY_SIZE bytes from `sender`, CRLF line ends."""
    rng = random.Random(number)
    lines: list[str] = ["Hello all,", ""]
    size = 0
    while size < BODY_SIZE:
        line = " ".join(rng.choices(WORDS, k=rng.randint(8, 12)))
        lines.append(line)
        size += len(line.encode()) + 2
    lines += ["", "Regards,", name, ""]
    domain = sender.rpartition("@")[2]
    headers = [
        f"From: {name} <{sender}>",
        f"To: {list_address}",
        f"Subject: {bench} benchmark post {number}",
        f"Date: {formatdate(localtime=True)}",
        f"Message-ID: {make_msgid(bench.lower(), domain)}",
        "MIME-Version: 1.0",
        "Content-Type: text/plain; charset=utf-8",
        "Content-Transfer-Encoding: 8bit",
    ]
    return ("\r\n".join(headers) + "\r\n\r\n" + "\r\n".join(lines)).encode()


def wait_reachable(port: int, address: str, since: float, timeout: float) -> float:
    """Wait until the service takes RCPT for a new list; returns seconds since `since`.

    The intake reads the lists again when it does not know an address, so this should
    pass at once; it guards the measurement against a refused post all the same.
    """
    deadline = since + timeout
    with smtplib.SMTP(HOST, port, timeout=60) as client:
        client.ehlo()
        while True:
            client.mail(OWNER)
            code, reply = client.rcpt(address)
            client.rset()
            if code == 250:
                return time.monotonic() - since
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"{address} still refused after {timeout:.0f} s: {code} {reply!r}"
                )
            time.sleep(0.05)


def run_one(
    service: Service,
    sink: Sink,
    workdir: Path,
    members: int,
    mode: str,
    number: int,
    timeout: float,
) -> RunResult:
    """Create a list, add `members`, post once, and wait for every copy at the sink."""
    name = f"{mode}-{members}"
    address = f"{name}@{LIST_DOMAIN}"
    print(f"- {members:,} members, {mode}: creating the list ...", end=" ", flush=True)
    create = ["lists", "create", address, "--owner", OWNER]
    _, done = service.run_cli(*create, *(["--bulk"] if mode == "bulk" else []), timeout=timeout)
    if done.returncode != 0:
        raise RuntimeError(f"arsip lists create failed: {done.stdout}{done.stderr}")
    created = time.monotonic()
    member_file = workdir / f"{name}.txt"
    member_file.write_text("\n".join(member_addresses(members)) + "\n")
    print("adding members ...", end=" ", flush=True)
    add_s, done = service.run_cli(
        "lists", "add-member", address, "--file", str(member_file), "--no-confirm", timeout=timeout
    )
    added = (done.stdout.strip().splitlines() or [""])[-1]
    result = RunResult(members, mode, round(add_s, 3), added)
    if done.returncode != 0 or not added.startswith(f"{members} added"):
        result.error = f"add-member said: {done.stdout.strip()} {done.stderr.strip()}"[-2000:]
        print("failed", flush=True)
        return result
    result.reachable_s = round(wait_reachable(service.port, address, created, timeout), 3)
    print(f"{add_s:.2f} s; posting ...", end=" ", flush=True)

    log_offset = service.log_size()
    record = SinkRecord(sink.record)
    monitor = TreeMonitor(service.proc.pid, interval=SAMPLE_SECONDS).start()
    sink_monitor = TreeMonitor(sink.proc.pid, interval=SAMPLE_SECONDS).start()
    cpu0, sink_cpu0 = monitor.cpu_seconds(), sink_monitor.cpu_seconds()
    bounces = f"{name}-bounces"
    seen: set[str] = set()
    transactions: set[int] = set()
    first = last = first_rcpt = last_rcpt = None
    deliveries = 0
    try:
        data = post_bytes(address, number)
        sending = time.time()
        with smtplib.SMTP(HOST, service.port, timeout=60) as client:
            client.sendmail(OWNER, [address], data)
            posted = time.time()  # the post's 250
        result.post_reply_s = round(posted - sending, 4)
        deadline = time.monotonic() + timeout
        while len(seen) < members:
            for data_at, rcpt_at, sender, transaction, recipient in record.new_lines():
                # the list's bounce address, plain (bulk) or VERP (personalised)
                if not (sender == f"{bounces}@{LIST_DOMAIN}" or sender.startswith(f"{bounces}+")):
                    continue
                deliveries += 1
                transactions.add(transaction)
                seen.add(recipient.lower())
                first = data_at if first is None else min(first, data_at)
                last = data_at if last is None else max(last, data_at)
                first_rcpt = rcpt_at if first_rcpt is None else min(first_rcpt, rcpt_at)
                last_rcpt = rcpt_at if last_rcpt is None else max(last_rcpt, rcpt_at)
            if len(seen) >= members:
                break
            if service.proc.poll() is not None:
                result.error = f"arsip serve exited with {service.proc.returncode}"
                break
            if time.monotonic() > deadline:
                result.error = f"only {len(seen):,} of {members:,} delivered in {timeout:.0f} s"
                break
            time.sleep(0.01)
    finally:
        monitor.stop()
        sink_monitor.stop()
        record.close()
    result.delivered = len(seen)
    result.deliveries = deliveries
    result.transactions = len(transactions)
    result.peak_rss_mb = round(monitor.peak_rss_kib / 1024, 1)
    result.cpu_s = round(monitor.cpu_seconds() - cpu0, 2)
    result.sink_cpu_s = round(sink_monitor.cpu_seconds() - sink_cpu0, 2)
    if first is not None and last is not None:
        result.first_s = round(first - posted, 4)
        result.first_rcpt_s = round((first_rcpt or first) - posted, 4)
        result.last_rcpt_s = round((last_rcpt or last) - posted, 4)
        if result.complete:
            result.total_s = round(last - posted, 4)
    expected = set(member_addresses(members))
    if not result.error and seen != expected:
        result.error = f"{len(seen - expected)} address(es) got the post that are no members"
    log = service.log_since(log_offset)
    result.problems = log_problems(log)
    if result.complete and not result.error:
        print(f"all delivered in {result.total_s:.2f} s", flush=True)
    else:
        print("failed", flush=True)
        print(f"  {result.error}", flush=True)
        print("  the last lines arsip serve wrote:", flush=True)
        for line in service.log_tail(log_offset).splitlines():
            print(f"    {line}", flush=True)
    return result


# ---------------------------------------------------------------------------------------
# Reporting


@dataclass
class Figure:
    """One line of the table: a measured figure, its target and Mailman's."""

    run: RunResult
    name: str
    value: float | None
    unit: str
    target: float | None
    higher_is_better: bool = False
    mailman: float | None = None
    spec: str = ".2f"

    @property
    def verdict(self) -> str:
        """ok, MISSED, or '-' when there is no target for this size."""
        if self.target is None:
            return "-"
        if self.value is None:
            return "MISSED"
        if self.higher_is_better:
            return "ok" if self.value >= self.target else "MISSED"
        return "ok" if self.value <= self.target else "MISSED"

    def cell(self, value: float | None) -> str:
        """A value with its unit, or '-'."""
        return "-" if value is None else f"{format(value, self.spec)} {self.unit}".strip()

    @property
    def target_cell(self) -> str:
        """The target with its direction."""
        if self.target is None:
            return "-"
        return ("≥ " if self.higher_is_better else "≤ ") + self.cell(self.target)

    @property
    def ratio(self) -> str:
        """Arsip's figure divided by Mailman's."""
        if self.value is None or not self.mailman:
            return "-"
        return f"{self.value / self.mailman:.3f}"


def figures(run: RunResult) -> list[Figure]:
    """The figures of one run, with targets and Mailman's figures where the issue has them."""
    at_target = run.members == TARGET_MEMBERS
    total_target = TARGET_TOTAL_S[run.mode] if at_target else None
    mailman_total = MAILMAN_TOTAL_S[run.mode] if at_target else None
    return [
        Figure(
            run,
            "add-member --file",
            run.add_member_s,
            "s",
            TARGET_ADD_S if at_target else None,
            mailman=MAILMAN_ADD_S if at_target else None,
        ),
        Figure(
            run,
            "first delivery",
            run.first_s,
            "s",
            TARGET_FIRST_S,
            mailman=MAILMAN_FIRST_S if at_target else None,
            spec=".3f",
        ),
        Figure(run, "all delivered", run.total_s, "s", total_target, mailman=mailman_total),
        Figure(
            run,
            "deliveries/s",
            run.rate,
            "",
            run.members / total_target if total_target else None,
            higher_is_better=True,
            mailman=run.members / mailman_total if mailman_total else None,
            spec=",.0f",
        ),
        Figure(
            run,
            "peak RSS",
            run.peak_rss_mb,
            "MB",
            TARGET_RSS_MB,
            mailman=MAILMAN_RSS_MB if at_target else None,
            spec=",.0f",
        ),
    ]


def print_table(runs: Sequence[RunResult]) -> list[Figure]:
    """The figures as an aligned table; returns them."""
    header = ("members", "mode", "figure", "arsip", "target", "", "Mailman 3", "arsip/Mailman")
    rows: list[tuple[str, ...]] = []
    every: list[Figure] = []
    for run in runs:
        for figure in figures(run):
            every.append(figure)
            rows.append(
                (
                    f"{run.members:,}",
                    run.mode,
                    figure.name,
                    figure.cell(figure.value),
                    figure.target_cell,
                    figure.verdict,
                    figure.cell(figure.mailman),
                    figure.ratio,
                )
            )
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    left = {1, 2, 5}
    previous = ""
    for row in [header, *rows]:
        if previous and row[:2] != previous:
            print()
        previous = row[:2] if row is not header else ""
        print(
            "  ".join(
                cell.ljust(width) if i in left else cell.rjust(width)
                for i, (cell, width) in enumerate(zip(row, widths, strict=True))
            ).rstrip()
        )
    return every


# ---------------------------------------------------------------------------------------
# The command line


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command line options, with limits so a typo cannot start an endless run."""
    parser = argparse.ArgumentParser(
        description="Measure how fast one post to a big list reaches every member."
    )
    parser.add_argument("--sizes", default="1000,10000", help="comma-separated list sizes")
    parser.add_argument(
        "--modes", default=",".join(MODES), help="comma-separated modes: bulk, personal"
    )
    parser.add_argument(
        "--timeout", type=float, default=300.0, help="seconds allowed per command and per fan-out"
    )
    parser.add_argument("--keep", default=None, help="work in DIR and keep it afterwards")
    parser.add_argument(
        "--connections", type=int, default=16, help="ARSIP_OUTGOING_CONNECTIONS for the service"
    )
    parser.add_argument("--arsip", default="", help="the arsip command (default: next to python)")
    parser.add_argument("--sink", default=None, help=argparse.SUPPRESS)  # the sink process
    args = parser.parse_args(argv)
    if args.sink:
        return args
    try:
        args.size_list = [int(part) for part in args.sizes.split(",") if part.strip()]
    except ValueError:
        parser.error("--sizes takes numbers like 1000,10000")
    if not args.size_list or not all(1 <= size <= MAX_MEMBERS for size in args.size_list):
        parser.error(f"--sizes: each size must be between 1 and {MAX_MEMBERS:,}")
    args.mode_list = [part.strip() for part in args.modes.split(",") if part.strip()]
    if not args.mode_list or not set(args.mode_list) <= set(MODES):
        parser.error("--modes takes bulk, personal or both")
    if not 1 <= args.timeout <= 7200:
        parser.error("--timeout must be between 1 and 7200 seconds")
    return args


def _raise_interrupt(signum: int, _frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the whole benchmark; exit status 1 only if it could not measure."""
    args = parse_args(argv)
    if args.sink:
        return sink_main(Path(args.sink))
    command = find_arsip(args.arsip)
    signal.signal(signal.SIGTERM, _raise_interrupt)  # clean up on SIGTERM as on Ctrl-C
    cores = os.cpu_count() or 1
    print(
        f"machine: {cores} cores ({len(os.sched_getaffinity(0))} usable), "
        f"{platform.machine()}, Python {platform.python_version()}, "
        f"{platform.system()} {platform.release()}"
    )
    if args.keep:
        root = Path(args.keep).resolve()
        root.mkdir(parents=True, exist_ok=True)
    else:
        root = Path(tempfile.mkdtemp(prefix="arsip-fanout-"))
    sink: Sink | None = None
    service: Service | None = None
    runs: list[RunResult] = []
    sink_said = ""
    service_peak_mb = 0.0
    try:
        sink = Sink(root / "sink-record.txt")
        service = Service(command, root, sink, args.connections)
        number = 0
        for size in args.size_list:
            for mode in args.mode_list:
                number += 1
                runs.append(run_one(service, sink, root, size, mode, number, args.timeout))
    except KeyboardInterrupt:
        print("\ninterrupted; cleaning up", file=sys.stderr)
        return 130
    except (RuntimeError, OSError, subprocess.TimeoutExpired, smtplib.SMTPException) as exc:
        print(f"\nthe benchmark could not go on: {exc}", file=sys.stderr)
        if service is not None:
            print("the last lines arsip serve wrote:", file=sys.stderr)
            print(service.log_tail(0), file=sys.stderr)
        return 1
    finally:
        if service is not None:
            service.stop()
            service_peak_mb = service.lifetime.peak_rss_kib / 1024
        if sink is not None:
            sink_said = sink.stop()
        if args.keep:
            print(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)

    print()
    every = print_table(runs)
    print()
    for run in runs:
        print(
            f"{run.members:,} {run.mode}: {run.delivered:,} of {run.members:,} members got the "
            f"post in {run.transactions:,} transaction(s) ({run.deliveries:,} copies); posting "
            f"(connect to 250) took {run.post_reply_s:.3f} s; from the post to the last "
            f"delivery arsip used {run.cpu_s:.1f} CPU s and the sink {run.sink_cpu_s:.1f}; "
            f"the new list took RCPT "
            f"{run.reachable_s:.2f} s after `lists create` returned; add-member said "
            f"{run.added!r}"
        )
        if run.error:
            print(f"  PROBLEM: {run.error}")
        for problem in run.problems:
            print(f"  service log: {problem}")
    print(f"sink: {sink_said.replace(chr(10), ' ')} (transactions, recipients, DNS queries)")
    missed = [f"{f.run.members} {f.run.mode} {f.name}" for f in every if f.verdict == "MISSED"]
    if missed:
        print(f"MISSED {len(missed)} target(s): " + "; ".join(missed))
    else:
        print("every target met")
    summary = {
        "cores": cores,
        "service_peak_rss_mb": round(service_peak_mb, 1),
        "runs": [{**asdict(run), "deliveries_per_s": run.rate} for run in runs],
        "targets": {
            "members": TARGET_MEMBERS,
            "total_s": TARGET_TOTAL_S,
            "first_s": TARGET_FIRST_S,
            "add_member_s": TARGET_ADD_S,
            "rss_mb": TARGET_RSS_MB,
        },
        "mailman": {
            "total_s": MAILMAN_TOTAL_S,
            "first_s": MAILMAN_FIRST_S,
            "add_member_s": MAILMAN_ADD_S,
            "rss_mb": MAILMAN_RSS_MB,
        },
        "missed": missed,
    }
    print(json.dumps(summary, separators=(",", ":")))
    return 0 if all(run.complete and not run.error for run in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
