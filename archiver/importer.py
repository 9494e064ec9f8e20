"""`arsip import`: bring old mail into the archive, idempotently, with a progress bar.

Import goes straight to the archive (not through SMTP): the files are already durable,
so there is nothing to spool. Batches share one transaction and one round of blob
fsyncs. Importing the same files twice adds nothing, because archiving deduplicates.
Bypassing the spool also bypasses its ledger rows, so each new message's hash is recorded
in the intake ledger here, in the same transaction (duplicates are already accounted for).
"""

from __future__ import annotations

import hashlib
import logging
import re
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy.orm import Session
from tqdm import tqdm

from archiver import ledger
from archiver.archive import ArchiveResult, RawMessage
from archiver.core import Core
from archiver.locks import ServeLock
from archiver.mailfiles import FoundMessage, iter_path, looks_like_mail, total_size
from archiver.pst import extracted, is_pst, starts_as_pst
from archiver.retention.clock import IMPORTED
from archiver.search.indexer import queue_state

log = logging.getLogger(__name__)

BATCH_SIZE = 200
PACE_POLL = 1.0  # seconds between looks at the index queue while waiting
INDEXER_PROOF_SECONDS = 30.0  # a queue that does not shrink in this time has no indexer
INDEXER_STALL_SECONDS = 600.0  # ... or one that stopped (a merge takes minutes at most)
_LIST_ID = re.compile(r"[a-z0-9](?:[a-z0-9._+-]{0,251}[a-z0-9])?")  # a dot-atom, as List-Id has


@dataclass
class ImportReport:
    """What an import did."""

    read: int = 0
    added: int = 0
    duplicates: int = 0
    index_waits: int = 0  # times the import waited for the search index to catch up
    not_mail: list[str] = field(default_factory=list)  # files skipped: they hold no mail
    pst_skipped: int = 0  # items readpst did not write out: calendar, contacts, unreadable


def list_id_of(text: str) -> str | None:
    """The list id an operator names (`dev.lists.example.com`, with or without angle
    brackets), as archived messages hold it; None when it is not one."""
    wanted = text.strip().removeprefix("<").removesuffix(">").lower()
    return wanted if _LIST_ID.fullmatch(wanted) else None


def import_paths(
    core: Core,
    paths: Iterable[Path],
    progress: bool = True,
    list_id: str | None = None,
    index_ahead: int = 0,
    accept_unparseable: bool = False,
) -> ImportReport:
    """Archive every message under `paths`, filed into `list_id`'s archive if given;
    returns counts of read, new and duplicate. The import waits while more than
    `index_ahead` messages wait for the search index (0: never waits; see `IndexPace`).

    A file of its own that does not start as mail does (`looks_like_mail`: a JSON, HTML
    or binary file among the messages) is skipped and named in the report, unless
    `accept_unparseable`: then it is archived raw and flagged as the parser finds it
    (no Message-ID, no date, unparseable), as it was before. A PST or OST file is read
    through `readpst` (`archiver.pst`), each message with the folder it was in, whether
    it is named or found in a folder."""
    paths = list(paths)
    psts = {path for path in paths if is_pst(path)}  # and refuses a .pst that is none, first
    total = sum(total_size(path) for path in paths)
    with Importer(core, progress, total, "B", list_id, index_ahead, accept_unparseable) as run:
        for path in paths:
            inner: list[Path] = []  # the PST files in a folder, read once its mail is in
            if path not in psts:
                run.take(iter_path(path, set_aside=_kept_in(inner)))
            for pst in [path] if path in psts else inner:
                with extracted(pst, core.settings.data_dir, run.show) as contents:
                    run.take(contents.messages)
                    run.report.pst_skipped += contents.skipped
    return run.report


def _kept_in(psts: list[Path]) -> Callable[[Path], bool]:
    """A `set_aside` for `iter_path` that keeps a folder's PST files in `psts`."""

    def set_aside(file: Path) -> bool:
        if starts_as_pst(file):
            psts.append(file)
            return True
        return False

    return set_aside


class Importer:
    """One import run: batches of found messages archived with a progress bar, paced to
    the search index, counted in `report`.

    `total` is what the bar counts to, in `unit`s (bytes of files, or messages of a
    mailbox); each message adds its `consumed`. `after_batch`, given to `take`, runs in each
    batch's transaction once it is archived, so a resumable source can note how far it got
    in the same commit as the mail.
    """

    def __init__(
        self,
        core: Core,
        progress: bool,
        total: int | None,
        unit: str,
        list_id: str | None = None,
        index_ahead: int = 0,
        accept_unparseable: bool = False,
    ) -> None:
        self.core = core
        self.list_id = list_id
        self.accept_unparseable = accept_unparseable
        self.report = ImportReport()
        self.bar = tqdm(
            total=total,
            unit=unit,
            unit_scale=unit == "B",
            disable=not progress,
            desc="import",
            dynamic_ncols=True,
        )
        self.pace = IndexPace(core, index_ahead, self.bar.set_description_str)

    def __enter__(self) -> Importer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.report.index_waits = self.pace.waits
        self.bar.close()

    def show(self, text: str) -> None:
        """Say what the import is doing, on its progress line."""
        self.bar.set_description_str(text)

    def take(
        self,
        found: Iterable[FoundMessage],
        after_batch: Callable[[Session, list[FoundMessage]], None] | None = None,
    ) -> None:
        """Archive `found`, a batch at a time."""
        report, bar = self.report, self.bar

        def mail(found: FoundMessage) -> bool:
            if self.accept_unparseable or found.boxed or looks_like_mail(found.data):
                return True
            report.not_mail.append(found.origin)
            bar.update(found.consumed)
            return False

        for batch in _batches(message for message in found if mail(message)):
            results = _archive(self.core, batch, self.list_id, after_batch)
            report.read += len(batch)
            report.added += sum(result.created for result in results)
            report.duplicates += sum(not result.created for result in results)
            bar.update(sum(found.consumed for found in batch))
            bar.set_postfix(messages=report.read, new=report.added, refresh=False)
            self.pace.wait()


class IndexPace:
    """Keeps an import at most `ahead` messages ahead of the search index.

    An import archives several times faster than the index takes the mail in; left
    alone, a long one leaves a queue of tens of thousands of messages that cannot be
    found yet, and the import and the indexer fight for the same cores all along. So
    once the queue passes `ahead`, the import waits until the indexer has brought it down
    to half, as a writer in Lucene waits for its flushes. Nothing waits when no indexer
    takes the queue: on a SQLite archive no service has open, never; elsewhere, a queue
    that does not shrink within `INDEXER_PROOF_SECONDS` of the first wait, or stops
    shrinking for `INDEXER_STALL_SECONDS`, ends the pacing for the rest of the import.
    """

    def __init__(self, core: Core, ahead: int, show: Callable[[str], None]) -> None:
        self.core = core
        self.ahead = ahead if _may_have_indexer(core) else 0
        self.show = show
        self.indexer_seen = False
        self.waits = 0

    def wait(self) -> None:
        """Return at once, or once the index queue is down to half of `ahead`."""
        if self.ahead <= 0:
            return
        pending = self._pending()
        if pending <= self.ahead:
            return
        self.waits += 1
        patience = INDEXER_STALL_SECONDS if self.indexer_seen else INDEXER_PROOF_SECONDS
        lowest, since = pending, time.monotonic()
        while pending > self.ahead // 2:
            self.show(f"import (waiting for the search index: {pending:,} queued)")
            time.sleep(PACE_POLL)
            pending = self._pending()
            if pending < lowest:
                lowest, since, self.indexer_seen = pending, time.monotonic(), True
                patience = INDEXER_STALL_SECONDS
            elif time.monotonic() - since > patience:
                log.warning(
                    "the search index queue (%d messages) is not going down: no indexer"
                    " seems to run; importing on without waiting for it",
                    pending,
                )
                self.ahead = 0
                break
        self.show("import")

    def _pending(self) -> int:
        with self.core.sessions() as session:
            return queue_state(session)[0]


def _may_have_indexer(core: Core) -> bool:
    """False when surely no indexer runs: a SQLite archive no `arsip serve` has open.
    (PostgreSQL deployments may index on other machines; the queue itself tells.)"""
    database = core.engine.url.database
    if core.engine.dialect.name != "sqlite" or not database or database == ":memory:":
        return True
    return ServeLock(Path(database)).in_use()


def _archive(
    core: Core,
    batch: list[FoundMessage],
    list_id: str | None,
    after_batch: Callable[[Session, list[FoundMessage]], None] | None,
) -> list[ArchiveResult]:
    now = datetime.now(UTC)
    items = [
        RawMessage(
            data=found.data,
            envelope_from="",
            envelope_to=[],
            received_at=min(found.received or now, now),  # a server's clock may run ahead
            source=IMPORTED,
            queue_id="",
            list_id=list_id,
            folder=found.folder,
        )
        for found in batch
    ]
    with core.sessions.begin() as session:
        results = core.archive.archive_batch(session, items)
        ledger.record(
            session,
            [
                (now, hashlib.sha256(item.data).hexdigest())
                for item, result in zip(items, results, strict=True)
                if result.created
            ],
        )
        if after_batch is not None:
            after_batch(session, batch)
    return results


def _batches(messages: Iterator[FoundMessage]) -> Iterator[list[FoundMessage]]:
    batch: list[FoundMessage] = []
    for message in messages:
        batch.append(message)
        if len(batch) >= BATCH_SIZE:
            yield batch
            batch = []
    if batch:
        yield batch
