"""The figures of the administrators' dashboard, in words and the reader's number format.

Each figure comes from an existing counter or an indexed query, so the page stays fast
on a big archive: the archive's size and backlogs from `archiver.report.stats` (the
figures `arsip stats` and /healthz give), intake from the ledger's time index, deliveries
from the outbox's (status, due time) index, the last retention sweep from its state row,
the next sweep from `ARSIP_RETENTION_SCHEDULE`, the trusted timestamps from their table
(indexed by status). Only the content-check daemons are asked now (a PING each, up to two
seconds when one is silent), as `arsip stats` does.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from flask_babel import format_number, format_timedelta, gettext, ngettext
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from archiver.ledger import LedgerEntry
from archiver.models import utcnow
from archiver.report import daemons, stats
from archiver.retention.models import SweepState
from archiver.timestamps.report import figures as timestamp_figures
from archiver.upkeep import sweep_trigger
from lists.models import OutboxRecipient
from web.i18n import format_moment, format_size

if TYPE_CHECKING:
    from archiver.core import Core

HOUR = timedelta(hours=1)
DAY = timedelta(days=1)
# A delivery is counted by when it was due and when it was done: the index finds the
# rows due in the window (and this much before it), the time it was done picks them.
DELIVERY_LAG = timedelta(hours=1)
SLOW_INDEX = timedelta(minutes=10)  # an index lag worth a warning


@dataclass(frozen=True)
class Figure:
    """One figure as the dashboard shows it: the value, what it is, and a line more."""

    value: str
    label: str
    note: str = ""
    tone: str = ""  # "", "warn" or "bad": how the figure is highlighted


def figures(core: Core, session: Session) -> list[Figure]:
    """The service's figures, in the order the dashboard shows them."""
    now = utcnow()
    counts = stats(session)
    return [
        *_archive(counts),
        *_intake(session, now),
        *_delivery(session, now),
        *_backlogs(counts),
        *_retention(core, session, now),
        _scheduler(counts["scheduler"]),
        *_content_checks(core, counts),
        _timestamps(core, session),
    ]


def _count(value: object) -> str:
    return format_number(value if isinstance(value, int) else 0)


def _archive(counts: dict[str, object]) -> list[Figure]:
    raw, stored = counts["blobs_bytes_raw"], counts["blobs_bytes_stored"]
    assert isinstance(raw, int) and isinstance(stored, int)
    percent = format_number(_saved(raw, stored))
    saved = gettext("%(percent)s%% saved by compression", percent=percent)
    return [
        Figure(_count(counts["messages"]), gettext("Messages archived")),
        Figure(
            format_size(stored),
            gettext("Storage used"),
            gettext("of %(size)s as received", size=format_size(raw)) + " · " + saved,
        ),
    ]


def _saved(raw: int, stored: int) -> int:
    return max(0, round(100 * (raw - stored) / raw)) if raw else 0


def _intake(session: Session, now: datetime) -> list[Figure]:
    def since(window: timedelta) -> int:
        return (
            session.scalar(
                select(func.count())
                .select_from(LedgerEntry)
                .where(LedgerEntry.received_at > now - window)
            )
            or 0
        )

    day = since(DAY)
    return [
        Figure(
            format_number(since(HOUR)),
            gettext("Messages taken in, last hour"),
            gettext("%(count)s in the last 24 hours", count=format_number(day)),
        )
    ]


def _delivery(session: Session, now: datetime) -> list[Figure]:
    def done(status: str, window: timedelta) -> int:
        return (
            session.scalar(
                select(func.count())
                .select_from(OutboxRecipient)
                .where(
                    OutboxRecipient.status == status,
                    OutboxRecipient.next_attempt_at > now - window - DELIVERY_LAG,
                    OutboxRecipient.done_at > now - window,
                )
            )
            or 0
        )

    queued = (
        session.scalar(
            select(func.count())
            .select_from(OutboxRecipient)
            .where(OutboxRecipient.status == "pending")
        )
        or 0
    )
    failed = done("failed", DAY)
    return [
        Figure(
            format_number(done("sent", HOUR)),
            gettext("Deliveries, last hour"),
            gettext("%(count)s in the last 24 hours", count=format_number(done("sent", DAY))),
        ),
        Figure(
            format_number(queued),
            gettext("Waiting to be delivered"),
            ngettext(
                "%(count)s delivery failed in the last 24 hours",
                "%(count)s deliveries failed in the last 24 hours",
                failed,
                count=format_number(failed),
            ),
            "warn" if failed else "",
        ),
    ]


def _backlogs(counts: dict[str, object]) -> list[Figure]:
    age = counts["index_oldest_age_s"]
    lag = timedelta(seconds=float(age)) if isinstance(age, (int, float)) else None
    return [
        Figure(_count(counts["spool_pending"]), gettext("Waiting to be archived")),
        Figure(_count(counts["index_pending"]), gettext("Waiting to be indexed")),
        Figure(
            format_timedelta(lag) if lag is not None else gettext("none"),
            gettext("Index lag"),
            gettext("how long the oldest unindexed message has waited"),
            "warn" if lag is not None and lag > SLOW_INDEX else "",
        ),
    ]


def _retention(core: Core, session: Session, now: datetime) -> list[Figure]:
    state = session.get(SweepState, 1)
    upcoming = sweep_trigger(core.settings.retention_schedule).get_next_fire_time(None, now)
    next_run = gettext(
        "next run %(moment)s UTC", moment=format_moment(upcoming) if upcoming else "—"
    )
    if state is None or state.last_finished_at is None:
        last, note = gettext("never"), next_run
    else:
        last = format_moment(state.last_finished_at)
        deleted = ngettext(
            "%(count)s message deleted",
            "%(count)s messages deleted",
            state.last_deleted,
            count=format_number(state.last_deleted),
        )
        note = f"{deleted} · {next_run}"
    if state is not None and state.paused:
        paused = gettext("Paused by %(who)s", who=state.paused_by or "?")
        return [Figure(last, gettext("Last retention sweep"), f"{paused} · {note}", "warn")]
    return [Figure(last, gettext("Last retention sweep"), note)]


def _scheduler(holder: object) -> Figure:
    label = gettext("Scheduled jobs")
    if holder is None:  # SQLite: the one `arsip serve` runs them
        return Figure(gettext("in this service"), label)
    if not holder:
        return Figure(gettext("not running"), label, gettext("no process holds the lock"), "bad")
    return Figure(gettext("running"), label, str(holder))


def _content_checks(core: Core, counts: dict[str, object]) -> list[Figure]:
    settings = core.settings
    configured = {"spamd": settings.spamd, "clamd": settings.clamd}
    label = gettext("Spam and virus checks")
    if not any(configured.values()):
        return [Figure(gettext("off"), label, gettext("no spamd or clamd configured"))]
    answers = daemons(core.checker)
    parts, tone = [], ""
    for name, address in configured.items():
        if address is None:
            continue
        if answers.get(f"{name}_available"):
            parts.append(gettext("%(daemon)s answers", daemon=name))
        else:
            parts.append(gettext("%(daemon)s does not answer", daemon=name))
            tone = "bad"
    checked = gettext(
        "%(checked)s checked, %(spam)s spam, %(virus)s with a virus, %(unchecked)s left unchecked",
        checked=_count(counts["checked"]),
        spam=_count(counts["spam"]),
        virus=_count(counts["virus"]),
        unchecked=_count(counts["unchecked"]),
    )
    return [Figure(", ".join(parts), label, checked, tone)]


def _timestamps(core: Core, session: Session) -> Figure:
    """Trusted timestamps: off, or the tokens stored, what waits and the TSA's failure."""
    label = gettext("Trusted timestamps")
    counts = timestamp_figures(core.settings, session)
    if counts["tsa"] is None:
        return Figure(gettext("off"), label, gettext("no Time-Stamp Authority configured"))
    stamped, waiting = counts["timestamps_stamped"], counts["timestamps_waiting"]
    value = ngettext("%(count)s token", "%(count)s tokens", stamped, count=format_number(stamped))
    note = ngettext(
        "%(count)s waits for %(tsa)s",
        "%(count)s wait for %(tsa)s",
        waiting,
        count=format_number(waiting),
        tsa=counts["tsa"],
    )
    if counts["timestamps_error"]:
        note += " · " + gettext("last error: %(error)s", error=counts["timestamps_error"])
    return Figure(value, label, note, "warn" if counts["timestamps_error"] else "")
