"""What a policy or a hold covers now, in messages, and which policies overrule which.

An auditor must be able to trust these numbers, so they are counted the way the sweep
decides, never by a second rule: the scope or query is evaluated by the search backend's
`matching` (the whole archive, no viewer's filter, as for deletion), and each message is
judged by the same `PolicyRule.covers` and `HoldRule.covers` the sweep calls, custodians and
dates included. Counts are exact, never the estimates a search page may show past ten
thousand matches: a hold said to protect "about 5,000" messages protects nothing a lawyer
can rely on. What the index has matched is checked against the messages still archived
(an index entry may outlive its message until the indexer removes it), by primary key, a
few thousand at a time.

Mail still waiting for the indexer cannot be matched by a query yet; it is counted apart
(`waiting_for_index`), as the sweep skips it until it is indexed.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from archiver.languages import CORE, Text
from archiver.models import IndexQueueEntry, Message, MessageAddress, utcnow
from archiver.retention.models import LegalHold
from archiver.retention.rules import policies
from archiver.retention.sweep import (
    HoldRule,
    custodian_addresses,
    hold_rule,
    policy_rule,
)
from archiver.search.backend import SearchBackend

# Messages looked up per statement: well inside SQLite's and PostgreSQL's parameter limits.
CHUNK = 5_000


@dataclass(frozen=True)
class Note:
    """One sentence for whoever saved a rule; a warning says it may not do what they meant."""

    text: Text
    warning: bool = False


def messages(count: int) -> str:
    """`1 message`, `2,345 messages`, for the command line."""
    return f"{count:,} message" + ("" if count == 1 else "s")


@dataclass(frozen=True)
class Overlap:
    """Another policy and how many messages it shares with the one being described."""

    policy: str
    keep: str
    messages: int


@dataclass(frozen=True)
class PolicyCoverage:
    """How many messages a policy's scope matches now, and which of them another policy
    keeps for longer (`kept_longer`: the longest retention wins, so this policy's period
    never decides for them) or this one keeps longer than a shorter policy would
    (`overrules`). `moot` counts this policy's messages that some longer policy keeps."""

    messages: int
    kept_longer: list[Overlap]
    overrules: list[Overlap]
    moot: int
    waiting_for_index: int

    def notes(self, scoped: bool) -> list[Note]:
        """What the command line and the web page say once the policy is saved; `scoped`
        is whether it has a scope (without one, an empty archive is no mistake)."""
        notes = [_covers(self.messages)]
        if scoped and not self.messages:
            notes.append(
                Note(
                    CORE.lazy_gettext(
                        "Its scope matches no message now: check it for a typo (a list is "
                        "list: with its address or List-Id). The policy is saved all the same."
                    ),
                    warning=True,
                )
            )
        for other in self.kept_longer:
            notes.append(
                Note(
                    CORE.lazy_ngettext(
                        "%(shared)s of its %(count)s message is kept longer by policy "
                        "%(policy)s (%(keep)s): the longest retention wins.",
                        "%(shared)s of its %(count)s messages are kept longer by policy "
                        "%(policy)s (%(keep)s): the longest retention wins.",
                        self.messages,
                        shared=other.messages,
                        policy=other.policy,
                        keep=other.keep,
                    ),
                    warning=True,
                )
            )
        if self.messages and self.moot == self.messages:
            notes.append(
                Note(
                    CORE.lazy_gettext(
                        "It decides nothing now: longer policies keep all its messages."
                    ),
                    warning=True,
                )
            )
        for other in self.overrules:
            notes.append(
                Note(
                    CORE.lazy_ngettext(
                        "It keeps %(count)s message of policy %(policy)s (%(keep)s) longer "
                        "than that policy would.",
                        "It keeps %(count)s messages of policy %(policy)s (%(keep)s) longer "
                        "than that policy would.",
                        other.messages,
                        policy=other.policy,
                        keep=other.keep,
                    )
                )
            )
        notes.extend(_waiting_note(self.waiting_for_index))
        return notes


@dataclass(frozen=True)
class HoldCoverage:
    """How many archived messages a hold protects now."""

    messages: int
    waiting_for_index: int

    def notes(self) -> list[Note]:
        """What the command line and the web page say once the hold is placed."""
        notes = [_covers(self.messages)]
        if not self.messages:
            notes.append(
                Note(
                    CORE.lazy_gettext(
                        "It covers no message now: check its query and custodians for a typo. "
                        "It is placed all the same, and covers matching mail that arrives later."
                    ),
                    warning=True,
                )
            )
        notes.extend(_waiting_note(self.waiting_for_index))
        return notes


def _covers(count: int) -> Note:
    return Note(
        CORE.lazy_ngettext(
            "It covers %(count)s message now.", "It covers %(count)s messages now.", count
        )
    )


def _waiting_note(count: int) -> list[Note]:
    if not count:
        return []
    waiting = CORE.lazy_ngettext(
        "%(count)s message waits for the indexer and is not counted yet.",
        "%(count)s messages wait for the indexer and are not counted yet.",
        count,
    )
    return [Note(waiting)]


def policy_coverage(
    session: Session, backend: SearchBackend, name: str, now: datetime | None = None
) -> PolicyCoverage:
    """What policy `name` covers now, and its overlaps with policies of other periods."""
    now = now or utcnow()
    rules = [policy_rule(policy, backend, now) for policy in policies(session)]
    this = next(rule for rule in rules if rule.name == name)
    mine = _live(session, this.matches)
    total = session.scalar(select(func.count()).select_from(Message)) or 0
    kept_longer: list[Overlap] = []
    overrules: list[Overlap] = []
    longer_sets: list[frozenset[int] | None] = []
    for rule in rules:
        if rule is this or rule.cutoff == this.cutoff:
            continue
        theirs = _live(session, rule.matches)
        shared = _shared(mine, theirs, total)
        if not shared:
            continue
        overlap = Overlap(rule.name, str(rule.keep), shared)
        if rule.cutoff < this.cutoff:  # an earlier cutoff: kept for longer
            kept_longer.append(overlap)
            longer_sets.append(theirs)
        else:
            overrules.append(overlap)
    return PolicyCoverage(
        messages=total if mine is None else len(mine),
        kept_longer=kept_longer,
        overrules=overrules,
        moot=_moot(mine, longer_sets, total),
        waiting_for_index=_waiting(session) if this.matches is not None else 0,
    )


def hold_coverage(session: Session, backend: SearchBackend, hold: LegalHold) -> HoldCoverage:
    """How many archived messages `hold` covers now (released holds cover none)."""
    if hold.released_at is not None:
        return HoldCoverage(0, 0)
    rule = hold_rule(hold, backend)
    return HoldCoverage(
        messages=_held(session, rule),
        waiting_for_index=_waiting(session) if rule.matches is not None else 0,
    )


def _held(session: Session, rule: HoldRule) -> int:
    """The messages `rule` covers, judged one by one as the sweep judges them."""
    if rule.matches is not None:
        candidates = sorted(rule.matches)
    else:  # a hold has a query or custodians: here, only custodians
        candidates = list(
            session.scalars(
                select(MessageAddress.message_pk)
                .where(MessageAddress.address.in_(sorted(rule.custodians)))
                .distinct()
            )
        )
    count = 0
    for chunk in _chunks(candidates):
        addresses = custodian_addresses(session, chunk, rule.custodians)
        for pk, date in session.execute(
            select(Message.id, Message.retention_date).where(Message.id.in_(chunk))
        ):
            count += rule.covers(pk, date, addresses.get(pk, frozenset()))
    return count


def _live(session: Session, matches: frozenset[int] | None) -> frozenset[int] | None:
    """The matched ids still archived; None (every message) stays None."""
    if matches is None:
        return None
    found: set[int] = set()
    for chunk in _chunks(sorted(matches)):
        found.update(session.scalars(select(Message.id).where(Message.id.in_(chunk))))
    return frozenset(found)


def _shared(mine: frozenset[int] | None, theirs: frozenset[int] | None, total: int) -> int:
    """How many messages two policies both match (None: every message, `total` of them)."""
    if mine is None:
        return total if theirs is None else len(theirs)
    return len(mine) if theirs is None else len(mine & theirs)


def _moot(mine: frozenset[int] | None, longer: list[frozenset[int] | None], total: int) -> int:
    """How many of this policy's messages at least one longer policy matches."""
    if not longer:
        return 0
    if any(theirs is None for theirs in longer):
        return total if mine is None else len(mine)
    union = frozenset().union(*(theirs for theirs in longer if theirs is not None))
    return len(union) if mine is None else len(mine & union)


def _waiting(session: Session) -> int:
    """Archived messages the indexer has yet to (re)write, which no query matches yet."""
    return (
        session.scalar(
            select(func.count(func.distinct(IndexQueueEntry.message_pk))).join(
                Message, Message.id == IndexQueueEntry.message_pk
            )
        )
        or 0
    )


def _chunks(ids: list[int]) -> Iterator[list[int]]:
    for start in range(0, len(ids), CHUNK):
        yield ids[start : start + CHUNK]
