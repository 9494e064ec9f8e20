"""Rate limits kept in the database, so every process serving the web UI shares them.

The web UI runs in several processes (and under gunicorn in several workers, perhaps on
several hosts); a limit counted in one process's memory would let a client try once per
process. Counting in the database costs one small write per counted attempt, and only
attempts that need limiting are counted: failed logins, mailed links.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session, sessionmaker

from archiver.models import ThrottleEvent, utcnow

# The key column's width: keys are cut to it when stored and when counted alike.
KEY_LENGTH = 320


class Throttle:
    """At most `limit` counted events per key within a sliding `window`, per `scope`."""

    def __init__(
        self, sessions: sessionmaker[Session], scope: str, limit: int, window: timedelta
    ) -> None:
        self.sessions = sessions
        self.scope = scope
        self.limit = limit
        self.window = window

    def allow(self, key: str) -> bool:
        """Count one event for `key` if the window has room for it; else False."""
        with self.sessions.begin() as session:
            return allow_in(session, self.scope, key, self.limit, self.window)


class Backoff:
    """Failures per key that slow the key down instead of stopping it.

    The first `free` failures within `window` cost nothing; after that the key must wait
    `first_delay` after its latest failure, twice as long after each further one, at most
    `max_delay`. Whoever fails often waits ever longer, and never for good: a wait
    computed from the key's own failures is one nobody else can make longer.
    """

    def __init__(
        self,
        sessions: sessionmaker[Session],
        scope: str,
        free: int,
        window: timedelta,
        first_delay: timedelta = timedelta(minutes=1),
        max_delay: timedelta = timedelta(hours=1),
    ) -> None:
        self.sessions = sessions
        self.scope = scope
        self.free = free
        self.window = window
        self.first_delay = first_delay
        self.max_delay = max_delay

    def wait(self, key: str, now: datetime | None = None) -> timedelta | None:
        """How long `key` must wait before its next attempt counts, or None to go ahead."""
        now = now or utcnow()
        with self.sessions() as session:
            count, latest = session.execute(
                select(func.count(), func.max(ThrottleEvent.at)).where(
                    ThrottleEvent.scope == self.scope,
                    ThrottleEvent.key == key[:KEY_LENGTH],
                    ThrottleEvent.at > now - self.window,
                )
            ).one()
        if count < self.free or latest is None:
            return None
        # The exponent is bounded so a long run of failures cannot overflow timedelta.
        delay = min(self.first_delay * 2 ** min(count - self.free, 32), self.max_delay)
        left = latest + delay - now
        return left if left > timedelta(0) else None

    def hit(self, key: str, now: datetime | None = None) -> None:
        """Count one failure for `key`."""
        with self.sessions.begin() as session:
            _record(session, self.scope, key, self.window, now)

    def forget(self, key: str) -> None:
        """Forget `key`'s failures (it has just proved itself)."""
        with self.sessions.begin() as session:
            session.execute(
                delete(ThrottleEvent).where(
                    ThrottleEvent.scope == self.scope, ThrottleEvent.key == key[:KEY_LENGTH]
                )
            )


def allow_in(session: Session, scope: str, key: str, limit: int, window: timedelta) -> bool:
    """`Throttle.allow` inside the caller's transaction: for work that already holds one,
    such as the spool worker answering mailed commands (a second transaction of its own
    would wait for the first on SQLite)."""
    if _count(session, scope, key, window) >= limit:
        return False
    _record(session, scope, key, window)
    return True


def _count(session: Session, scope: str, key: str, window: timedelta) -> int:
    since = utcnow() - window
    return (
        session.scalar(
            select(func.count())
            .select_from(ThrottleEvent)
            .where(
                ThrottleEvent.scope == scope,
                ThrottleEvent.key == key[:KEY_LENGTH],
                ThrottleEvent.at > since,
            )
        )
        or 0
    )


def _record(
    session: Session, scope: str, key: str, window: timedelta, now: datetime | None = None
) -> None:
    now = now or utcnow()
    session.execute(
        delete(ThrottleEvent).where(ThrottleEvent.scope == scope, ThrottleEvent.at <= now - window)
    )
    session.add(ThrottleEvent(scope=scope, key=key[:KEY_LENGTH], at=now))
