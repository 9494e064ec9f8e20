"""Real-mail benchmark: Arsip and notmuch side by side on the same maildir, in one run.

Generated mail flatters an archive: real list mail has long patches, long Cc lists and a
far larger vocabulary. This takes a maildir of real mail (for example one written by
`tests/bench/realmail.py` from a public-inbox archive) and measures, in the same run:

- Arsip: a fresh `arsip serve` (default web processes) on free loopback ports in a temp
  data directory; `arsip import DIR` into it while it runs, and the clock from the
  import's start until the service's `/healthz` shows an empty index queue (received →
  searchable; the import alone is timed too), and on until the service's processes are
  idle (settled: the merges the indexer put off during the backlog are done; searches
  and memory are measured from there); the memory of the service and its children
  (RSS and PSS, from /proc) idle once settled and once searched; the data directory
  per part (database, blobs, index; allocated blocks) against the mail's size, after
  `arsip store repack` has packed the blobs as the service does every few minutes
  (timed too); the median
  of each query type over HTTP (the search page, as an administrator, one client) and as
  `arsip search` on the command line (whole processes, the service answering over its
  local socket).
- notmuch (Debian's package): `notmuch new` on the same maildir with a temporary
  NOTMUCH_CONFIG whose database lives in the temp folder (the maildir is only read; flags
  are not synchronised), its peak RSS, the database's size, and `notmuch search
  --limit=20` per query type.

Queries are drawn from the mail's own headers, seeded, the same for both programs in each
one's syntax: a rare word (in one subject only), a common word (the most frequent subject
words), a two-word phrase from a subject, `from:` a sender, `msgid:` (notmuch `id:`), a
month, and `from:` + phrase + date together.

    .venv/bin/python tests/bench/real.py --maildir DIR [--runs N] [--keep FOLDER]

It prints progress while it runs, then one Markdown table and one JSON line. The temp
folder is deleted afterwards unless `--keep` names where to put it.
"""

from __future__ import annotations

import argparse
import email.header
import json
import os
import platform
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from email.parser import BytesHeaderParser
from email.policy import compat32
from email.utils import parseaddr, parsedate_to_datetime
from pathlib import Path
from urllib.parse import urlencode

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(Path(__file__).resolve().parent)]

import cli as cli_bench  # noqa: E402  (tests/bench/cli.py)
import ingest as ingest_bench  # noqa: E402  (tests/bench/ingest.py)

web = cli_bench.web_bench()

SEED = 20_261_206
QUERY_TYPES = ("rare word", "common word", "phrase", "from:", "msgid:", "month", "combined")
COMMON_WORDS = 20
SEARCHABLE_SECONDS = 4 * 3600.0  # give up waiting for the index queue after this long
PROGRESS_SECONDS = 10.0
SETTLED_SECONDS = 3.0  # the service is settled once its processes use no CPU for this long
IDLE_CPU_SECONDS = 0.1  # ... that is, less than this in a second, all of them together
WORD = re.compile(r"[a-z]{4,}")
SUBJECT_TAGS = re.compile(r"^(\s*(re|fwd?|aw)\s*:|\s*\[[^\]]*\])+", re.IGNORECASE)
MB = 1_000_000
MIB = 1024 * 1024


class BenchError(RuntimeError):
    """Something the benchmark cannot work around: no notmuch, no mail, a failed import."""


@dataclass(frozen=True)
class Header:
    """What the query generator needs of one message."""

    message_id: str
    sender: str
    day: date
    words: tuple[str, ...]  # the subject's words, without Re: and [PATCH ...] tags


@dataclass(frozen=True)
class Query:
    """One query in each program's syntax."""

    kind: str
    arsip: str
    notmuch: str


def mail_files(maildir: Path) -> Iterator[Path]:
    """The message files of a maildir (or of a folder of message files), in name order."""
    for path in sorted(maildir.rglob("*")):
        parts = path.relative_to(maildir).parts
        if path.is_file() and "tmp" not in parts[:-1] and not parts[-1].startswith("."):
            yield path


def _subject(raw: str) -> str:
    try:
        return str(email.header.make_header(email.header.decode_header(raw)))
    except (ValueError, LookupError, UnicodeError):
        return raw


def read_headers(files: list[Path]) -> list[Header]:
    """Message-ID, sender, day and subject words of every message that has all four."""
    parser = BytesHeaderParser(policy=compat32)
    headers = []
    for number, path in enumerate(files, 1):
        with open(path, "rb") as handle:
            message = parser.parse(handle)
        message_id = str(message.get("Message-ID", "")).strip().strip("<>")
        sender = parseaddr(str(message.get("From", "")))[1].lower()
        try:
            day = parsedate_to_datetime(str(message.get("Date", ""))).date()
        except (TypeError, ValueError, IndexError):
            continue
        words = tuple(
            WORD.findall(SUBJECT_TAGS.sub("", _subject(str(message.get("Subject", "")))).lower())
        )
        if message_id and " " not in message_id and "@" in sender and words:
            headers.append(Header(message_id, sender, day, words))
        if number % 10_000 == 0:
            print(f"  headers: {number:,} of {len(files):,}", file=sys.stderr, flush=True)
    if not headers:
        raise BenchError("no message in the maildir has a Message-ID, From, Date and Subject")
    return headers


def make_queries(headers: list[Header], runs: int, rng: random.Random) -> list[Query]:
    """`runs` queries of each type, drawn from the headers."""
    frequency = Counter(word for header in headers for word in set(header.words))
    rare = sorted(word for word, count in frequency.items() if count == 1)
    common = [word for word, _count in frequency.most_common(COMMON_WORDS)]
    with_phrase = [header for header in headers if len(header.words) >= 2]
    months = sorted({(header.day.year, header.day.month) for header in headers})
    queries = []
    for _ in range(runs):
        word = rng.choice(rare or common)
        queries.append(Query("rare word", word, word))
        word = rng.choice(common)
        queries.append(Query("common word", word, word))
        header = rng.choice(with_phrase)
        at = rng.randrange(len(header.words) - 1)
        phrase = f'"{header.words[at]} {header.words[at + 1]}"'
        queries.append(Query("phrase", phrase, phrase))
        sender = rng.choice(headers).sender
        queries.append(Query("from:", f"from:{sender}", f"from:{sender}"))
        message_id = rng.choice(headers).message_id
        queries.append(Query("msgid:", f"msgid:{message_id}", f"id:{message_id}"))
        year, month = rng.choice(months)
        first = date(year, month, 1)
        last = (first + timedelta(days=32)).replace(day=1) - timedelta(days=1)
        queries.append(
            Query("month", f"date:{year}-{month:02d}", f"date:{first.isoformat()}..{last}")
        )
        header = rng.choice(with_phrase)
        phrase = f'"{header.words[0]} {header.words[1]}"'
        after = header.day - timedelta(days=rng.randint(0, 90))
        queries.append(
            Query(
                "combined",
                f"from:{header.sender} {phrase} after:{after.isoformat()}",
                f"from:{header.sender} {phrase} date:{after.isoformat()}..",
            )
        )
    return queries


def allocated(path: Path) -> int:
    """Bytes of disk the files under `path` (or the file) take: allocated blocks."""
    if path.is_file():
        return path.stat().st_blocks * 512
    if not path.is_dir():
        return 0
    return sum(p.stat().st_blocks * 512 for p in path.rglob("*") if p.is_file())


def arsip_disk(data_dir: Path) -> dict[str, int]:
    """The data directory per part: database (with its WAL), blobs, index, the rest."""
    database = sum(allocated(path) for path in data_dir.glob("arsip.db*"))
    blobs = allocated(data_dir / "blobs")
    index = allocated(data_dir / "index")
    return {
        "database": database,
        "blobs": blobs,
        "index": index,
        "other": allocated(data_dir) - database - blobs - index,
    }


def health(port: int) -> dict:
    """The service's `/healthz` figures."""
    client = web.Client(port)
    try:
        status, _headers, body = client.request("GET", "/healthz")
    finally:
        client.close()
    if status != 200:
        raise BenchError(f"/healthz answered {status}")
    return json.loads(body)


def import_until_searchable(maildir: Path, port: int, env: dict[str, str]) -> dict[str, float]:
    """Run `arsip import` into the running service and wait for an empty index queue."""
    began = time.monotonic()
    importer = subprocess.Popen(
        [cli_bench.ARSIP, "import", str(maildir)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    imported_s: float | None = None
    shown = began
    while True:
        if imported_s is None and importer.poll() is not None:
            imported_s = time.monotonic() - began
            out, err = importer.communicate()
            if importer.returncode != 0:
                raise BenchError(f"arsip import failed: {err.strip()[-500:]}")
            print(f"  import done in {imported_s:.0f} s: {out.strip()}", flush=True)
        figures = health(port)
        now = time.monotonic()
        idle = figures["index_pending"] == 0 and not figures["spool_pending"]
        if imported_s is not None and idle:
            return {
                "import_s": imported_s,
                "searchable_s": now - began,
                "messages": figures["messages"],
            }
        if now - shown >= PROGRESS_SECONDS:
            shown = now
            print(
                f"  {now - began:5.0f} s: {figures['messages']:,} archived, "
                f"{figures['index_pending']:,} waiting for the index",
                flush=True,
            )
        if now - began > SEARCHABLE_SECONDS:
            raise BenchError(f"the index queue was not empty after {SEARCHABLE_SECONDS:.0f} s")
        time.sleep(0.5)


def wait_until_settled(pid: int, began: float) -> float:
    """Seconds from `began` until the service went idle: the indexer's merges done."""
    tree = ingest_bench.TreeMonitor(pid)  # read by hand here, once a second
    tree.sample()
    quiet_since = time.monotonic()
    used = tree.cpu_seconds()
    while time.monotonic() - quiet_since < SETTLED_SECONDS:
        time.sleep(1.0)
        tree.sample()
        now = tree.cpu_seconds()
        if now - used >= IDLE_CPU_SECONDS:
            quiet_since = time.monotonic()
        used = now
        if time.monotonic() - began > SEARCHABLE_SECONDS:
            raise BenchError(f"the service was still busy after {SEARCHABLE_SECONDS:.0f} s")
    return quiet_since - began


def repack(env: dict[str, str]) -> float:
    """`arsip store repack` into the running service's store; returns its seconds."""
    began = time.monotonic()
    done = subprocess.run(
        [cli_bench.ARSIP, "store", "repack"], env=env, capture_output=True, text=True
    )
    if done.returncode != 0:
        raise BenchError(f"arsip store repack failed: {done.stderr.strip()[-500:]}")
    return time.monotonic() - began


def http_medians(port: int, queries: list[Query]) -> dict[str, float]:
    """Median ms of the search page per query type, as an administrator, one client."""
    client = web.Client(port)
    client.login(web.ADMIN, web.PASSWORD)
    timings: dict[str, list[float]] = {kind: [] for kind in QUERY_TYPES}
    try:
        for query in queries[: len(QUERY_TYPES)]:  # warm up: imports, caches, the connection
            client.request("GET", "/?" + urlencode({"q": query.arsip}))
        for query in queries:
            began = time.perf_counter()
            status, _headers, _body = client.request("GET", "/?" + urlencode({"q": query.arsip}))
            timings[query.kind].append((time.perf_counter() - began) * 1000)
            if status != 200:
                raise BenchError(f"search page for {query.arsip!r} answered {status}")
    finally:
        client.close()
    return {kind: statistics.median(values) for kind, values in timings.items()}


def cli_medians(
    queries: list[Query], command: list[str], syntax: str, env: dict[str, str]
) -> dict[str, dict[str, float]]:
    """Median, p95 and CPU per query type of `command QUERY`, whole processes."""
    return {
        kind: cli_bench.time_commands(
            [[*command, getattr(query, syntax)] for query in queries if query.kind == kind], env
        )
        for kind in QUERY_TYPES
    }


def run_arsip(maildir: Path, scratch: Path, queries: list[Query]) -> dict:
    """Import into a fresh service, wait until searchable, measure memory, disk, queries."""
    data_dir = scratch / "arsip"
    data_dir.mkdir()
    log = scratch / "arsip-serve.log"
    with web.server(data_dir, log, web.DEFAULT_PROCESSES) as (pid, port, env):
        web.ensure_account(web.ADMIN, "admin", env)
        print("arsip: importing into the running service ...", flush=True)
        began = time.monotonic()
        with web.MemoryWatch(pid) as watch:
            timing = import_until_searchable(maildir, port, env)
            timing["settled_s"] = wait_until_settled(pid, began)
        print(f"  settled after {timing['settled_s']:.0f} s", flush=True)
        memory = {"peak while importing": watch.peak, "idle, settled": web.settle(pid)}
        print("arsip: searching over HTTP ...", flush=True)
        http = http_medians(port, queries)
        print("arsip: searching with the command line ...", flush=True)
        cli = cli_medians(queries, [cli_bench.ARSIP, "search"], "arsip", env)
        memory["idle, once searched"] = web.settle(pid)
        print("arsip: packing the blobs ...", flush=True)
        timing["repack_s"] = repack(env)
        problems = web.log_problems(log)
    return {
        **timing,
        "memory": memory,
        "processes": memory["idle, once searched"].processes,
        "disk": arsip_disk(data_dir),
        "http_ms": http,
        "cli_ms": cli,
        "log_problems": problems[:20],
    }


NOTMUCH_CONFIG = """[database]
path={database}
mail_root={maildir}
[user]
name=Bench
primary_email=bench@example.com
[new]
tags=inbox;
ignore=
[search]
exclude_tags=
[maildir]
synchronize_flags=false
"""


def run_notmuch(maildir: Path, scratch: Path, queries: list[Query]) -> dict:
    """`notmuch new` on the maildir into a temp database, then the same queries."""
    notmuch = shutil.which("notmuch")
    if notmuch is None:
        raise BenchError("notmuch is not installed (Debian: apt-get install notmuch)")
    database = scratch / "notmuch"
    database.mkdir()
    config = scratch / "notmuch-config"
    config.write_text(NOTMUCH_CONFIG.format(database=database, maildir=maildir.resolve()))
    env = {**os.environ, "NOTMUCH_CONFIG": str(config)}
    print("notmuch: notmuch new ...", flush=True)
    began = time.monotonic()
    process = subprocess.Popen(
        [notmuch, "new"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    assert process.stdout is not None
    output = process.stdout.read().decode(errors="replace")
    # wait4 gives this child's own peak RSS; RUSAGE_CHILDREN would mix in every other child.
    _pid, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    new_s = time.monotonic() - began
    if process.returncode != 0:
        raise BenchError(f"notmuch new failed: {output.strip()[-500:]}")
    print(f"  notmuch new done in {new_s:.0f} s: {' '.join(output.split())[-200:]}", flush=True)
    counted = subprocess.run(
        [notmuch, "count", "*"], env=env, capture_output=True, text=True, check=True
    )
    print("notmuch: searching with the command line ...", flush=True)
    cli = cli_medians(queries, [notmuch, "search", "--limit=20"], "notmuch", env)
    return {
        "new_s": new_s,
        "messages": int(counted.stdout.strip()),
        "peak_rss": usage.ru_maxrss * 1024,
        "disk": allocated(database),
        "cli_ms": cli,
    }


def _mb(value: float) -> str:
    return f"{value / MB:,.0f} MB"


def table(mail: dict, arsip: dict, notmuch: dict) -> list[str]:
    """The comparison as Markdown rows."""
    memory = arsip["memory"]["idle, once searched"]
    idle = arsip["memory"]["idle, settled"]
    peak = arsip["memory"]["peak while importing"]
    disk = arsip["disk"]
    total = sum(disk.values())
    cli_a = statistics.median(v["p50"] for v in arsip["cli_ms"].values())
    cli_n = statistics.median(v["p50"] for v in notmuch["cli_ms"].values())
    rows = [
        "| | Arsip | notmuch |",
        "|---|---|---|",
        f"| received → searchable | {arsip['messages'] / arsip['searchable_s']:,.0f} msgs/s "
        f"({arsip['searchable_s']:,.0f} s; import alone {arsip['import_s']:,.0f} s, "
        f"{arsip['messages'] / arsip['import_s']:,.0f} msgs/s; settled after "
        f"{arsip['settled_s']:,.0f} s) "
        f"| {notmuch['messages'] / notmuch['new_s']:,.0f} msgs/s ({notmuch['new_s']:,.0f} s) |",
        f"| memory | RSS {memory.rss / MIB:,.0f} MiB, PSS {memory.pss / MIB:,.0f} MiB once "
        f"searched ({arsip['processes']} processes); {idle.rss / MIB:,.0f} / "
        f"{idle.pss / MIB:,.0f} MiB idle before; peak RSS {peak.rss / MIB:,.0f} MiB importing "
        f"| peak RSS {notmuch['peak_rss'] / MIB:,.0f} MiB (`notmuch new`) |",
        f"| on disk | {_mb(total)} = {total / mail['bytes']:.2f}x the mail (database "
        f"{_mb(disk['database'])}, blobs {_mb(disk['blobs'])}, index {_mb(disk['index'])}, "
        f"other {_mb(disk['other'])}; blobs packed in {arsip['repack_s']:,.0f} s) "
        f"| {_mb(notmuch['disk'])} = "
        f"{notmuch['disk'] / mail['bytes']:.2f}x (database only; the mail stays in the maildir) |",
        f"| command-line search, median of the type medians | {cli_a:,.0f} ms (`arsip search`, "
        f"service running) | {cli_n:,.0f} ms (`notmuch search --limit=20`) |",
    ]
    for kind in QUERY_TYPES:
        a, n = arsip["cli_ms"][kind], notmuch["cli_ms"][kind]
        rows.append(
            f"| {kind}: median HTTP / CLI | {arsip['http_ms'][kind]:,.1f} / {a['p50']:,.0f} ms "
            f"| — / {n['p50']:,.1f} ms |"
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, run both programs on the maildir, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.partition("\n")[0])
    parser.add_argument("--maildir", type=Path, required=True, help="the real mail")
    parser.add_argument("--runs", type=int, default=20, help="queries per type")
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--keep", type=Path, default=None, help="keep the data here")
    options = parser.parse_args(argv)
    if not 1 <= options.runs <= 1000:
        parser.error("--runs must be between 1 and 1000")
    maildir = options.maildir.resolve()
    if not maildir.is_dir():
        parser.error(f"--maildir {maildir}: no such folder")
    if options.keep is not None:
        scratch = options.keep.resolve()
        scratch.mkdir(parents=True, exist_ok=False)
    else:
        scratch = Path(tempfile.mkdtemp(prefix="arsip-bench-real-"))
    print(
        f"machine: {os.cpu_count()} cores, {platform.machine()}, Python "
        f"{platform.python_version()}, load average {os.getloadavg()[0]:.1f} at start",
        flush=True,
    )
    try:
        files = list(mail_files(maildir))
        mail = {"messages": len(files), "bytes": sum(path.stat().st_size for path in files)}
        print(f"mail: {mail['messages']:,} files, {_mb(mail['bytes'])} in {maildir}", flush=True)
        began = time.monotonic()
        queries = make_queries(read_headers(files), options.runs, random.Random(options.seed))
        print(f"queries: {len(queries)} drawn in {time.monotonic() - began:.0f} s", flush=True)
        loads = [os.getloadavg()[0]]
        notmuch = run_notmuch(maildir, scratch, queries)
        loads.append(os.getloadavg()[0])
        arsip = run_arsip(maildir, scratch, queries)
        loads.append(os.getloadavg()[0])
    except BenchError as exc:
        print(f"real bench: {exc}", file=sys.stderr)
        return 1
    finally:
        if options.keep is None:
            shutil.rmtree(scratch, ignore_errors=True)
    print()
    print(
        f"{mail['messages']:,} messages, {_mb(mail['bytes'])} of mail, {maildir.name}; "
        f"{os.cpu_count()} cores; load average {', '.join(f'{x:.1f}' for x in loads)} "
        f"(start, after notmuch, after Arsip); {datetime.now():%Y-%m-%d %H:%M}"
    )
    print("\n".join(table(mail, arsip, notmuch)))
    for kind in QUERY_TYPES:
        example = next(query for query in queries if query.kind == kind)
        print(f"  e.g. {kind}: {example.arsip}  |  {example.notmuch}")
    for line in arsip["log_problems"]:
        print(f"  serve log: {line}")
    arsip["memory"] = {when: used.mib() for when, used in arsip["memory"].items()}
    print(
        json.dumps(
            {"bench": "real", "mail": mail, "runs": options.runs, "loads": loads}
            | {"arsip": arsip, "notmuch": notmuch}
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
