"""Production benchmark: how fast a case's mail becomes a production a review platform loads.

It archives `--messages` generated messages (one in five with a PDF attachment, a few
custodians) into a fresh SQLite archive in a temporary folder, then writes, in the same
run and on the same archive:

- the baseline: `arsip export`'s mbox of every message (`archiver.export.export_mbox`),
  the cheapest way the archive hands mail over;
- a production of every message (`archiver.production.run.produce`): natives, extracted
  text, attachments as documents, Concordance and CSV load files, and a manifest.

and prints messages per second for each, their ratio, the documents and bytes written.
Best of `--runs` for each (a production series numbers on, so every run is a new folder).

    .venv/bin/python tests/bench/production.py [--messages N] [--runs R]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from email.message import EmailMessage
from email.utils import format_datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from reading_mail import pdf  # noqa: E402
from sqlalchemy import select  # noqa: E402

from archiver import migrate  # noqa: E402
from archiver.archive import RawMessage  # noqa: E402
from archiver.config import load_settings  # noqa: E402
from archiver.core import Core, build_core  # noqa: E402
from archiver.export import export_mbox  # noqa: E402
from archiver.models import Message, utcnow  # noqa: E402
from archiver.production.plan import Collected  # noqa: E402
from archiver.production.run import Request, produce  # noqa: E402

CUSTODIANS = [f"custodian{n}@example.com" for n in range(5)]
BATCH = 500
WORDS = [
    "merger",
    "budget",
    "forecast",
    "contract",
    "review",
    "draft",
    "signed",
    "quarterly",
    "ledger",
    "audit",
]
PDF = pdf()


def message(n: int) -> bytes:
    """Message `n`: a few paragraphs from a custodian, every fifth with a PDF."""
    mail = EmailMessage()
    mail["From"] = CUSTODIANS[n % len(CUSTODIANS)]
    mail["To"] = f"partner{n % 37}@example.org"
    mail["Cc"] = CUSTODIANS[(n + 1) % len(CUSTODIANS)]
    mail["Subject"] = f"{WORDS[n % len(WORDS)]} note {n}"
    mail["Date"] = format_datetime(utcnow())
    mail["Message-ID"] = f"<bench-{n}@example.com>"
    body = " ".join(WORDS[(n + k) % len(WORDS)] for k in range(400))
    mail.set_content(f"Hello,\n\n{body}\n\nRegards\n")
    if n % 5 == 0:
        mail.add_attachment(
            PDF,
            maintype="application",
            subtype="pdf",
            filename=f"note-{n}.pdf",
        )
    return mail.as_bytes()


def build(folder: Path, count: int) -> Core:
    """A fresh archive in `folder` holding `count` messages."""
    core = build_core(load_settings(environ={"ARSIP_DATA_DIR": str(folder / "data")}))
    migrate.upgrade(core.engine)
    for start in range(0, count, BATCH):
        items = [
            RawMessage(message(n), "", [], utcnow(), "import")
            for n in range(start, min(count, start + BATCH))
        ]
        with core.sessions.begin() as session:
            core.archive.archive_batch(session, items)
        print(f"  archived {min(count, start + BATCH):,} of {count:,}", flush=True)
    return core


def folder_bytes(path: Path) -> int:
    return sum(item.stat().st_size for item in path.rglob("*") if item.is_file())


def best(runs: int, work: Callable[[int], None]) -> float:
    """The fastest of `runs` calls of `work(run)`, in seconds."""
    times = []
    for run in range(runs):
        started = time.perf_counter()
        work(run)
        times.append(time.perf_counter() - started)
    return min(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=5_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="arsip-production-bench-") as scratch:
        folder = Path(scratch)
        print(f"building an archive of {args.messages:,} messages", flush=True)
        core = build(folder, args.messages)
        with core.sessions() as session:
            pks = list(session.scalars(select(Message.id).order_by(Message.date, Message.id)))
        collected = [Collected(pk, (CUSTODIANS[i % len(CUSTODIANS)],)) for i, pk in enumerate(pks)]

        def mbox(run: int) -> None:
            export_mbox(core, folder / f"export-{run}.mbox")

        def production(run: int) -> None:
            produce(core, Request("case:bench", folder / f"production-{run}", "bench"), collected)

        print("baseline: mbox export", flush=True)
        baseline = best(args.runs, mbox)
        print("production", flush=True)
        produced = best(args.runs, production)
        written = folder / "production-0"
        documents = sum(1 for _ in (written / "NATIVES").iterdir())
        print()
        print(f"| what | seconds (best of {args.runs}) | messages/s | bytes written |")
        print("|---|---|---|---|")
        size = (folder / "export-0.mbox").stat().st_size
        print(
            f"| mbox export (baseline) | {baseline:.2f} | {len(pks) / baseline:,.0f} | {size:,} |"
        )
        print(
            f"| production ({documents:,} documents) | {produced:.2f} | "
            f"{len(pks) / produced:,.0f} | {folder_bytes(written):,} |"
        )
        print(f"\nproduction / mbox time: {produced / baseline:.2f}")
        core.engine.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main())
