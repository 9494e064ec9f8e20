"""Rate limits kept in the database, so every process serving the web UI shares them.

The web UI runs in several processes (and under gunicorn in several workers, perhaps on
several hosts); a limit counted in one process's memory would let a client try once per
process. Counting in the database costs one small write per counted attempt, and only
attempts that need limiting are counted: failed logins, mailed links.
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session, sessionmaker

from archiver.models import ThrottleEvent, utcnow


class Throttle:
    """At most `limit` counted events per key within a sliding `window`, per `scope`."""

    def __init__(
        self, sessions: sessionmaker[Session], scope: str, limit: int, window: timedelta
    ) -> None:
        self.sessions = sessions
        self.scope = scope
        self.limit = limit
        self.window = window

    def blocked(self, key: str) -> bool:
        """Whether `key` has used up its events within the window."""
        with self.sessions() as session:
            return _count(session, self.scope, key, self.window) >= self.limit

    def hit(self, key: str) -> None:
        """Count one event for `key` (and forget this scope's events that are past)."""
        with self.sessions.begin() as session:
            _record(session, self.scope, key, self.window)

    def allow(self, key: str) -> bool:
        """Count one event for `key` if the window has room for it; else False."""
        with self.sessions.begin() as session:
            return allow_in(session, self.scope, key, self.limit, self.window)


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
            .where(ThrottleEvent.scope == scope, ThrottleEvent.key == key, ThrottleEvent.at > since)
        )
        or 0
    )


def _record(session: Session, scope: str, key: str, window: timedelta) -> None:
    now = utcnow()
    session.execute(
        delete(ThrottleEvent).where(ThrottleEvent.scope == scope, ThrottleEvent.at <= now - window)
    )
    session.add(ThrottleEvent(scope=scope, key=key[:320], at=now))
