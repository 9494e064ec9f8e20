"""`arsip verify`: check that the archive is intact and accounted for.

Three checks, each able to fail on its own: every blob the database knows still opens
(decrypts where sealed) and hashes to its name; every archived message's hash is in the
intake ledger; and the ledger's daily seals still recompute and chain. Finished days are
sealed first, so a new archive has a chain to check.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy import func, select

from archiver.core import Core
from archiver.ledger import (
    ChainReport,
    DaySeal,
    seal_finished_days,
    unrecorded_messages,
    verify_chain,
)
from archiver.models import Blob
from archiver.store import BlobCorruptError, BlobKeyError, BlobMissingError


@dataclass
class VerifyReport:
    """What the checks found: blobs missing, corrupt or locked (sealed under another key),
    messages the ledger does not account for, and the seal chain's findings."""

    checked: int = 0
    missing: list[str] = field(default_factory=list)
    corrupt: list[str] = field(default_factory=list)
    locked: list[str] = field(default_factory=list)
    messages: int = 0
    unrecorded: list[tuple[str, str]] = field(default_factory=list)  # (sha256, Message-ID)
    sealed_now: int = 0
    chain: ChainReport = field(default_factory=ChainReport)

    @property
    def ok(self) -> bool:
        return not (self.missing or self.corrupt or self.locked or self.unrecorded) and (
            self.chain.ok
        )

    def as_json(self) -> dict[str, object]:
        """The report as plain data, for `arsip verify --json`."""
        return {
            "ok": self.ok,
            "blobs": {
                "checked": self.checked,
                "missing": self.missing,
                "corrupt": self.corrupt,
                "locked": self.locked,
            },
            "messages": {
                "checked": self.messages,
                "unrecorded": [{"sha256": s, "message_id": m} for s, m in self.unrecorded],
            },
            "ledger": {
                "sealed_now": self.sealed_now,
                "seals": self.chain.seals,
                "entries": self.chain.entries,
                "unsealed": self.chain.unsealed,
                "head": self.chain.head,
                "problems": [{"day": i.day, "problem": i.text} for i in self.chain.problems],
                "warnings": [{"day": i.day, "warning": i.text} for i in self.chain.warnings],
            },
        }


def count_blobs(core: Core) -> int:
    """How many blobs `verify_store` will read (for the progress bar)."""
    with core.sessions() as session:
        return session.scalar(select(func.count()).select_from(Blob)) or 0


def count_seals(core: Core) -> int:
    """How many sealed days `verify_ledger` will recompute (for the progress bar)."""
    with core.sessions() as session:
        return session.scalar(select(func.count()).select_from(DaySeal)) or 0


def seal_days(core: Core) -> int:
    """Seal the finished days that have no seal yet; returns how many were sealed."""
    with core.sessions.begin() as session:
        return seal_finished_days(session)


def verify_store(
    core: Core, on_blob: Callable[[], None] | None = None, report: VerifyReport | None = None
) -> VerifyReport:
    """Open and hash every blob; a blob that fails either check is reported.

    A sealed blob in a store without any key raises `BlobKeyError` at once: every sealed
    blob would fail the same way, and the fix is a setting, not a repair.
    """
    report = report or VerifyReport()
    with core.sessions() as session:
        for sha256 in session.scalars(select(Blob.sha256).order_by(Blob.sha256)).yield_per(1000):
            report.checked += 1
            try:
                core.store.verify(sha256)
            except BlobMissingError:
                report.missing.append(sha256)
            except BlobCorruptError:
                report.corrupt.append(sha256)
            except BlobKeyError:
                if not core.store.encrypting:
                    raise
                report.locked.append(sha256)
            if on_blob is not None:
                on_blob()
    return report


def verify_ledger(
    core: Core, on_day: Callable[[], None] | None = None, report: VerifyReport | None = None
) -> VerifyReport:
    """Check that every message is in the ledger and that the seal chain holds."""
    report = report or VerifyReport()
    with core.sessions() as session:
        report.messages, report.unrecorded = unrecorded_messages(session)
        report.chain = verify_chain(session, on_day)
    return report
