"""`arsip verify`: re-read every blob the database knows and report what is not intact."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy import func, select

from archiver.models import Blob
from archiver.service import Core
from archiver.store import BlobCorruptError, BlobMissingError


@dataclass
class VerifyReport:
    """Blobs checked, and the sha256s found missing or corrupt."""

    checked: int = 0
    missing: list[str] = field(default_factory=list)
    corrupt: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.missing and not self.corrupt


def count_blobs(core: Core) -> int:
    """How many blobs `verify_store` will read (for the progress bar)."""
    with core.sessions() as session:
        return session.scalar(select(func.count()).select_from(Blob)) or 0


def verify_store(core: Core, on_blob: Callable[[], None] | None = None) -> VerifyReport:
    """Decompress and hash every blob; a blob that fails either check is reported."""
    report = VerifyReport()
    with core.sessions() as session:
        for sha256 in session.scalars(select(Blob.sha256).order_by(Blob.sha256)).yield_per(1000):
            report.checked += 1
            try:
                core.store.verify(sha256)
            except BlobMissingError:
                report.missing.append(sha256)
            except BlobCorruptError:
                report.corrupt.append(sha256)
            if on_blob is not None:
                on_blob()
    return report
