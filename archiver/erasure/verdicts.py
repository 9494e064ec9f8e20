"""Whether one message of a data subject may be erased now, and if not, why not.

The law that grants erasure also limits it (Art. 17(3)): mail a legal hold covers is kept
for the establishment, exercise or defence of legal claims (e), and mail a retention
policy must still keep is kept to comply with a legal obligation (b). Both are judged
by the rules the retention sweep applies (`archiver.retention.sweep.Rules`), never by a
second copy of them: a message the sweep would keep, an erasure keeps too. A message no
policy matches, or whose policies have all run out, may go at once.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Protocol

from archiver.retention.sweep import Rules


class Kind(StrEnum):
    """What an erasure does with a message."""

    ERASE = "erase"
    HELD = "held"  # a legal hold covers it: it stays while the hold lasts
    RETAINED = "retained"  # a retention policy keeps it for some time yet
    WAITING = "waiting"  # the indexer has yet to read it: no hold query can tell yet


@dataclass(frozen=True)
class Verdict:
    """One message's verdict: its Message-ID and `Date:`, and what keeps it, if anything."""

    pk: int
    sha256: str
    message_id: str
    date: datetime
    holds: tuple[str, ...] = ()
    cases: tuple[str | None, ...] = ()  # the case each hold was placed for, if any
    # The policies still keeping it, each with the end of its period, the latest first.
    retained: tuple[tuple[str, datetime], ...] = ()
    waiting: bool = False

    @property
    def kind(self) -> Kind:
        if self.waiting:
            return Kind.WAITING
        if self.holds:
            return Kind.HELD
        return Kind.RETAINED if self.retained else Kind.ERASE

    def reason(self) -> str:
        """Why it stays, in a few words (empty when it goes)."""
        if self.waiting:
            return "waits for the search index: retried at the next pass"
        reasons = [
            f"held by case {case} (hold {name})" if case else f"held by hold {name}"
            for name, case in zip(self.holds, self.cases, strict=True)
        ]
        reasons += [
            f"within retention policy {name} until {end:%Y-%m-%d}" for name, end in self.retained
        ]
        return "; ".join(reasons)

    def as_json(self) -> dict[str, object]:
        return {
            "message_id": self.message_id,
            "date": self.date.isoformat(),
            "verdict": str(self.kind),
            "holds": list(self.holds),
            "cases": sorted({case for case in self.cases if case}),
            "policies": [{"name": name, "until": end.isoformat()} for name, end in self.retained],
            "reason": self.reason(),
        }


def judge(
    rules: Rules,
    row: Row,
    addresses: frozenset[str],
    pending: bool,
    cases: Mapping[str, str],
) -> Verdict:
    """The verdict on one message (`row` as `purge.message_batches` reads it), given the
    custodians it concerns, whether it waits for the indexer, and the case each case hold
    was placed for (`cases.holds.hold_cases`)."""
    date = row.retention_date
    if pending and _by_query(rules):
        return Verdict(row.id, row.sha256, row.message_id, row.date, waiting=True)
    holds = tuple(rule.name for rule in rules.holds if rule.covers(row.id, date, addresses))
    retained = sorted(
        (
            (rule.name, rule.keep.end(date))
            for rule in rules.policies
            if rule.covers(row.id) and date >= rule.cutoff
        ),
        key=lambda item: (-item[1].timestamp(), item[0]),
    )
    named = tuple(cases.get(name) for name in holds)
    return Verdict(row.id, row.sha256, row.message_id, row.date, holds, named, tuple(retained))


def _by_query(rules: Rules) -> bool:
    """Whether any rule is a search query, which cannot judge what is not indexed yet."""
    return any(rule.matches is not None for rule in rules.holds) or any(
        rule.matches is not None for rule in rules.policies
    )


class Row(Protocol):
    """What `judge` reads of a message (a row of `purge.message_batches`)."""

    id: int
    sha256: str
    message_id: str
    date: datetime
    retention_date: datetime
