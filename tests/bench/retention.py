"""Retention benchmark: how fast a sweep deletes, with a legal hold in force.

On a copy of the search benchmark's 100,000-message archive it adds one policy that
expires half of the messages (everything older than the median date) and one legal
hold over the busiest senders of that half, about a tenth of it, then runs the sweep
`arsip serve` runs at night and reports messages deleted per second (target: at least
1,000), next to a baseline in the same run: the same sweep on a second copy deleting one
message per transaction, for `--baseline-seconds`. It also times the indexer taking the
deleted messages out of search, checks the result (every held message is still there,
every other expired one is gone, `arsip verify`'s store check is clean on a sample), and
prints SQLite's query plans for the two per-batch queries to show that checking holds
scans no table.

    .venv/bin/python tests/bench/retention.py [--data-dir DIR] [--baseline-seconds S]

`--data-dir` is the data directory of an archive, for example DIR/data after
`tests/bench/search.py --keep DIR`; it is copied, never changed. Without it the script
runs `search.py --keep` into a temporary folder first (about 10 minutes).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from sqlalchemy import func, select, text  # noqa: E402

from archiver import migrate  # noqa: E402
from archiver.config import load_settings  # noqa: E402
from archiver.core import Core, build_core  # noqa: E402
from archiver.models import Message, MessageAddress  # noqa: E402
from archiver.retention.rules import add_hold, add_policy  # noqa: E402
from archiver.retention.sweep import Sweeper, candidate_query, custodian_query  # noqa: E402
from archiver.search.indexer import Indexer  # noqa: E402

TARGET = 1_000.0
HOLD_SHARE = 0.10
ACTOR = "bench"


def copy_archive(source: Path, target: Path) -> Core:
    """A migrated copy of the archive in `source`."""
    shutil.copytree(source, target)
    core = build_core(load_settings(environ={"ARSIP_DATA_DIR": str(target)}))
    migrate.upgrade(core.engine)
    return core


def plan(core: Core) -> tuple[int, list[str], int, int]:
    """The policy's period in days (half the archive expires), the custodians (busiest
    senders of that half, about a tenth of it), and how many expire and how many of
    those the hold covers."""
    now = datetime.now(UTC)
    with core.sessions() as session:
        total = session.scalar(select(func.count()).select_from(Message)) or 0
        median = session.scalar(
            select(Message.date).order_by(Message.date).offset(total // 2).limit(1)
        )
        days = max(1, (now - median).days)
        cutoff = now - timedelta(days=days)
        expiring = session.scalar(select(func.count()).where(Message.date < cutoff)) or 0
        senders = session.execute(
            select(Message.from_address, func.count())
            .where(Message.date < cutoff)
            .group_by(Message.from_address)
            .order_by(func.count().desc())
        ).all()
        custodians: list[str] = []
        for address, _count in senders:
            custodians.append(address)
            held = held_count(session, cutoff, custodians)
            if held >= HOLD_SHARE * expiring:
                break
    return days, custodians, expiring, held


def held_count(session, cutoff: datetime, custodians: list[str]) -> int:
    """Expired messages that concern a custodian in any role."""
    return (
        session.scalar(
            select(func.count(func.distinct(MessageAddress.message_pk)))
            .join(Message, Message.id == MessageAddress.message_pk)
            .where(Message.date < cutoff, MessageAddress.address.in_(custodians))
        )
        or 0
    )


def set_rules(core: Core, days: int, custodians: list[str]) -> None:
    with core.sessions.begin() as session:
        add_policy(session, ACTOR, "half", f"{days}d")
        add_hold(session, ACTOR, "matter", "Benchmark matter", custodians=custodians)


def query_plans(core: Core, custodians: list[str]) -> dict[str, list[str]]:
    """SQLite's plans for the candidate and custodian queries of one batch."""
    plans: dict[str, list[str]] = {}
    with core.engine.connect() as connection:
        if connection.dialect.name != "sqlite":
            return plans
        statements = {
            "candidates": candidate_query(datetime.now(UTC), 10**9, None, 1000),
            "custodians": custodian_query(list(range(1, 1001)), frozenset(custodians)),
        }
        for name, statement in statements.items():
            compiled = statement.compile(
                dialect=connection.dialect, compile_kwargs={"literal_binds": True}
            )
            rows = connection.execute(text(f"EXPLAIN QUERY PLAN {compiled}")).all()
            plans[name] = [str(row[-1]) for row in rows]
    return plans


def timed_sweep(core: Core, batch_size: int, budget: float | None) -> tuple[int, float]:
    """Deleted messages and seconds of one sweep (stopped after `budget` seconds)."""
    backend = core.search_backend()
    stop = threading.Event()
    timer = threading.Timer(budget, stop.set) if budget else None
    try:
        began = time.perf_counter()
        if timer is not None:
            timer.start()
        report = Sweeper(core.sessions, core.store, backend, ACTOR, batch_size).run(stop=stop)
        return report.deleted, time.perf_counter() - began
    finally:
        if timer is not None:
            timer.cancel()
        backend.close()


def drain_index(core: Core) -> tuple[int, float]:
    """Run the indexer until its queue is empty: the deletions leave search."""
    backend = core.search_backend()
    began = time.perf_counter()
    done = 0
    try:
        while finished := Indexer(core.sessions, backend, core.store).run_once():
            done += finished
    finally:
        backend.close()
    return done, time.perf_counter() - began


def check(core: Core, days: int, custodians: list[str], held: int) -> dict[str, object]:
    """What is left: the held messages all there, no other expired one, blobs intact."""
    cutoff = datetime.now(UTC) - timedelta(days=days)
    with core.sessions() as session:
        left = session.scalar(select(func.count()).where(Message.date < cutoff)) or 0
        still_held = held_count(session, cutoff, custodians)
        sample = session.scalars(select(Message.sha256).limit(2_000)).all()
    for sha256 in sample:
        core.store.verify(sha256)
    return {"expired_left": left, "held_left": still_held, "held_expected": held}


def build_archive(folder: Path) -> Path:
    """Run the search benchmark with --keep into `folder` (about 10 minutes)."""
    print(f"building the bench archive in {folder} with search.py --keep (about 10 minutes)")
    subprocess.run(
        [sys.executable, str(Path(__file__).with_name("search.py")), "--keep", str(folder)],
        check=True,
    )
    return folder / "data"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.partition("\n")[0])
    parser.add_argument("--data-dir", type=Path, default=None, help="archive to copy")
    parser.add_argument(
        "--baseline-seconds", type=float, default=20.0, help="time given to the baseline"
    )
    options = parser.parse_args(argv)
    scratch = Path(tempfile.mkdtemp(prefix="arsip-bench-retention-"))
    try:
        source = options.data_dir or build_archive(scratch / "archive")
        print("copying the archive twice ...", flush=True)
        core = copy_archive(source, scratch / "sweep")
        baseline = copy_archive(source, scratch / "baseline")
        days, custodians, expiring, held = plan(core)
        for target in (core, baseline):
            set_rules(target, days, custodians)
        with core.sessions() as session:
            total = session.scalar(select(func.count()).select_from(Message)) or 0

        deleted, seconds = timed_sweep(core, 1_000, None)
        removed, index_seconds = drain_index(core)
        base_deleted, base_seconds = timed_sweep(baseline, 1, options.baseline_seconds)
        outcome = check(core, days, custodians, held)
        rate = deleted / seconds if seconds else 0.0
        base_rate = base_deleted / base_seconds if base_seconds else 0.0

        print(f"archive: {total} messages; policy keeps {days} days: {expiring} expire")
        print(f"hold over {len(custodians)} custodians covers {held} of them")
        print(f"{'sweep':<34} {'deleted':>8} {'seconds':>8} {'msgs/s':>8}")
        print(f"{'batches of 1,000 (Arsip)':<34} {deleted:>8} {seconds:>8.1f} {rate:>8.0f}")
        print(
            f"{'one per transaction (baseline)':<34} {base_deleted:>8} "
            f"{base_seconds:>8.1f} {base_rate:>8.0f}"
        )
        print(
            f"ratio {rate / base_rate:.1f}x; target >= {TARGET:.0f} msgs/s: "
            f"{'ok' if rate >= TARGET else 'MISSED'}"
        )
        print(f"indexer removed {removed} search entries in {index_seconds:.1f} s")
        print(f"left: {outcome}")
        plans = query_plans(core, custodians)
        for name, lines in plans.items():
            print(f"plan of the {name} query: {' | '.join(lines)}")
        print(
            json.dumps(
                {
                    "bench": "retention",
                    "messages": total,
                    "expiring": expiring,
                    "held": held,
                    "deleted": deleted,
                    "seconds": round(seconds, 2),
                    "deleted_per_s": round(rate),
                    "baseline_deleted_per_s": round(base_rate),
                    "index_removals": removed,
                    "index_seconds": round(index_seconds, 2),
                    "check": outcome,
                    "plans": plans,
                    "target_met": rate >= TARGET,
                }
            )
        )
        ok = outcome["expired_left"] == outcome["held_left"] == held
        return 0 if ok else 1
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
