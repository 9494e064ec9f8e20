"""Content-check benchmark: what SpamAssassin (spamd) and ClamAV (clamd) cost the worker.

The checks run in the spool worker after the intake's 250, for every journal copy and
every list post. This benchmark measures, with the checks off and on in the same run,
on the same machine and the same generated mail (SQLite, the default, in both):

- post -> first delivery: a list of `--members` members (`arsip lists create` and
  `add-member --no-confirm`) gets `--posts` posts of about 3 KB, one at a time; each is
  timed from the SMTP 250 of the post to the first copy the smarthost (an in-process
  aiosmtpd sink) accepts. The next post goes only after every member got the previous one.
  A few posts first warm the service up and are not counted.
- archive throughput: `--messages` journal copies (the realistic mail of `ingest.py`: a few
  KB each, about one in seven with a small PDF, CSV or PNG attachment) are sent over
  `--sessions` SMTP sessions; the clock runs from the first send until `spool_pending` in
  the service's stats is 0, so what is measured is what the worker archives per second.

Before that, the daemons are asked directly (no Arsip in between) about a sample of the
same mail at a few concurrency levels, spamd alone, clamd alone and both, with the CPU
time each daemon spends: the cost per message that the worker pays with the checks on.
Then, unless `--children ''`, the throughput run with checks on is repeated against a
spamd with more children than the test fixture's `--max-children=4`, to see whether
spamd's child limit or the machine's cores bound the rate.

The daemons are the tests' private ones (`tests/daemons.py`: spamd `--local`, clamd with a
one-signature EICAR database), on free loopback ports, stopped by their PID at the end.
A clamd with the full signature database costs more per message than this one.

Each timed phase starts once the service's processes are idle (its start-up and the
previous phase's tail are not charged to it). CPU time is read from /proc for the service,
spamd and clamd, and for the whole machine: what went to none of them is printed as
"other processes' CPU", because on a shared machine other work slows every figure here.

    .venv/bin/python tests/bench/contentcheck.py [--messages 2000] [--posts 30]
        [--members 50] [--sessions 4] [--children 8] [--probe-messages 100] [--keep DIR]

Everything runs on 127.0.0.1 under one temporary directory, removed at the end unless
`--keep DIR` names a directory to use and keep. Only processes this script started are
stopped, by their PID. There are no assertions on time: this is a measurement. The exit
status is 1 when something could not be measured (a daemon or the service did not start,
a post never reached every member, the spool did not drain).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import platform
import shutil
import signal
import smtplib
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from fanout import post_bytes
from ingest import (
    CLOCK_TICKS,
    SEED,
    MailFactory,
    TreeMonitor,
    generate,
    log_problems,
    send_all,
    stop_process,
)

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from sqlalchemy import func, select  # noqa: E402

from archiver.contentcheck.checker import ContentChecker  # noqa: E402
from archiver.contentcheck.daemons import DaemonAddress  # noqa: E402
from archiver.contentcheck.verdict import Verdict  # noqa: E402
from archiver.models import ContentCheck  # noqa: E402
from tests import daemons  # noqa: E402
from tests.support import (  # noqa: E402
    LIST_DOMAIN,
    RunningService,
    SmarthostSink,
    service_env,
)

LIST_ADDRESS = f"bench@{LIST_DOMAIN}"
OWNER = "owner@owner.bench.test"
MEMBER_DOMAINS = 5
WARMUP_POSTS = 2
FIXTURE_CHILDREN = 4  # spamd --max-children in tests/daemons.py
POLL_SECONDS = 0.1
SETTLED_CPU = 0.05  # CPU seconds per half second (10 % of a core) that count as idle
MAX_MESSAGES = 200_000


# ---------------------------------------------------------------------------------------
# The smarthost and the daemons


class TimedSink(SmarthostSink):
    """The tests' smarthost sink, noting when each transaction's DATA was accepted (and
    not keeping the bytes, which nobody here reads)."""

    def __init__(self) -> None:
        super().__init__()
        self.arrivals: list[tuple[float, tuple[str, ...]]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        now = time.monotonic()
        with self._changed:
            self.arrivals.append((now, tuple(a.lower() for a in envelope.rcpt_tos)))
            self._changed.notify_all()
        return "250 2.0.0 Accepted"

    def mark(self) -> int:
        """Where the next arrival will be, to look only at what comes after."""
        with self._changed:
            return len(self.arrivals)

    def wait_copies(self, since: int, members: set[str], timeout: float) -> dict[str, float]:
        """When each member got a copy after `since`, once every member has one (or the
        time is up: then only those that came)."""
        deadline = time.monotonic() + timeout
        got: dict[str, float] = {}
        seen = since
        with self._changed:
            while True:
                for at, recipients in self.arrivals[seen:]:
                    for address in recipients:
                        if address in members:
                            got.setdefault(address, at)
                seen = len(self.arrivals)
                left = deadline - time.monotonic()
                if len(got) >= len(members) or left <= 0:
                    return got
                self._changed.wait(left)


@dataclass
class Daemon:
    """A running daemon: where it listens and the PID its PID file names (for CPU time)."""

    name: str
    address: DaemonAddress
    pid: int

    def monitor(self) -> TreeMonitor:
        """CPU time of the daemon and its children (spamd's run as nobody)."""
        return TreeMonitor(self.pid, interval=0.2).start()


def _pid_from(pidfile: Path) -> int:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        text = pidfile.read_text().strip() if pidfile.exists() else ""
        if text.isdigit():
            return int(text)
        time.sleep(0.1)
    raise RuntimeError(f"no PID in {pidfile}")


@contextmanager
def spamd_with(workdir: Path, children: int) -> Iterator[Daemon]:
    """spamd as the tests run it, with `children` as its --max-children."""
    with daemons.running_spamd(workdir, children) as address:
        yield Daemon("spamd", address, _pid_from(workdir / "spamd.pid"))


@contextmanager
def clamd_in(workdir: Path) -> Iterator[Daemon]:
    """The tests' clamd (a database that knows only EICAR)."""
    with daemons.running_clamd(workdir) as address:
        yield Daemon("clamd", address, _pid_from(workdir / "clamd.pid"))


# ---------------------------------------------------------------------------------------
# The daemons on their own


@dataclass
class ProbeResult:
    """One sample of mail through the checker, straight to the daemons."""

    daemons: str
    concurrency: int
    messages: int
    seconds: float
    median_ms: float
    p95_ms: float
    spamd_cpu_ms: float  # per message
    clamd_cpu_ms: float
    unchecked: int
    other_cores: float  # CPU of processes that are not the benchmark's, in cores

    @property
    def rate(self) -> float:
        """Messages checked per second."""
        return self.messages / self.seconds if self.seconds else 0.0


async def _timed_checks(
    checker: ContentChecker, messages: Sequence[bytes], concurrency: int
) -> tuple[list[float], list[Verdict]]:
    """Every message through `checker.check_one`, `concurrency` at a time, as the worker
    does; returns each check's seconds and the verdicts."""
    limit = asyncio.Semaphore(concurrency)
    seconds: list[float] = []

    async def one(data: bytes) -> Verdict:
        async with limit:
            began = time.monotonic()
            verdict = await checker.check_one(data)
            seconds.append(time.monotonic() - began)
            return verdict

    return seconds, list(await asyncio.gather(*(one(data) for data in messages)))


def probe(
    sample: Sequence[bytes],
    spamd: Daemon,
    clamd: Daemon,
    concurrencies: Sequence[int],
    timeout: float,
) -> list[ProbeResult]:
    """The sample through spamd alone, clamd alone and both, at each concurrency."""
    results = []
    setups = (("spamd", spamd, None), ("clamd", None, clamd), ("both", spamd, clamd))
    for label, use_spamd, use_clamd in setups:
        for concurrency in concurrencies:
            print(f"- {label}, {concurrency} at a time ...", end=" ", flush=True)
            checker = ContentChecker(
                use_spamd.address if use_spamd else None,
                use_clamd.address if use_clamd else None,
                timeout=timeout,
                concurrency=concurrency,
            )
            spamd_cpu, clamd_cpu = spamd.monitor(), clamd.monitor()
            spamd0, clamd0 = spamd_cpu.cpu_seconds(), clamd_cpu.cpu_seconds()
            window = CpuWindow.start()
            seconds, verdicts = asyncio.run(_timed_checks(checker, sample, concurrency))
            wall = time.monotonic() - window.began
            spamd_cpu.stop()
            clamd_cpu.stop()
            spamd_s = spamd_cpu.cpu_seconds() - spamd0
            clamd_s = clamd_cpu.cpu_seconds() - clamd0
            _, others = window.finish(spamd_s + clamd_s)
            count = len(sample)
            result = ProbeResult(
                daemons=label,
                concurrency=concurrency,
                messages=count,
                seconds=wall,
                median_ms=statistics.median(seconds) * 1000,
                p95_ms=percentile(seconds, 95) * 1000,
                spamd_cpu_ms=spamd_s * 1000 / count,
                clamd_cpu_ms=clamd_s * 1000 / count,
                unchecked=sum(1 for verdict in verdicts if verdict.unchecked),
                other_cores=others,
            )
            print(f"{result.rate:,.1f} msgs/s", flush=True)
            results.append(result)
    return results


# ---------------------------------------------------------------------------------------
# One service: the list posts, then the journal mail


@dataclass
class RunResult:
    """One `arsip serve`, checks off or on."""

    name: str
    spamd_children: int | None  # None: checks off
    first_ms: list[float] = field(default_factory=list)
    post_reply_ms: list[float] = field(default_factory=list)
    messages: int = 0
    sent_ok: int = 0
    sent_failed: int = 0
    send_s: float = 0.0
    total_s: float | None = None  # first send until the spool was empty
    drain_after_send_s: float | None = None  # last 250 until the spool was empty
    archived: int = 0
    arsip_cpu_s: float = 0.0
    spamd_cpu_s: float = 0.0
    clamd_cpu_s: float = 0.0
    spamd_processes: int = 0
    machine_busy: float = 0.0  # share of all cores busy while archiving
    other_cores: float = 0.0  # meanwhile, CPU of processes that are none of ours, in cores
    checked: int = 0
    unchecked: int = 0
    flagged_spam: int = 0
    problems: list[str] = field(default_factory=list)
    error: str = ""

    @property
    def archive_rate(self) -> float | None:
        """Journal messages archived per second, from the first send to an empty spool."""
        return self.sent_ok / self.total_s if self.total_s else None

    @property
    def intake_rate(self) -> float | None:
        """Journal messages acknowledged with 250 per second."""
        return self.sent_ok / self.send_s if self.send_s else None


def member_addresses(count: int) -> list[str]:
    """`count` members over MEMBER_DOMAINS domains; the first one posts."""
    return [f"member{n:04d}@m{n % MEMBER_DOMAINS}.bench.test" for n in range(1, count + 1)]


def percentile(values: Sequence[float], share: float) -> float:
    """The nearest-rank percentile (the smallest value with `share` % at or below it)."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(share / 100 * len(ordered)) - 1)]


def cpu_times() -> tuple[int, int]:
    """(busy, total) clock ticks of all cores, from /proc/stat."""
    with open("/proc/stat", encoding="ascii") as handle:
        ticks = [int(value) for value in handle.readline().split()[1:]]
    idle = ticks[3] + ticks[4]  # idle and iowait
    return sum(ticks) - idle, sum(ticks)


def own_cpu() -> float:
    """CPU seconds of this process and of its children that have been waited for (the
    forked SMTP clients)."""
    times = os.times()
    return times.user + times.system + times.children_user + times.children_system


@dataclass
class CpuWindow:
    """The whole machine's CPU over a span of time, to tell how much of it went to
    processes that are none of this benchmark's (other work on a shared machine makes
    every figure here slower, and says nothing about Arsip)."""

    began: float
    machine: tuple[int, int]
    own: float

    @classmethod
    def start(cls) -> CpuWindow:
        return cls(time.monotonic(), cpu_times(), own_cpu())

    def finish(self, ours_elsewhere: float) -> tuple[float, float]:
        """(share of all cores busy, cores used by other processes); `ours_elsewhere` is
        the CPU seconds of the service and the daemons over the span."""
        busy, total = cpu_times()
        wall = max(time.monotonic() - self.began, 1e-9)
        machine_s = (busy - self.machine[0]) / CLOCK_TICKS
        ours = own_cpu() - self.own + ours_elsewhere
        return (busy - self.machine[0]) / max(total - self.machine[1], 1), max(
            0.0, (machine_s - ours) / wall
        )


def settle(pid: int, timeout: float = 60.0) -> float:
    """Wait until the service's processes are idle, so that none of its start-up (web
    processes importing, the scheduler's first jobs) or of the previous phase's tail (the
    outbox, the indexer) is charged to the next measurement; returns the seconds waited."""
    monitor = TreeMonitor(pid, interval=0.25).start()
    began = time.monotonic()
    last, quiet = monitor.cpu_seconds(), 0
    while quiet < 3 and time.monotonic() - began < timeout:
        time.sleep(0.5)
        now = monitor.cpu_seconds()
        quiet = quiet + 1 if now - last < SETTLED_CPU else 0
        last = now
    monitor.stop()
    return time.monotonic() - began


def measure_posts(
    service: RunningService, sink: TimedSink, run: RunResult, args: argparse.Namespace
) -> None:
    """Create the list, then post one at a time and time the first copy of each."""
    members = member_addresses(args.members)
    done = service.run_cli("lists", "create", LIST_ADDRESS, "--owner", OWNER)
    if done.returncode != 0:
        raise RuntimeError(f"arsip lists create failed: {done.stdout}{done.stderr}")
    member_file = Path(service.settings.data_dir).parent / "members.txt"
    member_file.write_text("\n".join(members) + "\n")
    done = service.run_cli(
        "lists", "add-member", LIST_ADDRESS, "--file", str(member_file), "--no-confirm"
    )
    if done.returncode != 0:
        raise RuntimeError(f"arsip lists add-member failed: {done.stdout}{done.stderr}")
    wanted = set(members)
    assert service.process is not None
    settle(service.process.pid)
    for number in range(WARMUP_POSTS + args.posts):
        counted = number >= WARMUP_POSTS
        since = sink.mark()
        data = post_bytes(LIST_ADDRESS, number, members[0], "Member One", "Content-check")
        with service.smtp() as client:
            sending = time.monotonic()
            client.sendmail(members[0], [LIST_ADDRESS], data)
            posted = time.monotonic()  # the post's 250
        got = sink.wait_copies(since, wanted, args.post_timeout)
        if len(got) < len(wanted):
            run.error = (
                f"post {number}: {len(got)} of {len(wanted)} members got it "
                f"in {args.post_timeout:.0f} s"
            )
            raise RuntimeError(run.error)
        if counted:
            run.first_ms.append((min(got.values()) - posted) * 1000)
            run.post_reply_ms.append((posted - sending) * 1000)
        time.sleep(0.2)  # let the worker and the outbox go idle, as between real posts
    print(
        f"first delivery median {statistics.median(run.first_ms):.0f} ms, "
        f"p95 {percentile(run.first_ms, 95):.0f} ms;",
        end=" ",
        flush=True,
    )


def check_counts(service: RunningService) -> tuple[int, int, int]:
    """(verdicts stored, of which some daemon could not answer, flagged as spam)."""
    with service.core().sessions() as session:
        rows = select(func.count()).select_from(ContentCheck)
        return (
            session.scalar(rows) or 0,
            session.scalar(rows.where(ContentCheck.unchecked != "")) or 0,
            session.scalar(rows.where(ContentCheck.spam.is_(True))) or 0,
        )


def measure_archiving(
    service: RunningService,
    run: RunResult,
    checked: Sequence[Daemon],
    args: argparse.Namespace,
) -> None:
    """Send the journal mail and time until the spool is empty, with everyone's CPU."""
    assert service.process is not None
    pid = service.process.pid
    settle(pid)
    before = service.stats()
    checks_before = check_counts(service)
    marks: dict[str, Any] = {}

    def begin() -> None:
        # started once the client processes are forked, so they inherit no sampler thread
        marks["arsip"] = TreeMonitor(pid, interval=0.2).start()
        marks["daemons"] = {daemon.name: daemon.monitor() for daemon in checked}
        marks["cpu0"] = {
            name: monitor.cpu_seconds()
            for name, monitor in [("arsip", marks["arsip"]), *marks["daemons"].items()]
        }
        marks["window"] = CpuWindow.start()

    sent = send_all(service.smtp_port, args.messages, args.sessions, 1, args.send_timeout, [begin])
    run.messages = args.messages
    run.sent_ok, run.sent_failed, run.send_s = sent.ok, sent.failed, sent.seconds
    print(f"{sent.rate:,.0f} msgs/s taken in; draining ...", end=" ", flush=True)
    deadline = time.monotonic() + args.drain_timeout
    last_change, last_pending = time.monotonic(), -1
    while True:
        pending = service.stats()["spool_pending"]
        now = time.monotonic()
        if pending == 0:
            run.total_s = now - sent.started
            run.drain_after_send_s = now - sent.finished
            break
        if pending != last_pending:
            last_change, last_pending = now, pending
        if now > deadline or now - last_change > args.stall_timeout:
            run.error = f"{pending} message(s) still in the spool"
            break
        if service.process is None or service.process.poll() is not None:
            run.error = "arsip serve exited"
            break
        time.sleep(POLL_SECONDS)
    monitors: dict[str, TreeMonitor] = {"arsip": marks["arsip"], **marks["daemons"]}
    for monitor in monitors.values():
        monitor.stop()
    spent = {name: monitors[name].cpu_seconds() - marks["cpu0"][name] for name in monitors}
    run.machine_busy, run.other_cores = marks["window"].finish(sum(spent.values()))
    run.arsip_cpu_s = spent["arsip"]
    run.spamd_cpu_s = spent.get("spamd", 0.0)
    run.clamd_cpu_s = spent.get("clamd", 0.0)
    if "spamd" in monitors:
        run.spamd_processes = len({pid for pid, _ in monitors["spamd"].members()}) - 1
    run.archived = service.stats()["messages"] - before["messages"]
    after = check_counts(service)
    run.checked, run.unchecked, run.flagged_spam = (
        a - b for a, b in zip(after, checks_before, strict=True)
    )
    print("done" if not run.error else f"gave up: {run.error}", flush=True)


def run_service(
    name: str,
    workdir: Path,
    sink: TimedSink,
    spamd: Daemon | None,
    clamd: Daemon | None,
    children: int | None,
    args: argparse.Namespace,
    posts: bool,
) -> RunResult:
    """A fresh `arsip serve`; the list posts (if `posts`), then the journal mail."""
    run = RunResult(name, children)
    data_dir = workdir / "data"
    data_dir.mkdir(parents=True)
    checks = {}
    if spamd is not None:
        checks["ARSIP_SPAMD"] = str(spamd.address)
    if clamd is not None:
        checks["ARSIP_CLAMD"] = str(clamd.address)
    env = service_env(
        data_dir,
        ARSIP_SMARTHOST=sink.address,
        ARSIP_LOG_LEVEL="WARNING",
        ARSIP_CHECK_TIMEOUT=str(args.check_timeout),
        **checks,
    )
    service = RunningService(env, workdir / "arsip-serve.log")
    print(f"- {name}: starting arsip serve ...", end=" ", flush=True)
    service.start()
    assert service.process is not None
    process = service.process
    lifetime = TreeMonitor(process.pid, interval=1.0).start()
    try:
        if posts:
            print("posting ...", end=" ", flush=True)
            measure_posts(service, sink, run, args)
        print("sending journal mail ...", end=" ", flush=True)
        measure_archiving(service, run, [d for d in (spamd, clamd) if d is not None], args)
    finally:
        lifetime.stop()
        service.close()
        stop_process(process, lifetime.members())  # any child the service left behind
    run.problems = log_problems(service.log_path.read_text("utf-8", "replace"))
    return run


# ---------------------------------------------------------------------------------------
# Reporting


def _cell(value: float | None, spec: str, unit: str = "") -> str:
    return "-" if value is None else f"{format(value, spec)}{unit}"


def _compare(off: float | None, on: float | None, how: str) -> str:
    """How a run with checks compares with the run without: added ms, or a ratio."""
    if off is None or on is None:
        return "-"
    if how == "added":
        return f"{on - off:+,.0f} ms"
    return f"{on / off:.3f}x" if off else "-"


def print_table(runs: Sequence[RunResult]) -> None:
    """metric, off, on, and how on compares, for each run with checks."""
    off = runs[0]

    def per_message(seconds: float, run: RunResult) -> float | None:
        return seconds * 1000 / run.sent_ok if run.sent_ok else None

    def median(values: list[float]) -> float | None:
        return statistics.median(values) if values else None

    def p95(values: list[float]) -> float | None:
        return percentile(values, 95) if values else None

    # (metric, value of a run, format, unit, how to compare)
    metrics = [
        ("post -> first delivery, median", lambda r: median(r.first_ms), ",.0f", " ms", "added"),
        ("post -> first delivery, p95", lambda r: p95(r.first_ms), ",.0f", " ms", "added"),
        ("post's SMTP reply, median", lambda r: median(r.post_reply_ms), ",.1f", " ms", "added"),
        ("archive throughput", lambda r: r.archive_rate, ",.1f", " msg/s", "ratio"),
        ("intake (250s per second)", lambda r: r.intake_rate, ",.0f", " msg/s", "ratio"),
        ("drain after the last 250", lambda r: r.drain_after_send_s, ",.1f", " s", "ratio"),
        ("arsip CPU per message", lambda r: per_message(r.arsip_cpu_s, r), ",.1f", " ms", "ratio"),
        ("spamd CPU per message", lambda r: per_message(r.spamd_cpu_s, r), ",.1f", " ms", "-"),
        ("clamd CPU per message", lambda r: per_message(r.clamd_cpu_s, r), ",.1f", " ms", "-"),
        ("all cores busy", lambda r: r.machine_busy * 100, ".0f", " %", "-"),
        ("other processes' CPU", lambda r: r.other_cores, ".2f", " cores", "-"),
    ]
    header = ["metric", "off"]
    for run in runs[1:]:
        header += [run.name, "vs off"]
    rows = []
    for name, value, spec, unit, how in metrics:
        row = [name, _cell(value(off), spec, unit)]
        for run in runs[1:]:
            row += [_cell(value(run), spec, unit)]
            row += [_compare(value(off), value(run), how) if how != "-" else ""]
        rows.append(row)
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print(
            "  ".join(
                cell.ljust(width) if i == 0 else cell.rjust(width)
                for i, (cell, width) in enumerate(zip(row, widths, strict=True))
            ).rstrip()
        )


def print_probe(results: Sequence[ProbeResult]) -> None:
    """The daemons on their own, one line per setup and concurrency."""
    header = (
        "daemons",
        "at a time",
        "msgs/s",
        "median ms",
        "p95 ms",
        "spamd CPU ms/msg",
        "clamd CPU ms/msg",
        "unchecked",
        "others, cores",
    )
    rows = [
        (
            r.daemons,
            str(r.concurrency),
            f"{r.rate:,.1f}",
            f"{r.median_ms:,.1f}",
            f"{r.p95_ms:,.1f}",
            f"{r.spamd_cpu_ms:,.1f}",
            f"{r.clamd_cpu_ms:,.1f}",
            str(r.unchecked),
            f"{r.other_cores:.2f}",
        )
        for r in results
    ]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print(
            "  ".join(
                cell.ljust(width) if i == 0 else cell.rjust(width)
                for i, (cell, width) in enumerate(zip(row, widths, strict=True))
            )
        )


# ---------------------------------------------------------------------------------------
# The command line


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command line options, with limits so a typo cannot start an endless run."""
    parser = argparse.ArgumentParser(
        description="Measure what the spamd and clamd checks cost list latency and archiving."
    )
    parser.add_argument("--messages", type=int, default=2000, help="journal messages per run")
    parser.add_argument("--posts", type=int, default=30, help="list posts timed per run")
    parser.add_argument("--members", type=int, default=50, help="members of the list")
    parser.add_argument("--sessions", type=int, default=4, help="SMTP sessions for journal mail")
    parser.add_argument(
        "--children",
        default="8",
        help="comma-separated spamd --max-children for extra throughput runs with checks on "
        "('' for none; the fixture's 4 is always run)",
    )
    parser.add_argument(
        "--probe-messages", type=int, default=100, help="messages per daemon probe (0: skip)"
    )
    parser.add_argument(
        "--probe-concurrency", default="1,4,8", help="comma-separated checks at a time (probe)"
    )
    parser.add_argument(
        "--check-timeout", type=int, default=10, help="ARSIP_CHECK_TIMEOUT, seconds (default 10)"
    )
    parser.add_argument("--post-timeout", type=float, default=60.0, help="limit per post")
    parser.add_argument("--send-timeout", type=float, default=900.0, help="limit per send")
    parser.add_argument("--drain-timeout", type=float, default=1800.0, help="limit per drain")
    parser.add_argument(
        "--stall-timeout", type=float, default=180.0, help="give up when the spool stops shrinking"
    )
    parser.add_argument("--keep", default=None, help="work in DIR and keep it afterwards")
    args = parser.parse_args(argv)
    if not 1 <= args.messages <= MAX_MESSAGES:
        parser.error(f"--messages must be between 1 and {MAX_MESSAGES:,}")
    if not 1 <= args.posts <= 1000:
        parser.error("--posts must be between 1 and 1000")
    if not 1 <= args.members <= 10_000:
        parser.error("--members must be between 1 and 10,000")
    if not 1 <= args.sessions <= 64:
        parser.error("--sessions must be between 1 and 64")
    if not 0 <= args.probe_messages <= 10_000:
        parser.error("--probe-messages must be between 0 and 10,000")
    if not 1 <= args.check_timeout <= 600:
        parser.error("--check-timeout must be between 1 and 600")
    try:
        args.children_list = [int(p) for p in args.children.split(",") if p.strip()]
        args.concurrency_list = [int(p) for p in args.probe_concurrency.split(",") if p.strip()]
    except ValueError:
        parser.error("--children and --probe-concurrency take numbers like 1,4,8")
    if not all(1 <= n <= 64 for n in [*args.children_list, *args.concurrency_list]):
        parser.error("--children and --probe-concurrency: each between 1 and 64")
    return args


def _raise_interrupt(signum: int, _frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def probe_sample(count: int) -> list[bytes]:
    """The first `count` journal messages of the throughput runs, as the spool has them."""
    factory = MailFactory(SEED)
    return [factory.make().data.replace(b"\n", b"\r\n") for _ in range(count)]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the whole benchmark; exit status 1 only if it could not measure."""
    args = parse_args(argv)
    reason = daemons.missing("spamd", "clamd", "sigtool")
    if reason:
        print(f"cannot run: {reason}", file=sys.stderr)
        return 1
    # The services get their whole configuration from here: an ARSIP_SPAMD in this shell
    # would otherwise turn the checks on in the run that has them off.
    for key in [key for key in os.environ if key.startswith("ARSIP_")]:
        del os.environ[key]
    signal.signal(signal.SIGTERM, _raise_interrupt)  # clean up on SIGTERM as on Ctrl-C
    cores = os.cpu_count() or 1
    print(
        f"machine: {cores} cores ({len(os.sched_getaffinity(0))} usable), "
        f"{platform.machine()}, Python {platform.python_version()}, "
        f"{platform.system()} {platform.release()}"
    )
    window = CpuWindow.start()
    time.sleep(2)
    _, others = window.finish(0.0)
    print(
        f"before starting: {others:.2f} of {cores} cores busy with other work"
        + (
            "; every figure will be slower and noisier than on an idle machine"
            if others > 0.2
            else ""
        )
    )
    seconds, mean, multipart, replies = generate(args.messages)
    print(
        f"journal mail: {args.messages:,} messages, mean {mean:,.0f} bytes, {multipart} "
        f"with an attachment, {replies} replies; generated in {seconds:.1f} s"
    )
    if args.keep:
        root = Path(args.keep).resolve()
        root.mkdir(parents=True, exist_ok=True)
    else:
        root = Path(tempfile.mkdtemp(prefix="arsip-contentcheck-"))
    runs: list[RunResult] = []
    probes: list[ProbeResult] = []
    failed = ""
    try:
        with ExitStack() as stack:
            sink = stack.enter_context(TimedSink())
            print("starting spamd and clamd ...", end=" ", flush=True)
            began = time.monotonic()
            spamd = stack.enter_context(spamd_with(root / "spamd", FIXTURE_CHILDREN))
            clamd = stack.enter_context(clamd_in(root / "clamd"))
            print(f"up in {time.monotonic() - began:.1f} s", flush=True)
            if args.probe_messages:
                print(f"the daemons alone, {args.probe_messages} messages each:")
                sample = probe_sample(args.probe_messages)
                probes = probe(sample, spamd, clamd, args.concurrency_list, args.check_timeout)
            print("the service:")
            runs.append(run_service("off", root / "off", sink, None, None, None, args, True))
            on = f"on ({FIXTURE_CHILDREN} spamd children)"
            runs.append(
                run_service(on, root / "on", sink, spamd, clamd, FIXTURE_CHILDREN, args, True)
            )
            for children in args.children_list:
                if children == FIXTURE_CHILDREN:
                    continue
                with spamd_with(root / f"spamd-{children}", children) as more:
                    runs.append(
                        run_service(
                            f"on ({children} spamd children)",
                            root / f"on-{children}",
                            sink,
                            more,
                            clamd,
                            children,
                            args,
                            False,
                        )
                    )
    except KeyboardInterrupt:
        print("\ninterrupted; cleaning up", file=sys.stderr)
        return 130
    except (RuntimeError, OSError, subprocess.TimeoutExpired, smtplib.SMTPException) as exc:
        failed = str(exc)
        print(f"\nthe benchmark could not go on: {exc}", file=sys.stderr)
    finally:
        if args.keep:
            print(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)

    if probes:
        print()
        print_probe(probes)
    if runs:
        print()
        print_table(runs)
        print()
    for run in runs:
        print(
            f"{run.name}: {run.sent_ok:,} of {run.messages:,} journal messages taken in "
            f"({run.sent_failed} refused), {run.archived:,} archived; verdicts stored "
            f"{run.checked:,}, unchecked {run.unchecked:,}, flagged spam {run.flagged_spam:,}"
            + (f"; spamd ran {run.spamd_processes} children" if run.spamd_children else "")
        )
        if run.spamd_cpu_s and run.sent_ok:
            per_message = run.spamd_cpu_s / run.sent_ok
            print(
                f"  spamd's ceiling at {per_message * 1000:.0f} CPU ms a message: "
                f"{cores / per_message:.1f} msg/s with all {cores} cores and nothing else, "
                f"{max(cores - run.other_cores, 0.1) / per_message:.1f} msg/s with the cores "
                "other processes left"
            )
        if run.error:
            print(f"  PROBLEM: {run.error}")
        for problem in run.problems:
            print(f"  service log: {problem}")
    summary = {
        "cores": cores,
        "messages": args.messages,
        "mean_size": round(mean),
        "posts": args.posts,
        "members": args.members,
        "probe": [{**asdict(p), "rate": round(p.rate, 2)} for p in probes],
        "runs": [
            {
                **{k: v for k, v in asdict(run).items() if k not in ("first_ms", "post_reply_ms")},
                "first_ms_median": statistics.median(run.first_ms) if run.first_ms else None,
                "first_ms_p95": percentile(run.first_ms, 95) if run.first_ms else None,
                "archive_msgs_per_s": run.archive_rate,
                "intake_msgs_per_s": run.intake_rate,
            }
            for run in runs
        ],
    }
    print(json.dumps(summary, separators=(",", ":")))
    incomplete = any(run.error or run.total_s is None for run in runs)
    return 1 if failed or incomplete or not runs else 0


if __name__ == "__main__":
    sys.exit(main())
