"""Ingest benchmark: how fast Arsip takes in and archives mail, next to a bare SMTP sink.

For each concurrency level the same generated mail goes over SMTP first to a bare aiosmtpd
sink that throws it away (`bare_sink.py`) and then to a real `arsip serve` with a fresh
data directory. The sink shows what the protocol and the client cost on this machine, so
the ratio between the two rates is what Arsip's durable intake costs on top: writing the
bytes, fsyncing them and committing spool rows before every 250. After the last 250 the
benchmark waits for the spool worker to archive everything, because a fast intake that
leaves a growing backlog is not fast. Finally it times `arsip import` of a large mbox,
the path old mail takes.

    .venv/bin/python tests/bench/ingest.py [--messages N] [--sessions 1,8,32]
                                           [--import-messages M] [--client smtp-source]

`--client smtp-source` sends with Postfix's C client instead of this script's own (HELO,
no pipelining, 5 KB bodies), the way an MTA relays to Arsip.

Everything runs on 127.0.0.1 under one temporary directory that is removed at the end.
Only processes this script started are stopped, by their PID. Every phase has a time
limit, so a stuck service ends the run with a report instead of hanging it.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import multiprocessing
import os
import platform
import random
import re
import selectors
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from email.header import Header
from email.utils import format_datetime, formataddr
from multiprocessing.synchronize import Event as EventType
from pathlib import Path
from typing import Any

HOST = "127.0.0.1"
JOURNAL_ADDRESS = "journal@archive.test"
SEED = 20_240_611
MAX_MESSAGES = 1_000_000
MAX_SESSIONS = 512
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
SINK_SCRIPT = Path(__file__).resolve().with_name("bare_sink.py")

# ---------------------------------------------------------------------------------------
# Mail generation
#
# The mail should cost the service what real mail costs: a handful of addresses per
# message, threads (In-Reply-To/References), 8-bit and encoded-word headers, wrapped
# prose, quoted replies, and now and then a multipart message with a PDF, CSV or image.
# Bodies are assembled from a pool of pre-wrapped lines so that generating 100,000
# messages takes seconds, while each message still gets its own mix of words.

# Word lists are kept as text and split once, which reads better than long literals.
_WORD_TEXT = """
the of and to in is that for it as was with be by on not he this are or his from at
which but have an they you were her she there been one all we their has would when
what will more if no out so said up about into them can only other time new some could
these two may first then do any like my now over such our man me even most made after
also did many before must through back years where much your way well down should because
each just those people how too little state good very make world still own see men work
long get here between both life being under never day same another know while last might
us great old year off come since against go came right used take three budget invoice
meeting quarterly report customer contract delivery schedule release review proposal draft
server outage ticket backlog roadmap forecast revenue margin audit compliance retention
policy archive mailbox migration cluster database latency throughput deadline vendor
shipment warehouse pallet freight supplier procurement approval signature agreement
renewal pricing discount quote estimate milestone sprint feature regression rollback
deploy staging production incident postmortem escalation onboarding training payroll
benefits holiday travel expense receipt reimbursement headcount hiring interview offer
candidate office building parking badge laptop monitor printer network firewall vpn
password certificate renewal backup restore snapshot storage capacity upgrade patch
café naïve Müller résumé Zürich Straße façade coöperate São Paulo Kraków Ålesund
please thanks regards attached following below above agreed confirm update follow
tomorrow yesterday Monday Tuesday Wednesday Thursday Friday morning afternoon evening
"""

_TOPIC_TEXT = """Quarterly budget review|Contract renewal for the Oslo office|Server outage on
Tuesday night|Draft proposal for the new warehouse|Invoice 4471 overdue|Sprint planning
notes|Release 2.4 go/no-go|Customer escalation: late delivery|Travel expenses for the
conference|Onboarding checklist for new hires|Firewall change request|Backup restore
test results|Pricing update for the northern region|Audit findings and next steps|Office
move logistics|Holiday schedule|Supplier quote comparison|Retention policy questions|VPN
certificate expiry|Payroll cut-off date|Réunion de projet à Genève|Übersicht der
Lieferungen im März|Migración del buzón de correo|Postmortem: database failover|Roadmap
for the second half|Hiring plan and headcount|Parking badges for visitors|Printer on the
third floor|Capacity planning for storage|Feedback on the training session"""

_FIRST_NAME_TEXT = """Alice Bob Carol David Erin Frank Grace Heidi Ivan Judy Karl Laura
Mallory Niaj Olivia Peggy Rupert Sybil Trent Victor Walter Yolanda Zoe Ahmed Bjørn Chloé
Dmitri Eşref Fatima Günther Hiroshi Inés Jürgen Katarzyna Lars Maëlle Nguyen Oğuz Priya"""

# Turkish dotless i on purpose: names are where non-ASCII mail headers come from.
_LAST_NAME_TEXT = """Smith Jones Taylor Brown Williams Wilson Johnson Davies Robinson
Wright Thompson Evans Walker White Roberts Green Hall Wood Jackson Clarke Müller Schröder
Nowak Kowalski García López Dubois Lefèvre Rossi Bianchi Andersen Øvergaard Y\u0131lmaz
Tanaka Sato Kim Park Chen Wang Singh"""

WORDS = tuple(_WORD_TEXT.split())
TOPICS = tuple(topic.strip() for topic in _TOPIC_TEXT.replace("\n", " ").split("|"))
FIRST_NAMES = tuple(_FIRST_NAME_TEXT.split())
LAST_NAMES = tuple(_LAST_NAME_TEXT.split())

DOMAINS = ("example.com", "corp.example.com", "example.org", "partner.example.net", "mail.test")
TIMEZONES = tuple(timezone(timedelta(hours=hours)) for hours in (0, 1, 2, -5, -8, 5.5, 9))
MAILERS = ("Thunderbird 115.6.0", "Microsoft Outlook 16.0", "Apple Mail (2.3774)", "Mutt/2.2.12")
START_DATE = datetime(2024, 1, 2, 8, 0, tzinfo=UTC)
REPLY_SHARE = 0.3
MULTIPART_SHARE = 0.15
FROM_LINE = re.compile(rb"^(>*From )", re.MULTILINE)
LEADING_DOT = re.compile(rb"^\.", re.MULTILINE)


@dataclass(frozen=True)
class Person:
    """A correspondent: the bare address for envelopes, the display form for headers."""

    address: str
    display: str
    first: str
    full: str


@dataclass(frozen=True)
class Mail:
    """One generated message: envelope sender and the bytes with LF line endings."""

    sender: str
    data: bytes
    when: datetime


@dataclass
class _Sent:
    message_id: str
    subject: str
    references: list[str]
    author: Person
    when: datetime


def _ascii_local(text: str) -> str:
    """An address local part from a name; mail systems rarely take non-ASCII here."""
    table = str.maketrans({"ø": "o", "ö": "o", "ü": "u", "é": "e", "è": "e", "ë": "e"})
    folded = text.lower().translate(table)
    return "".join(ch for ch in folded if ch.isascii() and ch.isalnum())


def _header(text: str) -> str:
    """Encoded words for non-ASCII header text, as mail clients send it."""
    return text if text.isascii() else Header(text, "utf-8").encode()


def tiny_pdf(text: str) -> bytes:
    """A valid one-page PDF, so that attachment text extraction does real work."""
    safe = re.sub(r"[()\\]", "", text.encode("ascii", "ignore").decode())
    stream = f"BT /F1 11 Tf 72 720 Td ({safe}) Tj ET".encode()
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d >>\nstream\n%s\nendstream" % (len(stream), stream),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (number, body)
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    for offset in offsets:
        out += b"%010d 00000 n \n" % offset
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1,
        xref,
    )
    return bytes(out)


class MailFactory:
    """Deterministic realistic mail: the same seed always gives the same messages."""

    def __init__(self, seed: int = SEED, target_size: int = 4750) -> None:
        self.rng = random.Random(seed)
        self.target_size = target_size
        self.people = self._people(60)
        self.lines = self._line_pool(3000)
        self.recent: list[_Sent] = []
        self.count = 0

    def _people(self, count: int) -> list[Person]:
        people = []
        seen: set[str] = set()
        while len(people) < count:
            first = self.rng.choice(FIRST_NAMES)
            last = self.rng.choice(LAST_NAMES)
            domain = self.rng.choice(DOMAINS)
            address = f"{_ascii_local(first)}.{_ascii_local(last)}@{domain}"
            if address in seen:
                continue
            seen.add(address)
            full = f"{first} {last}"
            people.append(Person(address, formataddr((full, address)), first, full))
        return people

    def _line_pool(self, count: int) -> list[str]:
        """Wrapped prose lines, plus the awkward ones real mail has: a body line that
        starts with "From " (mbox quoting) and one that starts with "." (SMTP dot-stuffing).
        """
        lines = []
        for number in range(count):
            width = self.rng.randint(45, 74)
            words: list[str] = []
            length = 0
            while length < width:
                word = self.rng.choice(WORDS)
                words.append(word)
                length += len(word) + 1
            if number % 7 == 0:
                words[0] = words[0].capitalize()
            if number % 5 == 0:
                words[-1] += "."
            line = " ".join(words)
            if number % 211 == 0:
                line = "From " + line
            elif number % 307 == 0:
                line = "." + line
            elif number % 401 == 0:
                line = ">From " + line
            lines.append(line)
        return lines

    def make(self) -> Mail:
        """The next message of the sequence."""
        rng = self.rng
        number = self.count
        self.count += 1
        when = START_DATE + timedelta(seconds=number * 97 + rng.randint(0, 90))
        local = when.astimezone(rng.choice(TIMEZONES))
        author = rng.choice(self.people)
        others = [p for p in rng.sample(self.people, 7) if p is not author]
        to = others[: rng.randint(1, 3)]
        cc = others[3 : 3 + rng.randint(0, 3)] if rng.random() < 0.4 else []
        parent = rng.choice(self.recent) if self.recent and rng.random() < REPLY_SHARE else None
        if parent is not None:
            subject = (
                parent.subject if parent.subject.startswith("Re: ") else "Re: " + parent.subject
            )
            references = [*parent.references[-9:], parent.message_id]
            if parent.author is not author:
                to = [parent.author, *to[:1]]
        else:
            subject = rng.choice(TOPICS).strip()
            if rng.random() < 0.3:
                subject += f" (#{rng.randint(100, 9999)})"
            references = []
        domain = author.address.split("@")[1]
        message_id = f"{number:08d}.{rng.getrandbits(40):010x}@{domain}"

        headers = [
            f"Received: from mail.{domain} (mail.{domain} [192.0.2.{rng.randint(1, 254)}])"
            f"\n\tby mx.archive.test with ESMTPS id {rng.getrandbits(48):012X}"
            f"\n\tfor <{JOURNAL_ADDRESS}>; {format_datetime(when + timedelta(seconds=2))}",
            f"From: {author.display}",
            f"To: {', '.join(p.display for p in to)}",
        ]
        headers += thread_headers(cc, subject, format_datetime(local), message_id, references)
        headers += [f"X-Mailer: {rng.choice(MAILERS)}", "MIME-Version: 1.0"]
        head = "\n".join(headers) + "\n"

        attachment = self._attachment() if rng.random() < MULTIPART_SHARE else None
        budget = self.target_size + rng.randint(-1000, 1000) - len(head.encode())
        if attachment is not None:
            budget -= len(attachment) + 300
        text = self._body(author, parent, to[0], max(budget, 400))

        if attachment is None:
            mime = 'Content-Type: text/plain; charset="utf-8"\nContent-Transfer-Encoding: 8bit\n\n'
            data = (head + mime + text).encode()
        else:
            boundary = f"----=_Part_{number}_{rng.getrandbits(32):08x}"
            data = (
                (
                    head
                    + f'Content-Type: multipart/mixed; boundary="{boundary}"\n\n'
                    + "This is a multi-part message in MIME format.\n"
                    + f"--{boundary}\n"
                    + 'Content-Type: text/plain; charset="utf-8"\n'
                    + "Content-Transfer-Encoding: 8bit\n\n"
                    + text
                    + f"\n--{boundary}\n"
                ).encode()
                + attachment
                + f"\n--{boundary}--\n".encode()
            )

        self.recent.append(_Sent(message_id, subject, references, author, when))
        if len(self.recent) > 500:
            del self.recent[:100]
        return Mail(author.address, data, when)

    def _body(self, author: Person, parent: _Sent | None, reader: Person, budget: int) -> str:
        rng = self.rng
        parts = [f"Hi {reader.first},\n\n"]
        size = len(parts[0])
        closing = f"\nThanks,\n{author.first}\n\n-- \n{author.full}\n"
        if parent is not None:
            quoted = rng.sample(self.lines, rng.randint(3, 8))
            stamp = format_datetime(parent.when)
            block = f"On {stamp}, {parent.author.full} wrote:\n" + "".join(
                f"> {line}\n" for line in quoted
            )
            budget -= len(block)
        else:
            block = ""
        while size < budget - len(closing):
            paragraph = "".join(line + "\n" for line in rng.sample(self.lines, rng.randint(2, 7)))
            parts.append(paragraph + "\n")
            size += len(paragraph) + 1
        return "".join(parts) + closing + ("\n" + block if block else "")

    def _attachment(self) -> bytes:
        rng = self.rng
        kind = rng.random()
        if kind < 0.4:
            content = tiny_pdf(" ".join(rng.choices(WORDS, k=40)))
            ctype, name = "application/pdf", f"report-{rng.randint(1, 999)}.pdf"
        elif kind < 0.8:
            rows = [
                f"2024-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d},"
                f"{rng.choice(WORDS)},{rng.randint(1, 99999) / 100:.2f}"
                for _ in range(rng.randint(15, 45))
            ]
            content = ("date,item,amount\n" + "\n".join(rows) + "\n").encode()
            ctype, name = "text/csv", f"export-{rng.randint(1, 999)}.csv"
        else:
            content = b"\x89PNG\r\n\x1a\n" + rng.randbytes(rng.randint(500, 1200))
            ctype, name = "image/png", f"screenshot-{rng.randint(1, 999)}.png"
        encoded = base64.encodebytes(content).decode()
        return (
            f'Content-Type: {ctype}; name="{name}"\n'
            f'Content-Disposition: attachment; filename="{name}"\n'
            "Content-Transfer-Encoding: base64\n\n" + encoded
        ).encode()


def thread_headers(
    cc: list[Person], subject: str, date: str, message_id: str, references: list[str]
) -> list[str]:
    """Cc, Subject, Date and Message-ID, plus In-Reply-To and References for a reply
    (the last reference is the parent)."""
    headers = [f"Cc: {', '.join(p.display for p in cc)}"] if cc else []
    headers += [f"Subject: {_header(subject)}", f"Date: {date}", f"Message-ID: <{message_id}>"]
    if references:
        headers.append(f"In-Reply-To: <{references[-1]}>")
        headers.append("References: " + "\n ".join(f"<{ref}>" for ref in references))
    return headers


def smtp_payload(data: bytes) -> bytes:
    """The DATA section on the wire: CRLF line endings, dot-stuffed, with the final dot."""
    wire = data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    if not wire.endswith(b"\r\n"):
        wire += b"\r\n"
    return LEADING_DOT.sub(b"..", wire) + b".\r\n"


def mbox_entry(mail: Mail) -> bytes:
    """One mboxrd entry: separator line, `>*From ` lines quoted once more, blank line."""
    stamp = time.asctime(mail.when.astimezone(UTC).timetuple())
    body = FROM_LINE.sub(rb">\1", mail.data)
    if not body.endswith(b"\n"):
        body += b"\n"
    return f"From {mail.sender} {stamp}\n".encode() + body + b"\n"


# ---------------------------------------------------------------------------------------
# The SMTP client
#
# A small asyncio SMTP client, one connection per session, one command at a time and
# every reply awaited (no pipelining), as a typical MTA relaying to Arsip would behave.
# aiosmtplib is not a project dependency, and smtplib in threads would make the client
# fight its own interpreter lock; a few hundred microseconds of CPU per message here let
# one client process outrun the server. Client processes are forked so that they inherit
# the payloads instead of receiving them through a pipe.

_PAYLOADS: list[tuple[bytes, bytes]] = []  # (MAIL FROM command, DATA section), set before fork


@dataclass
class ClientReport:
    """What one client process saw; sent back to the parent through a queue."""

    ok: int = 0
    failed: int = 0
    failures: Counter[str] = field(default_factory=Counter)
    samples: list[str] = field(default_factory=list)
    finished: float = 0.0
    cpu: float = 0.0
    error: str = ""

    def fail(self, what: str, count: int = 1) -> None:
        """Count failed messages by kind and keep a few replies to show."""
        self.failed += count
        self.failures[" ".join(what.split(" ", 2)[:2])] += count
        if len(self.samples) < 5:
            self.samples.append(what[:200])


class SmtpError(Exception):
    """A reply other than the one the client needs to go on."""


async def _reply(reader: asyncio.StreamReader) -> tuple[int, str]:
    lines = []
    while True:
        line = await reader.readline()
        if not line:
            raise ConnectionError("connection closed by server")
        lines.append(line)
        if line[3:4] != b"-":
            break
    text = b"".join(lines).decode("utf-8", "replace").strip()
    try:
        return int(lines[-1][:3]), text
    except ValueError:
        raise SmtpError(f"unparseable reply {text!r}") from None


async def _open(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection(HOST, port, limit=1 << 20)
    code, text = await _reply(reader)
    if code != 220:
        raise SmtpError(f"greeting {text}")
    writer.write(b"EHLO bench.localdomain\r\n")
    code, text = await _reply(reader)
    if code != 250:
        raise SmtpError(f"EHLO {text}")
    return reader, writer


async def _send_share(
    conn: tuple[asyncio.StreamReader, asyncio.StreamWriter],
    indices: Sequence[int],
    report: ClientReport,
    deadline: float,
) -> None:
    reader, writer = conn
    rcpt = f"RCPT TO:<{JOURNAL_ADDRESS}>\r\n".encode()
    done = 0
    try:
        async with asyncio.timeout_at(deadline):
            for index in indices:
                mail_from, payload = _PAYLOADS[index]
                failed = ""
                for command, wanted in ((mail_from, 250), (rcpt, 250), (b"DATA\r\n", 354)):
                    writer.write(command)
                    code, text = await _reply(reader)
                    if code != wanted:
                        failed = f"{command.split()[0].decode()} {text}"
                        break
                if not failed:
                    writer.write(payload)
                    await writer.drain()
                    code, text = await _reply(reader)
                    if code == 250:
                        report.ok += 1
                        done += 1
                        continue
                    failed = f"DATA-END {text}"
                report.fail(failed)
                done += 1
                writer.write(b"RSET\r\n")
                await _reply(reader)
            writer.write(b"QUIT\r\n")
            await _reply(reader)
    except TimeoutError:
        if len(indices) > done:
            report.fail("TIMEOUT 0 no reply before the time limit", len(indices) - done)
    except (OSError, SmtpError) as exc:
        if len(indices) > done:
            report.fail(f"CONNECTION 0 {exc}", len(indices) - done)
    finally:
        writer.close()


async def _client_main(
    shares: list[tuple[int, list[int]]],
    ready: multiprocessing.Queue[str],
    go: EventType,
    time_limit: float,
) -> ClientReport:
    """Send each (port, message numbers) share over a connection of its own."""
    report = ClientReport()
    loop = asyncio.get_running_loop()
    try:
        conns = await asyncio.gather(*(_open(port) for port, _ in shares))
    except (OSError, SmtpError) as exc:
        ready.put(f"error: {exc}")
        report.error = str(exc)
        report.fail(f"CONNECT 0 {exc}", sum(len(share) for _, share in shares))
        return report
    ready.put("ready")
    await loop.run_in_executor(None, go.wait, time_limit)
    before = os.times()
    deadline = loop.time() + time_limit
    sends = [
        _send_share(conn, share, report, deadline)
        for conn, (_, share) in zip(conns, shares, strict=True)
    ]
    await asyncio.gather(*sends)
    report.finished = time.monotonic()
    after = os.times()
    report.cpu = (after.user - before.user) + (after.system - before.system)
    return report


def _client_process(
    shares: list[tuple[int, list[int]]],
    ready: multiprocessing.Queue[str],
    go: EventType,
    results: multiprocessing.Queue[ClientReport],
    time_limit: float,
) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent stops the run
    results.put(asyncio.run(_client_main(shares, ready, go, time_limit)))


@dataclass
class SendResult:
    """One send phase: how many got 250, how long it took, and what the client spent."""

    ok: int
    failed: int
    seconds: float
    started: float
    finished: float
    client_cpu: float
    client_procs: int
    failures: dict[str, int]
    samples: list[str]

    @property
    def rate(self) -> float:
        """Messages acknowledged with 250 per second of wall time."""
        return self.ok / self.seconds if self.seconds > 0 else 0.0


def send_all(
    port: int | Sequence[int],
    count: int,
    sessions: int,
    procs: int,
    time_limit: float,
    on_go: Sequence[Callable[[], object]] = (),
) -> SendResult:
    """Send messages 0..count-1 over `sessions` connections spread over `procs` processes;
    with several ports, session i goes to port i mod their number."""
    ports = [port] if isinstance(port, int) else list(port)
    context = multiprocessing.get_context("fork")
    ready: multiprocessing.Queue[str] = context.Queue()
    results: multiprocessing.Queue[ClientReport] = context.Queue()
    go = context.Event()
    procs = max(1, min(procs, sessions))
    shares = [(ports[s % len(ports)], list(range(s, count, sessions))) for s in range(sessions)]
    workers = [
        context.Process(
            target=_client_process,
            args=(shares[p::procs], ready, go, results, time_limit),
            name=f"bench-client-{p}",
            daemon=True,
        )
        for p in range(procs)
    ]
    for worker in workers:
        worker.start()
    reports: list[ClientReport] = []
    try:
        for _ in workers:
            state = ready.get(timeout=60)
            if state != "ready":
                raise RuntimeError(f"client could not connect: {state}")
        for action in on_go:
            action()
        started = time.monotonic()
        go.set()
        for _ in workers:
            reports.append(results.get(timeout=time_limit + 60))
    except Exception as exc:
        go.set()
        missing = count - sum(r.ok + r.failed for r in reports)
        lost = ClientReport(error=str(exc))
        lost.fail(f"CLIENT 0 {exc or type(exc).__name__}", missing)
        reports.append(lost)
        started = time.monotonic()
    finally:
        for worker in workers:
            worker.join(timeout=10)
            if worker.is_alive() and worker.pid is not None:
                os.kill(worker.pid, signal.SIGKILL)
                worker.join(timeout=5)
    finished = max((r.finished for r in reports if r.finished), default=time.monotonic())
    failures: Counter[str] = Counter()
    samples: list[str] = []
    for report in reports:
        failures.update(report.failures)
        samples += report.samples
    return SendResult(
        ok=sum(r.ok for r in reports),
        failed=sum(r.failed for r in reports),
        seconds=finished - started,
        started=started,
        finished=finished,
        client_cpu=sum(r.cpu for r in reports),
        client_procs=procs,
        failures=dict(failures),
        samples=samples[:5],
    )


SMTP_SOURCE_BYTES = 5120  # payload per message, as the Postfix comparison was made


def send_smtp_source(
    port: int, count: int, sessions: int, time_limit: float, on_go: Sequence[Callable[[], object]]
) -> SendResult:
    """Send `count` messages with Postfix's `smtp-source` (a C client: HELO, no pipelining,
    a 5 KB body of 80-column lines, one connection per session kept open with -d)."""
    program = shutil.which("smtp-source") or "/usr/sbin/smtp-source"
    command = [
        program, "-s", str(sessions), "-l", str(SMTP_SOURCE_BYTES), "-m", str(count), "-d",
        "-f", "bench@example.com", "-t", JOURNAL_ADDRESS, f"{HOST}:{port}",
    ]  # fmt: skip
    for action in on_go:
        action()
    before = os.times()
    started = time.monotonic()
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=time_limit)
        problem = done.stderr.strip() if done.returncode else ""
    except subprocess.TimeoutExpired:
        problem = f"smtp-source did not finish in {time_limit:.0f} s"
    finished = time.monotonic()
    after = os.times()
    cpu = (
        after.children_user - before.children_user + after.children_system - before.children_system
    )
    failures = {problem.splitlines()[-1][:200]: count} if problem else {}
    return SendResult(
        ok=0 if problem else count,
        failed=count if problem else 0,
        seconds=finished - started,
        started=started,
        finished=finished,
        client_cpu=cpu,
        client_procs=1,
        failures=failures,
        samples=[problem[:500]] if problem else [],
    )


def send(
    args: argparse.Namespace,
    port: int,
    count: int,
    sessions: int,
    procs: int,
    on_go: Sequence[Callable[[], object]],
) -> SendResult:
    """Send with the client `--client` names."""
    if args.client == "smtp-source":
        return send_smtp_source(port, count, sessions, args.send_timeout, on_go)
    return send_all(port, count, sessions, procs, args.send_timeout, on_go)


# ---------------------------------------------------------------------------------------
# Processes: starting, watching and stopping the sink and the service


def free_ports(count: int) -> list[int]:
    """Loopback ports nothing listens on right now (held open together so they differ)."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind((HOST, 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def _proc_stat(pid: int) -> tuple[int, int] | None:
    """(user+system clock ticks, start time) of a process, or None once it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            fields = handle.read().rsplit(b")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return int(fields[11]) + int(fields[12]), int(fields[19])


def _rss_kib(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status", "rb") as handle:
            for line in handle:
                if line.startswith(b"VmRSS:"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


def _children(pid: int) -> list[int]:
    found: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return found
    for task in tasks:
        try:
            with open(f"/proc/{pid}/task/{task}/children", "rb") as handle:
                found += [int(child) for child in handle.read().split()]
        except OSError:
            continue
    return found


def process_tree(root: int) -> list[int]:
    """`root` and all its descendants, from /proc (no third-party dependency needed)."""
    tree, queue = [], [root]
    while queue:
        pid = queue.pop()
        tree.append(pid)
        queue += _children(pid)
    return tree


class TreeMonitor:
    """Samples CPU time and resident memory of a process tree every `interval` seconds.

    CPU time is read per process and the last value seen is kept, so processes that exit
    between samples still count, and reaped children are not counted twice through their
    parent's cumulative times. Peak RSS is the largest sum over the tree at one sample.
    """

    def __init__(self, root: int, interval: float = 0.2) -> None:
        self.root = root
        self.interval = interval
        self.ticks: dict[tuple[int, int], int] = {}
        self.peak_rss_kib = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="tree-monitor", daemon=True)

    def start(self) -> TreeMonitor:
        """Take a first sample and keep sampling in the background."""
        self.sample()
        self._thread.start()
        return self

    def stop(self) -> None:
        """Take a last sample and stop."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        self.sample()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def sample(self) -> None:
        """Read the tree once."""
        rss = 0
        seen = {}
        for pid in process_tree(self.root):
            stat = _proc_stat(pid)
            if stat is None:
                continue
            seen[(pid, stat[1])] = stat[0]
            rss += _rss_kib(pid)
        with self._lock:
            self.ticks.update(seen)
            self.peak_rss_kib = max(self.peak_rss_kib, rss)

    def cpu_seconds(self) -> float:
        """User plus system CPU seconds of every process seen so far."""
        with self._lock:
            return sum(self.ticks.values()) / CLOCK_TICKS

    def members(self) -> list[tuple[int, int]]:
        """(pid, start time) of every process seen, to stop leftovers safely later."""
        with self._lock:
            return list(self.ticks)


def stop_process(proc: subprocess.Popen[bytes], members: Sequence[tuple[int, int]]) -> None:
    """SIGTERM, then SIGKILL if it lingers; then any leftover descendant it had.

    A descendant is signalled only if its PID still has the start time seen while it was
    part of our tree, so a reused PID is never hit.
    """
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
    for pid, started in members:
        if pid == proc.pid:
            continue
        for _ in range(50):
            stat = _proc_stat(pid)
            if stat is None or stat[1] != started:
                break
            time.sleep(0.1)
        else:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


class Sink:
    """The bare SMTP sink in its own process."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(SINK_SCRIPT), "--host", HOST, "--port", "0"],
            stdout=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
        )
        assert self.proc.stdout is not None
        selector = selectors.DefaultSelector()
        selector.register(self.proc.stdout, selectors.EVENT_READ)
        if not selector.select(timeout=30):
            self.stop()
            raise RuntimeError("bare sink did not start within 30 s")
        line = self.proc.stdout.readline().decode().split()
        if len(line) != 2 or line[0] != "PORT":
            self.stop()
            raise RuntimeError(f"bare sink said {line!r}")
        self.port = int(line[1])
        self.monitor = TreeMonitor(self.proc.pid)

    def stop(self) -> int:
        """Stop the sink; return how many messages it says it received."""
        stop_process(self.proc, [])
        out = self.proc.stdout.read().decode() if self.proc.stdout else ""
        if self.proc.stdout:
            self.proc.stdout.close()
        match = re.search(r"RECEIVED (\d+)", out)
        return int(match.group(1)) if match else -1


def arsip_env(data_dir: Path, ports: Sequence[int]) -> dict[str, str]:
    """The service's whole configuration; inherited ARSIP_* variables are dropped."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ARSIP_")}
    env.update(
        ARSIP_DATA_DIR=str(data_dir),
        ARSIP_SMTP_HOST=HOST,
        ARSIP_SMTP_PORT=str(ports[0]),
        ARSIP_LMTP_PORT=str(ports[1]),
        ARSIP_WEB_PORT=str(ports[2]),
        ARSIP_JOURNAL_ADDRESSES=JOURNAL_ADDRESS,
        ARSIP_LOG_LEVEL="WARNING",
    )
    return env


class Arsip:
    """`arsip serve` with a fresh data directory, started from that directory so that no
    `arsip.toml` lying around in the checkout changes its configuration."""

    def __init__(self, command: str, workdir: Path) -> None:
        self.command = command
        self.workdir = workdir
        self.data_dir = workdir / "data"
        self.data_dir.mkdir(parents=True)
        ports = free_ports(3)
        self.port = ports[0]
        self.env = arsip_env(self.data_dir, ports)
        self.log_path = workdir / "arsip.log"
        self._log = open(self.log_path, "wb")  # noqa: SIM115  (closed in stop())
        self.proc = subprocess.Popen(
            [command, "serve"],
            cwd=workdir,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        self.monitor = TreeMonitor(self.proc.pid)
        self._db: sqlite3.Connection | None = None
        self._wait_ready(timeout=90)

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"arsip serve exited with {self.proc.returncode}:\n{self.log()}")
            try:
                with socket.create_connection((HOST, self.port), timeout=2) as sock:
                    if sock.recv(512).startswith(b"220"):
                        return
            except OSError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"arsip serve did not answer on port {self.port} in {timeout:.0f} s")

    def log(self) -> str:
        """What the service wrote to stderr so far."""
        return self.log_path.read_text("utf-8", "replace")

    def spool_state(self) -> tuple[int, int, str]:
        """(pending, of which failed at least once, one last_error) read straight from
        SQLite: `arsip stats` would start a whole interpreter per poll on a busy machine.
        Autocommit mode, so no read transaction is held open between polls.
        """
        if self._db is None:
            self._db = sqlite3.connect(self.data_dir / "arsip.db", timeout=10, isolation_level=None)
        pending, retried = self._db.execute(
            "SELECT count(*), coalesce(sum(attempts > 0), 0) FROM spool"
        ).fetchone()
        error = ""
        if retried:
            row = self._db.execute(
                "SELECT last_error FROM spool WHERE attempts > 0 LIMIT 1"
            ).fetchone()
            error = (row[0] or "") if row else ""
        return int(pending), int(retried), error

    def stats(self) -> dict[str, Any]:
        """`arsip stats --json`, as an operator would run it."""
        return run_stats(self.command, self.workdir, self.env)

    def stop(self) -> None:
        """Stop the service and everything it started."""
        if self._db is not None:
            self._db.close()
            self._db = None
        stop_process(self.proc, self.monitor.members())
        self._log.close()


def run_stats(command: str, workdir: Path, env: dict[str, str]) -> dict[str, Any]:
    """Run `arsip stats --json`; an empty dict (and the reason on stderr) if it fails."""
    try:
        done = subprocess.run(
            [command, "stats", "--json"],
            cwd=workdir,
            env=env,
            capture_output=True,
            timeout=120,
            check=False,
        )
        return dict(json.loads(done.stdout.decode().strip().splitlines()[-1]))
    except (subprocess.TimeoutExpired, ValueError, IndexError) as exc:
        print(f"  arsip stats failed: {exc}", file=sys.stderr)
        return {}


def log_problems(text: str) -> list[str]:
    """Distinct warnings and errors from a service log, with how often each occurred.

    Queue ids, numbers and timestamps are blanked so that one problem repeated for every
    message shows up as one line with a count.
    """
    counts: Counter[str] = Counter()
    for line in text.splitlines():
        if " WARNING " not in line and " ERROR " not in line and "Traceback" not in line:
            continue
        if "no smarthost configured" in line:
            continue
        body = line.split(" ", 2)[2] if line[:2].isdigit() else line
        counts[re.sub(r"\b[0-9A-F]{11,}\b|\d+", "#", body)[:240]] += 1
    return [f"{n}x {problem}" for problem, n in counts.most_common(8)]


# ---------------------------------------------------------------------------------------
# The benchmark


@dataclass
class LevelResult:
    """One concurrency level: sink and Arsip side by side."""

    sessions: int
    sink_rate: float
    sink_failed: int
    sink_received: int
    sink_cpu_s: float
    client_procs: int
    client_cpu_s: float
    client_busy: float
    arsip_rate: float
    arsip_failed: int
    arsip_cpu_send_s: float
    arsip_cpu_total_s: float
    arsip_peak_rss_mb: float
    drain_s: float | None
    archived_rate: float | None
    archived_messages: int
    index_pending: int
    pending_left: int
    failures: dict[str, int]
    failure_samples: list[str]
    problems: list[str]

    @property
    def ratio(self) -> float:
        """Arsip's acknowledged rate as a share of the bare sink's."""
        return self.arsip_rate / self.sink_rate if self.sink_rate else 0.0


def run_sink(
    args: argparse.Namespace, count: int, sessions: int, procs: int
) -> tuple[SendResult, int, float]:
    """Send to a fresh bare sink; return the send result, its count and its CPU seconds."""
    sink = Sink()
    try:
        result = send(args, sink.port, count, sessions, procs, [sink.monitor.start])
        sink.monitor.stop()
        cpu = sink.monitor.cpu_seconds()
    finally:
        received = sink.stop()
    return result, received, cpu


def run_level(
    command: str, root: Path, count: int, sessions: int, procs: int, args: argparse.Namespace
) -> LevelResult:
    """Bare sink, then Arsip, at one concurrency level."""
    print(f"- {sessions} session(s): bare sink ...", end=" ", flush=True)
    sink, received, sink_cpu = run_sink(args, count, sessions, procs)
    busy = sink.client_cpu / (sink.seconds * sink.client_procs) if sink.seconds else 0.0
    print(f"{sink.rate:,.0f} msgs/s; arsip ...", end=" ", flush=True)

    workdir = Path(tempfile.mkdtemp(prefix=f"arsip-{sessions}-", dir=root))
    service = Arsip(command, workdir)
    marks: dict[str, float] = {}

    def begin() -> None:
        service.monitor.start()
        marks["cpu0"] = service.monitor.cpu_seconds()

    drain_s: float | None = None
    archived_rate: float | None = None
    pending = retried = 0
    error = ""
    stats: dict[str, Any] = {}
    try:
        sent = send(args, service.port, count, sessions, procs, [begin])
        service.monitor.sample()
        cpu_send = service.monitor.cpu_seconds() - marks.get("cpu0", 0.0)
        print(f"{sent.rate:,.0f} msgs/s; draining ...", end=" ", flush=True)
        deadline = time.monotonic() + args.drain_timeout
        last_change, last_pending = time.monotonic(), -1
        while True:
            pending, retried, error = service.spool_state()
            now = time.monotonic()
            if pending == 0:
                drain_s = now - sent.finished
                archived_rate = sent.ok / (now - sent.started)
                break
            if pending != last_pending:
                last_change, last_pending = now, pending
            if now > deadline or now - last_change > args.stall_timeout:
                break
            if service.proc.poll() is not None:
                error = f"arsip serve exited with {service.proc.returncode}"
                break
            time.sleep(0.2)
        service.monitor.stop()
        cpu_total = service.monitor.cpu_seconds() - marks.get("cpu0", 0.0)
        stats = service.stats() if service.proc.poll() is None else {}
    finally:
        service.stop()
    print("done" if drain_s is not None else f"gave up with {pending} pending", flush=True)
    problems = log_problems(service.log())
    if pending:
        problems.insert(0, f"{pending} message(s) still in the spool ({retried} retried): {error}")
    return LevelResult(
        sessions=sessions,
        sink_rate=sink.rate,
        sink_failed=sink.failed,
        sink_received=received,
        sink_cpu_s=sink_cpu,
        client_procs=sink.client_procs,
        client_cpu_s=sink.client_cpu,
        client_busy=busy,
        arsip_rate=sent.rate,
        arsip_failed=sent.failed,
        arsip_cpu_send_s=cpu_send,
        arsip_cpu_total_s=cpu_total,
        arsip_peak_rss_mb=service.monitor.peak_rss_kib / 1024,
        drain_s=drain_s,
        archived_rate=archived_rate,
        archived_messages=int(stats.get("messages", -1)),
        index_pending=int(stats.get("index_pending", -1)),
        pending_left=pending,
        failures=sent.failures | {f"sink {k}": v for k, v in sink.failures.items()},
        failure_samples=sent.samples + sink.samples,
        problems=problems,
    )


@dataclass
class ImportResult:
    """One `arsip import` run."""

    messages: int
    mbox_mb: float
    write_s: float
    seconds: float
    rate: float
    cpu_s: float
    peak_rss_mb: float
    exit_status: int
    output: str
    archived_messages: int


def run_import(command: str, root: Path, count: int, time_limit: float) -> ImportResult:
    """Write an mbox of `count` generated messages and time `arsip import` of it."""
    workdir = Path(tempfile.mkdtemp(prefix="arsip-import-", dir=root))
    mbox = workdir / "bench.mbox"
    print(f"- import: writing an mbox of {count:,} messages ...", end=" ", flush=True)
    began = time.monotonic()
    factory = MailFactory(SEED + 1)
    with open(mbox, "wb") as handle:
        for _ in range(count):
            handle.write(mbox_entry(factory.make()))
    write_s = time.monotonic() - began
    size_mb = mbox.stat().st_size / 1e6
    print(f"{size_mb:,.0f} MB in {write_s:.1f} s; importing ...", end=" ", flush=True)
    data_dir = workdir / "data"
    env = arsip_env(data_dir, free_ports(3))
    began = time.monotonic()
    proc = subprocess.Popen(
        [command, "import", str(mbox)],
        cwd=workdir,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    monitor = TreeMonitor(proc.pid).start()
    try:
        output, _ = proc.communicate(timeout=time_limit)
    except subprocess.TimeoutExpired:
        monitor.stop()
        stop_process(proc, monitor.members())
        output = (proc.stdout.read() if proc.stdout else b"") + b"\n(time limit reached)"
    seconds = time.monotonic() - began
    monitor.stop()
    text = output.decode("utf-8", "replace").strip()
    match = re.search(r"(\d+) new", text)
    added = int(match.group(1)) if match else 0
    stats = run_stats(command, workdir, env)
    print(f"{added / seconds if seconds else 0:,.0f} msgs/s", flush=True)
    return ImportResult(
        messages=count,
        mbox_mb=round(size_mb, 1),
        write_s=round(write_s, 1),
        seconds=round(seconds, 2),
        rate=round(added / seconds, 1) if seconds else 0.0,
        cpu_s=round(monitor.cpu_seconds(), 1),
        peak_rss_mb=round(monitor.peak_rss_kib / 1024, 1),
        exit_status=proc.returncode if proc.returncode is not None else -1,
        output=text[-2000:],
        archived_messages=int(stats.get("messages", -1)),
    )


def generate(count: int) -> tuple[float, float, int, int]:
    """Fill `_PAYLOADS`; return (seconds, mean size, multipart count, reply count)."""
    began = time.monotonic()
    factory = MailFactory(SEED)
    total = multipart = replies = 0
    _PAYLOADS.clear()
    for _ in range(count):
        mail = factory.make()
        total += len(mail.data)
        multipart += b"multipart/mixed" in mail.data
        replies += b"\nIn-Reply-To:" in mail.data
        _PAYLOADS.append(
            (f"MAIL FROM:<{mail.sender}> BODY=8BITMIME\r\n".encode(), smtp_payload(mail.data))
        )
    return time.monotonic() - began, total / max(count, 1), multipart, replies


def _fmt(value: float | None, spec: str = ",.0f") -> str:
    return "-" if value is None else format(value, spec)


def print_table(levels: Sequence[LevelResult]) -> None:
    """The results as an aligned table."""
    header = (
        "sessions",
        "sink msg/s",
        "arsip msg/s",
        "ratio",
        "arsip CPU s (send/total)",
        "peak RSS MB",
        "drain s",
        "archived msg/s",
        "failures",
    )
    rows = [
        (
            str(level.sessions),
            _fmt(level.sink_rate),
            _fmt(level.arsip_rate),
            f"{level.ratio:.2f}",
            f"{level.arsip_cpu_send_s:.1f} / {level.arsip_cpu_total_s:.1f}",
            f"{level.arsip_peak_rss_mb:.0f}",
            _fmt(level.drain_s, ".1f"),
            _fmt(level.archived_rate),
            f"{level.arsip_failed} (sink {level.sink_failed})",
        )
        for level in levels
    ]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print("  ".join(cell.rjust(width) for cell, width in zip(row, widths, strict=True)))


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command line options, with limits so a typo cannot start an endless run."""
    parser = argparse.ArgumentParser(
        description="Measure Arsip's SMTP intake and archiving against a bare SMTP sink."
    )
    parser.add_argument("--messages", type=int, default=20_000, help="messages per level")
    parser.add_argument(
        "--sessions", default="1,8,32", help="comma-separated concurrency levels (SMTP sessions)"
    )
    parser.add_argument(
        "--import-messages",
        type=int,
        default=100_000,
        help="mbox size for `arsip import` (0: skip)",
    )
    parser.add_argument(
        "--client-procs",
        type=int,
        default=0,
        help="client processes (0: one per two cores, at least one, at most one per session)",
    )
    parser.add_argument(
        "--client",
        choices=("python", "smtp-source"),
        default="python",
        help="the SMTP client: this script's own, or Postfix's smtp-source (5 KB bodies)",
    )
    parser.add_argument("--send-timeout", type=float, default=900.0, help="limit per send phase")
    parser.add_argument("--drain-timeout", type=float, default=1800.0, help="limit per drain")
    parser.add_argument(
        "--stall-timeout", type=float, default=120.0, help="give up when the spool stops shrinking"
    )
    parser.add_argument("--import-timeout", type=float, default=3600.0, help="limit for import")
    parser.add_argument("--arsip", default="", help="the arsip command (default: next to python)")
    parser.add_argument("--tmp", default=None, help="where to make the temporary directory")
    args = parser.parse_args(argv)
    try:
        args.levels = [int(part) for part in args.sessions.split(",") if part.strip()]
    except ValueError:
        parser.error("--sessions takes numbers like 1,8,32")
    if not args.levels or not all(1 <= level <= MAX_SESSIONS for level in args.levels):
        parser.error(f"--sessions: each level must be between 1 and {MAX_SESSIONS}")
    if not 1 <= args.messages <= MAX_MESSAGES:
        parser.error(f"--messages must be between 1 and {MAX_MESSAGES}")
    if not 0 <= args.import_messages <= MAX_MESSAGES:
        parser.error(f"--import-messages must be between 0 and {MAX_MESSAGES}")
    return args


def find_arsip(given: str) -> str:
    """The `arsip` console script of the interpreter running this benchmark."""
    if given:
        return given
    beside = Path(sys.executable).parent / "arsip"
    if beside.exists():
        return str(beside)
    found = shutil.which("arsip")
    if not found:
        raise SystemExit("cannot find the arsip command; pass --arsip")
    return found


def _raise_interrupt(signum: int, _frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the whole benchmark; exit status 1 if any message was refused or lost."""
    args = parse_args(argv)
    command = find_arsip(args.arsip)
    signal.signal(signal.SIGTERM, _raise_interrupt)  # clean up on SIGTERM as on Ctrl-C
    cores = os.cpu_count() or 1
    usable = len(os.sched_getaffinity(0))
    procs_auto = max(1, cores // 2)
    print(
        f"machine: {cores} cores ({usable} usable), {platform.machine()}, "
        f"Python {platform.python_version()}, {platform.system()} {platform.release()}"
    )
    seconds, mean, multipart, replies = generate(args.messages)
    print(
        f"mail: {args.messages:,} messages, mean {mean:,.0f} bytes, {multipart} multipart, "
        f"{replies} replies; generated in {seconds:.1f} s"
    )
    root = Path(tempfile.mkdtemp(prefix="arsip-bench-", dir=args.tmp))
    levels: list[LevelResult] = []
    imported: ImportResult | None = None
    try:
        for sessions in args.levels:
            procs = args.client_procs or procs_auto
            levels.append(run_level(command, root, args.messages, sessions, procs, args))
        if args.import_messages:
            imported = run_import(command, root, args.import_messages, args.import_timeout)
    except KeyboardInterrupt:
        print("\ninterrupted; cleaning up", file=sys.stderr)
        return 130
    finally:
        shutil.rmtree(root, ignore_errors=True)
        _PAYLOADS.clear()

    print()
    print_table(levels)
    print()
    for level in levels:
        print(
            f"sessions={level.sessions}: client {level.client_procs} process(es), "
            f"{level.client_cpu_s:.1f} CPU s for {args.messages:,} msgs "
            f"({args.messages / max(level.client_cpu_s, 1e-9):,.0f} msgs per client CPU second, "
            f"busy {level.client_busy:.0%} against the sink); sink CPU {level.sink_cpu_s:.1f} s, "
            f"sink received {level.sink_received:,}; arsip archived {level.archived_messages:,} "
            f"(index queue left: {level.index_pending:,})"
        )
        for name, number in level.failures.items():
            print(f"  failures {name}: {number}")
        for sample in level.failure_samples:
            print(f"  e.g. {sample}")
        for problem in level.problems:
            print(f"  service log: {problem}")
    if imported is not None:
        print(
            f"import: {imported.messages:,} messages ({imported.mbox_mb:,.0f} MB mbox) in "
            f"{imported.seconds:.1f} s = {imported.rate:,.0f} msgs/s archived; CPU "
            f"{imported.cpu_s:.1f} s, peak RSS {imported.peak_rss_mb:.0f} MB, exit "
            f"{imported.exit_status}, archive holds {imported.archived_messages:,}"
        )
        print(f"  arsip import said: {imported.output.splitlines()[-1] if imported.output else ''}")
    summary = {
        "cores": cores,
        "messages": args.messages,
        "mean_size": round(mean),
        "levels": [
            {
                "sessions": level.sessions,
                "sink_msgs_per_s": round(level.sink_rate, 1),
                "arsip_msgs_per_s": round(level.arsip_rate, 1),
                "ratio": round(level.ratio, 3),
                "arsip_cpu_send_s": round(level.arsip_cpu_send_s, 1),
                "arsip_cpu_total_s": round(level.arsip_cpu_total_s, 1),
                "arsip_peak_rss_mb": round(level.arsip_peak_rss_mb, 1),
                "drain_s": None if level.drain_s is None else round(level.drain_s, 1),
                "archived_msgs_per_s": None
                if level.archived_rate is None
                else round(level.archived_rate, 1),
                "failures": level.arsip_failed,
                "sink_failures": level.sink_failed,
                "client_procs": level.client_procs,
            }
            for level in levels
        ],
        "import": None
        if imported is None
        else {k: v for k, v in asdict(imported).items() if k != "output"},
    }
    print(json.dumps(summary, separators=(",", ":")))
    failed = any(level.arsip_failed or level.sink_failed or level.pending_left for level in levels)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
