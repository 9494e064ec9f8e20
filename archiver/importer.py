"""`arsip import`: bring old mail into the archive, idempotently, with a progress bar.

Import goes straight to the archive (not through SMTP): the files are already durable,
so there is nothing to spool. Batches share one transaction and one round of blob
fsyncs. Importing the same files twice adds nothing, because archiving deduplicates.
Bypassing the spool also bypasses its ledger rows, so each new message's hash is recorded
in the intake ledger here, in the same transaction (duplicates are already accounted for).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from tqdm import tqdm

from archiver import ledger
from archiver.archive import ArchiveResult, RawMessage
from archiver.core import Core
from archiver.mailfiles import FoundMessage, iter_path, total_size
from archiver.retention.clock import IMPORTED

BATCH_SIZE = 200
_LIST_ID = re.compile(r"[a-z0-9](?:[a-z0-9._+-]{0,251}[a-z0-9])?")  # a dot-atom, as List-Id has


@dataclass
class ImportReport:
    """What an import did."""

    read: int = 0
    added: int = 0
    duplicates: int = 0


def list_id_of(text: str) -> str | None:
    """The list id an operator names (`dev.lists.example.com`, with or without angle
    brackets), as archived messages hold it; None when it is not one."""
    wanted = text.strip().removeprefix("<").removesuffix(">").lower()
    return wanted if _LIST_ID.fullmatch(wanted) else None


def import_paths(
    core: Core, paths: Iterable[Path], progress: bool = True, list_id: str | None = None
) -> ImportReport:
    """Archive every message under `paths`, filed into `list_id`'s archive if given;
    returns counts of read, new and duplicate."""
    paths = list(paths)
    report = ImportReport()
    total = sum(total_size(path) for path in paths)
    with tqdm(
        total=total,
        unit="B",
        unit_scale=True,
        disable=not progress,
        desc="import",
        dynamic_ncols=True,
    ) as bar:
        for batch in _batches(message for path in paths for message in iter_path(path)):
            results = _archive(core, batch, list_id)
            report.read += len(batch)
            report.added += sum(result.created for result in results)
            report.duplicates += sum(not result.created for result in results)
            bar.update(sum(found.consumed for found in batch))
            bar.set_postfix(messages=report.read, new=report.added, refresh=False)
    return report


def _archive(core: Core, batch: list[FoundMessage], list_id: str | None) -> list[ArchiveResult]:
    now = datetime.now(UTC)
    items = [
        RawMessage(
            data=found.data,
            envelope_from="",
            envelope_to=[],
            received_at=now,
            source=IMPORTED,
            queue_id="",
            list_id=list_id,
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
