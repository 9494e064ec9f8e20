"""Web benchmark: how fast the UI answers under the production server with 8 clients.

`arsip serve` (waitress, 8 threads) runs on free loopback ports over the archive of the
search benchmark: 100,000 messages, imported and indexed. Eight client threads, each
logged in with its own session and keeping its connection alive like a browser, send a
fixed number of requests per page type, and every request is timed from sending to the
last byte of the body:

- the search page `GET /?q=...` as an administrator and as an ordinary user (a corpus
  sender, who sees only that address's mail), with seeded queries in the mix of the
  search benchmark: rare and common words, `from:`, a phrase and a date range;
- the message page `GET /messages/<id>` as an administrator, for message ids drawn from
  the database.

It reports requests/s (requests over wall time with all clients busy), p50 and p95
latency and non-200 answers per page and viewer, and the memory of `arsip serve` and
its children (RSS, PSS and USS summed from /proc/<pid>/smaps_rollup: idle before any
search, peak under load, idle after; PSS is the fair figure when processes share mapped
index files, and anonymous memory the part no file backs), as a table marked ok/MISSED
against the targets (search p95 under 150 ms, message p95 under 50 ms and at least 100
requests/s), then one JSON line. A missed target does not change the exit status.

    .venv/bin/python tests/bench/web.py [--data-dir DIR] [--requests N] [--clients C]

`--data-dir` is the data directory of an archive, for example DIR/data after
`tests/bench/search.py --keep DIR`. Without it the script runs `search.py --keep` into a
temporary folder first, which takes about 10 minutes, and deletes it afterwards. The
archive is only changed by the schema upgrade `arsip serve` does anyway and by two bench
accounts, `bench-admin@example.com` and the busiest sender's address, added (or given
the bench password again) with `arsip users`.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, timedelta
from http.cookies import SimpleCookie
from pathlib import Path
from urllib.parse import quote, urlencode

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from sqlalchemy import create_engine, text  # noqa: E402
from support import free_ports  # noqa: E402

from archiver.config import Settings, load_settings  # noqa: E402

SEED = 20_240_917
ADMIN = "bench-admin@example.com"
PASSWORD = "bench-web-password-1"
SEARCH_P95_MS = 150.0
MESSAGE_P95_MS = 50.0
MESSAGE_RPS = 100.0
MESSAGE_IDS = 2_000
WARM_UP = 16  # requests per scenario before timing starts: imports, caches, connections
STARTUP_SECONDS = 120.0
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
WORD = re.compile(r"[a-z]{4,}")
MIB = 1024 * 1024
DEFAULT_PROCESSES = Settings().web_processes


class BenchError(RuntimeError):
    """A precondition the benchmark cannot work around (a server that does not start)."""


@dataclass(frozen=True)
class Corpus:
    """What the request generator needs from the archive."""

    size: int
    message_ids: list[str]
    subjects: list[str]
    senders: list[str]
    first: date
    last: date


@dataclass
class Result:
    """The timings of one scenario: page type and viewer."""

    page: str
    viewer: str
    processes: int
    latencies: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    wall: float = 0.0

    @property
    def requests(self) -> int:
        """Requests sent, answered or not."""
        return len(self.latencies)

    def rate(self) -> float:
        """Requests per second of wall time with all clients busy."""
        return self.requests / self.wall if self.wall else 0.0

    def percentile(self, share: float) -> float:
        """The latency below which `share` of the requests finished, in milliseconds."""
        ordered = sorted(self.latencies)
        if not ordered:
            return 0.0
        return 1000 * ordered[min(len(ordered) - 1, int(share * len(ordered)))]


class Client:
    """One browser: a kept-alive connection and a session cookie."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.cookies: dict[str, str] = {}
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)

    def request(
        self, method: str, path: str, body: bytes | None = None
    ) -> tuple[int, dict[str, str], bytes]:
        """Send one request (reconnecting once if the server closed the connection)."""
        headers = {"Host": f"127.0.0.1:{self.port}"}
        if self.cookies:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        if body is not None:
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        for attempt in (1, 2):
            try:
                self.connection.request(method, path, body=body, headers=headers)
                response = self.connection.getresponse()
                data = response.read()
                break
            except (http.client.HTTPException, ConnectionError):
                self.connection.close()
                self.connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
                if attempt == 2:
                    raise
        for value in response.headers.get_all("Set-Cookie") or []:
            cookie: SimpleCookie = SimpleCookie()
            cookie.load(value)
            for name, morsel in cookie.items():
                self.cookies[name] = morsel.value
        if response.will_close:
            self.connection.close()
        return response.status, dict(response.headers.items()), data

    def login(self, email: str, password: str) -> None:
        """Log in through the form, as a person would."""
        status, _headers, page = self.request("GET", "/login")
        found = CSRF.search(page.decode("utf-8", "replace"))
        if status != 200 or found is None:
            raise BenchError(f"GET /login answered {status} without a CSRF token")
        form = {"email": email, "password": password, "csrf_token": found.group(1)}
        status, _headers, _page = self.request("POST", "/login", urlencode(form).encode())
        if status != 302:
            raise BenchError(f"login as {email} answered {status}, not a redirect")

    def close(self) -> None:
        """Close the connection."""
        self.connection.close()


def load_corpus(
    data_dir: Path, rng: random.Random, settings_env: dict[str, str] | None = None
) -> Corpus:
    """Message ids, subjects, the busiest senders and the date span of the archive
    (`settings_env`: more `ARSIP_*` settings, such as a PostgreSQL database's URL)."""
    settings = load_settings(environ={"ARSIP_DATA_DIR": str(data_dir), **(settings_env or {})})
    engine = create_engine(settings.database_url)
    try:
        with engine.connect() as db:
            rows = db.execute(text("SELECT message_id, subject FROM messages")).all()
            senders = db.scalars(
                text(
                    "SELECT address FROM message_addresses WHERE role = 'from' "
                    "GROUP BY address ORDER BY count(*) DESC LIMIT 20"
                )
            ).all()
            first, last = db.execute(text("SELECT min(date), max(date) FROM messages")).one()
    finally:
        engine.dispose()
    if not rows or not senders:
        raise BenchError(f"the archive in {data_dir} holds no messages")
    ids = [row[0] for row in rows]
    subjects = [row[1] for row in rng.sample(rows, min(5_000, len(rows)))]
    return Corpus(
        size=len(ids),
        message_ids=rng.sample(ids, min(MESSAGE_IDS, len(ids))),
        subjects=subjects,
        senders=list(senders),
        first=date.fromisoformat(str(first)[:10]),
        last=date.fromisoformat(str(last)[:10]),
    )


def search_queries(corpus: Corpus, rng: random.Random, count: int) -> list[str]:
    """Queries in the search benchmark's mix, with words from the archive's subjects."""
    frequency: Counter[str] = Counter()
    for subject in corpus.subjects:
        frequency.update(set(WORD.findall(subject.lower())))
    common = [word for word, _n in frequency.most_common(50)]
    rare = [word for word, n in frequency.items() if n == 1] or common
    phrases = [
        f"{words[i]} {words[i + 1]}"
        for subject in corpus.subjects
        if len(words := WORD.findall(subject.lower())) >= 2
        for i in range(len(words) - 1)
    ] or common
    span = max(1, (corpus.last - corpus.first).days - 30)
    queries = []
    for _ in range(count):
        kind = rng.random()
        if kind < 0.3:
            queries.append(rng.choice(rare))
        elif kind < 0.55:
            queries.append(rng.choice(common))
        elif kind < 0.7:
            queries.append(f"from:{rng.choice(corpus.senders)} {rng.choice(common)}")
        elif kind < 0.85:
            queries.append(f'"{rng.choice(phrases)}"')
        else:
            start = corpus.first + timedelta(days=rng.randrange(span))
            end = start + timedelta(days=rng.randint(7, 90))
            queries.append(f"{rng.choice(common)} after:{start} before:{end}")
    return queries


def arsip(args: Sequence[str], env: dict[str, str], stdin: str = "") -> subprocess.CompletedProcess:
    """Run one `arsip` command with the bench environment."""
    return subprocess.run(
        [str(Path(sys.executable).with_name("arsip")), *args],
        input=stdin,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )


def ensure_account(email: str, role: str, env: dict[str, str]) -> None:
    """Create the account, or give an existing one the bench password (lifting lock-outs)."""
    added = arsip(["users", "add", email, "--role", role, "--password-stdin"], env, PASSWORD)
    if added.returncode == 0:
        return
    if "exists already" not in added.stderr:
        raise BenchError(f"arsip users add {email}: {added.stderr.strip()}")
    again = arsip(["users", "password", email], env, PASSWORD)
    if again.returncode != 0:
        raise BenchError(f"arsip users password {email}: {again.stderr.strip()}")


def process_tree(root: int) -> list[int]:
    """`root` and all its descendants, from /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        parent = int(stat.rpartition(")")[2].split()[1])
        children.setdefault(parent, []).append(int(entry.name))
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo += children.get(pid, [])
    return tree


@dataclass
class Memory:
    """Memory of a set of processes, summed, in bytes: resident (RSS, shared pages counted
    in every process that maps them), proportional (PSS, shared pages split between the
    processes sharing them: the sum is what the service really costs) and unique (USS,
    pages no other process shares)."""

    rss: int = 0
    pss: int = 0
    uss: int = 0
    anonymous: int = 0  # heap and other memory no file backs: what page cache cannot hold
    processes: int = 0

    def peak(self, other: Memory) -> Memory:
        return Memory(
            max(self.rss, other.rss),
            max(self.pss, other.pss),
            max(self.uss, other.uss),
            max(self.anonymous, other.anonymous),
            max(self.processes, other.processes),
        )

    def mib(self) -> dict[str, float]:
        return {
            name: round(getattr(self, name) / MIB, 1) for name in ("rss", "pss", "uss", "anonymous")
        }


ROLLUP = {
    "Rss": "rss",
    "Pss": "pss",
    "Private_Clean": "uss",
    "Private_Dirty": "uss",
    "Anonymous": "anonymous",
}


def memory_of(pids: Sequence[int]) -> Memory:
    """The summed memory of `pids`, from /proc/<pid>/smaps_rollup (processes that ended
    count nothing)."""
    total = Memory()
    for pid in pids:
        try:
            lines = Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()
        except OSError:
            continue
        total.processes += 1
        for line in lines:
            name, _, value = line.partition(":")
            if name in ROLLUP:
                kib = int(value.split()[0])
                setattr(total, ROLLUP[name], getattr(total, ROLLUP[name]) + kib * 1024)
    return total


class MemoryWatch:
    """Samples the server's memory in the background and keeps the peak."""

    def __init__(self, pid: int, interval: float = 0.2) -> None:
        self.pid = pid
        self.interval = interval
        self.peak = Memory()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = self.peak.peak(memory_of(process_tree(self.pid)))
            self._stop.wait(self.interval)

    def __enter__(self) -> MemoryWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


@contextmanager
def server(
    data_dir: Path, log: Path, processes: int, settings_env: dict[str, str] | None = None
) -> Iterator[tuple[int, int, dict[str, str]]]:
    """`arsip serve` with `processes` web processes on free loopback ports: its PID, web
    port and environment (`settings_env`: more `ARSIP_*` settings, such as a PostgreSQL
    database and search backend; the caller's own `ARSIP_*` variables are never used)."""
    smtp, lmtp, web = free_ports(3)
    env = {k: v for k, v in os.environ.items() if not k.startswith("ARSIP_")}
    env.update(settings_env or {})
    env.update(
        ARSIP_DATA_DIR=str(data_dir.resolve()),
        ARSIP_SMTP_HOST="127.0.0.1",
        ARSIP_SMTP_PORT=str(smtp),
        ARSIP_LMTP_PORT=str(lmtp),
        ARSIP_WEB_HOST="127.0.0.1",
        ARSIP_WEB_PORT=str(web),
        ARSIP_WEB_PROCESSES=str(processes),
        ARSIP_LOG_LEVEL="WARNING",
    )
    with open(log, "wb") as output:
        process = subprocess.Popen(
            [str(Path(sys.executable).with_name("arsip")), "serve"],
            env=env,
            cwd=data_dir,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + STARTUP_SECONDS
        while True:
            if process.poll() is not None:
                raise BenchError(f"arsip serve exited with {process.returncode}; see {log}")
            connection = http.client.HTTPConnection("127.0.0.1", web, timeout=5)
            with contextlib.suppress(OSError):  # not listening yet
                connection.request("GET", "/healthz")
                if connection.getresponse().status == 200:
                    connection.close()
                    break
            connection.close()
            if time.monotonic() > deadline:
                raise BenchError(f"arsip serve did not answer /healthz in {STARTUP_SECONDS:.0f} s")
            time.sleep(0.2)
        yield process.pid, web, env
    finally:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def settle(pid: int, seconds: float = 2.0) -> Memory:
    """The service's memory once it has been idle for a moment."""
    time.sleep(seconds)
    return memory_of(process_tree(pid))


def run_load(clients: Sequence[Client], paths: Sequence[str], result: Result) -> None:
    """Send `paths` through all clients at once; each takes the next path when done."""
    lock = threading.Lock()
    cursor = iter(range(len(paths)))
    start = threading.Barrier(len(clients) + 1)

    def work(client: Client) -> None:
        start.wait()
        while True:
            with lock:
                index = next(cursor, None)
            if index is None:
                return
            began = time.perf_counter()
            try:
                status, _headers, _body = client.request("GET", paths[index])
                outcome = "" if status == 200 else str(status)
            except (OSError, http.client.HTTPException) as exc:
                outcome = type(exc).__name__
            elapsed = time.perf_counter() - began
            with lock:
                result.latencies.append(elapsed)
                if outcome:
                    result.errors[outcome] += 1

    threads = [threading.Thread(target=work, args=(client,)) for client in clients]
    for thread in threads:
        thread.start()
    start.wait()
    began = time.perf_counter()
    for thread in threads:
        thread.join()
    result.wall = time.perf_counter() - began


def scenario(
    port: int,
    email: str,
    page: str,
    viewer: str,
    paths: Sequence[str],
    clients: int,
    processes: int,
) -> Result:
    """Log `clients` sessions in as `email`, warm them up, then time `paths`."""
    sessions = [Client(port) for _ in range(clients)]
    try:
        for session in sessions:
            session.login(email, PASSWORD)
        run_load(sessions, paths[:WARM_UP], Result(page, viewer, processes))
        result = Result(page, viewer, processes)
        run_load(sessions, paths[WARM_UP:], result)
        return result
    finally:
        for session in sessions:
            session.close()


def target(result: Result) -> list[tuple[str, bool]]:
    """The targets that apply to `result`, each with whether it was met."""
    if result.page == "search":
        return [(f"p95 < {SEARCH_P95_MS:.0f} ms", result.percentile(0.95) < SEARCH_P95_MS)]
    return [
        (f"p95 < {MESSAGE_P95_MS:.0f} ms", result.percentile(0.95) < MESSAGE_P95_MS),
        (f">= {MESSAGE_RPS:.0f} req/s", result.rate() >= MESSAGE_RPS),
    ]


def report(
    results: Sequence[Result],
    memory: dict[int, dict[str, Memory]],
    clients: int,
    args: dict,
) -> None:
    """Print the table and the JSON line."""
    print(
        f"{'procs':>5} {'page':<8} {'viewer':<6} {'requests':>8} {'req/s':>7} {'p50 ms':>7} "
        f"{'p95 ms':>7} {'errors':>6}  targets"
    )
    for result in results:
        marks = ", ".join(f"{name} {'ok' if met else 'MISSED'}" for name, met in target(result))
        print(
            f"{result.processes:>5} {result.page:<8} {result.viewer:<6} {result.requests:>8} "
            f"{result.rate():>7.1f} {result.percentile(0.5):>7.1f} {result.percentile(0.95):>7.1f} "
            f"{sum(result.errors.values()):>6}  {marks}"
        )
    print(
        f"memory of arsip serve and children (MiB, summed; PSS splits shared pages), "
        f"{clients} clients:"
    )
    print(
        f"{'procs':>5} {'when':<28} {'RSS':>8} {'PSS':>8} {'USS':>8} {'anon':>8} {'processes':>9}"
    )
    for processes, moments in memory.items():
        for when, used in moments.items():
            print(
                f"{processes:>5} {when:<28} {used.rss / MIB:>8.0f} {used.pss / MIB:>8.0f} "
                f"{used.uss / MIB:>8.0f} {used.anonymous / MIB:>8.0f} {used.processes:>9}"
            )
    summary = {
        "bench": "web",
        **args,
        "clients": clients,
        "peak_rss_mib": {
            str(k): round(m["under load (peak)"].rss / MIB, 1) for k, m in memory.items()
        },
        "memory_mib": {
            str(k): {when: used.mib() for when, used in moments.items()}
            for k, moments in memory.items()
        },
        "results": [
            {
                "web_processes": result.processes,
                "page": result.page,
                "viewer": result.viewer,
                "requests": result.requests,
                "requests_per_s": round(result.rate(), 1),
                "p50_ms": round(result.percentile(0.5), 1),
                "p95_ms": round(result.percentile(0.95), 1),
                "mean_ms": round(1000 * statistics.fmean(result.latencies), 1)
                if result.latencies
                else 0.0,
                "errors": dict(result.errors),
                "targets": {name: met for name, met in target(result)},
            }
            for result in results
        ],
    }
    print(json.dumps(summary))


def log_problems(log: Path) -> list[str]:
    """The lines of the server log that speak of errors, tracebacks included."""
    if not log.exists():
        return []
    lines = log.read_text(errors="replace").splitlines()
    return [line for line in lines if re.search(r"ERROR|CRITICAL|Traceback|Error:", line)]


@dataclass(frozen=True)
class Plan:
    """The requests of one bench run, the same for every number of web processes."""

    data_dir: Path
    corpus: Corpus
    search_paths: list[str]
    message_paths: list[str]
    user: str  # the ordinary user: the busiest sender
    settings_env: dict[str, str] = field(default_factory=dict)


def plan(
    data_dir: Path, requests: int, seed: int, settings_env: dict[str, str] | None = None
) -> Plan:
    """Seeded search and message requests for the archive in `data_dir`."""
    rng = random.Random(seed)
    corpus = load_corpus(data_dir, rng, settings_env)
    total = requests + WARM_UP
    queries = search_queries(corpus, rng, total)
    return Plan(
        data_dir=data_dir,
        corpus=corpus,
        search_paths=["/?" + urlencode({"q": query}) for query in queries],
        message_paths=[
            "/messages/" + quote(rng.choice(corpus.message_ids), safe="@+") for _ in range(total)
        ],
        user=corpus.senders[0],
        settings_env=dict(settings_env or {}),
    )


def measure_service(
    load: Plan, log: Path, processes: int, clients: int
) -> tuple[list[Result], dict[str, Memory]]:
    """Start the service, time the three scenarios with `clients` clients, and sample its
    memory idle before, at the peak under load and idle after."""
    results = []
    with server(load.data_dir, log, processes, load.settings_env) as (pid, port, env):
        ensure_account(ADMIN, "admin", env)
        ensure_account(load.user, "user", env)
        moments = {"idle, before any search": settle(pid)}
        with MemoryWatch(pid) as watch:
            for email, page, viewer, paths in (
                (ADMIN, "search", "admin", load.search_paths),
                (load.user, "search", "user", load.search_paths),
                (ADMIN, "message", "admin", load.message_paths),
            ):
                results.append(scenario(port, email, page, viewer, paths, clients, processes))
        moments["under load (peak)"] = watch.peak
        moments["idle, after the searches"] = settle(pid)
    return results, moments


def build_archive(folder: Path) -> Path:
    """Run the search benchmark with --keep into `folder` (about 10 minutes)."""
    print(f"building the bench archive in {folder} with search.py --keep (about 10 minutes)")
    subprocess.run(
        [sys.executable, str(Path(__file__).with_name("search.py")), "--keep", str(folder)],
        check=True,
    )
    return folder / "data"


def main(argv: Sequence[str] | None = None) -> int:
    """Parse arguments, start the server, run the scenarios and report."""
    parser = argparse.ArgumentParser(description=__doc__.partition("\n")[0])
    parser.add_argument(
        "--data-dir", type=Path, default=None, help="archive data directory (default: build one)"
    )
    parser.add_argument("--requests", type=int, default=400, help="timed requests per scenario")
    parser.add_argument("--clients", type=int, default=8, help="concurrent clients")
    parser.add_argument("--seed", type=int, default=SEED, help="seed for queries and ids")
    parser.add_argument(
        "--web-processes",
        type=int,
        nargs="+",
        default=[1, DEFAULT_PROCESSES],
        help="web process counts to run one after the other (default: 1, the baseline, "
        f"then the service's default, {DEFAULT_PROCESSES} here)",
    )
    options = parser.parse_args(argv)

    scratch = Path(tempfile.mkdtemp(prefix="arsip-bench-web-"))
    log = scratch / "serve.log"
    try:
        data_dir = options.data_dir or build_archive(scratch / "archive")
        load = plan(data_dir, options.requests, options.seed)
        results: list[Result] = []
        memory: dict[int, dict[str, Memory]] = {}
        for processes in options.web_processes:
            found, memory[processes] = measure_service(load, log, processes, options.clients)
            results += found
        report(
            results,
            memory,
            options.clients,
            {"messages": load.corpus.size, "user": load.user, "seed": options.seed},
        )
        problems = log_problems(log)
        if problems:
            print(f"the server logged {len(problems)} error lines, the first ones:")
            for line in problems[:20]:
                print("  " + line)
        return 0
    except BenchError as exc:
        print(f"web bench: {exc}", file=sys.stderr)
        for line in log_problems(log)[:20]:
            print("  " + line, file=sys.stderr)
        return 1
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
