"""`arsip verify --timestamps`: every stored token against the evidence it covers now.

Offline: nothing but the database and the CA bundle. For each token the line it covers is
written again from the seal or audit entry as it is now (`stamped_record`) and the token
must stamp exactly that line and be signed by a TSA whose certificate chains to the
bundle. A seal or audit entry changed after it was stamped, removed, or a token swapped
for another, fails, named by what it covers. Seals without a token yet are reported but
do not fail: the TSA may simply not have been reachable since.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from cryptography import x509
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from archiver.ledger import DaySeal
from archiver.timestamps.models import (
    AUDIT_HEAD,
    LEDGER_SEAL,
    STAMPED,
    WAITING,
    TimestampToken,
    current_record,
)
from archiver.timestamps.tsa import ImprintMismatch, TimestampError, check_token

CHANGED = {
    LEDGER_SEAL: "the seal changed after it was stamped",
    AUDIT_HEAD: "the audit log up to this entry changed after it was stamped",
}
GONE = {
    LEDGER_SEAL: "the seal it covers is gone",
    AUDIT_HEAD: "the audit entry it covers is gone",
}


@dataclass(frozen=True)
class TokenProblem:
    """A token that does not hold, and why."""

    name: str  # ledger-seal-2026-03-02, audit-head-42
    problem: str


@dataclass
class StampReport:
    """What checking the tokens found."""

    checked: int = 0
    problems: list[TokenProblem] = field(default_factory=list)
    unstamped: list[str] = field(default_factory=list)  # sealed days without a token
    waiting: int = 0  # rows waiting for the TSA (seals and audit heads)
    newest_head: int | None = None  # the newest audit entry a token vouches for

    @property
    def ok(self) -> bool:
        return not self.problems

    def as_json(self) -> dict[str, Any]:
        """The report as plain data, for `arsip verify --json`."""
        return {
            "ok": self.ok,
            "checked": self.checked,
            "problems": [{"token": p.name, "problem": p.problem} for p in self.problems],
            "unstamped_seals": self.unstamped,
            "waiting": self.waiting,
            "audit_head_stamped": self.newest_head,
        }


def check_tokens(
    session: Session,
    ca: Sequence[x509.Certificate],
    on_token: Callable[[], object] | None = None,
) -> StampReport:
    """Check every stored token against `ca` and the evidence it covers now."""
    report = StampReport()
    rows = session.scalars(
        select(TimestampToken).where(TimestampToken.status == STAMPED).order_by(TimestampToken.id)
    )
    for row in rows:
        report.checked += 1
        problem = _problem(session, row, ca)
        if problem is not None:
            report.problems.append(TokenProblem(row.name, problem))
        elif row.kind == AUDIT_HEAD:
            report.newest_head = max(report.newest_head or 0, int(row.key))
        if on_token is not None:
            on_token()
    stamped = select(TimestampToken.key).where(
        TimestampToken.kind == LEDGER_SEAL, TimestampToken.status == STAMPED
    )
    report.unstamped = list(
        session.scalars(
            select(DaySeal.day).where(DaySeal.day.not_in(stamped)).order_by(DaySeal.day)
        )
    )
    report.waiting = (
        session.scalar(select(func.count()).where(TimestampToken.status == WAITING)) or 0
    )
    return report


def count_tokens(session: Session) -> int:
    """How many tokens `check_tokens` will check (for the progress bar)."""
    return session.scalar(select(func.count()).where(TimestampToken.status == STAMPED)) or 0


def _problem(session: Session, row: TimestampToken, ca: Sequence[x509.Certificate]) -> str | None:
    data = current_record(session, row.kind, row.key)
    if data is None:
        return GONE.get(row.kind, "it covers nothing Arsip knows")
    if row.token is None:
        return "the token is missing"
    try:
        check_token(row.token, ca, data=data)
    except ImprintMismatch:
        return CHANGED[row.kind]
    except TimestampError as exc:
        return str(exc)
    return None
