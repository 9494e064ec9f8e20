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
            return self._count(session, key) >= self.limit

    def hit(self, key: str) -> None:
        """Count one event for `key` (and forget this scope's events that are past)."""
        with self.sessions.begin() as session:
            self._record(session, key)

    def allow(self, key: str) -> bool:
        """Count one event for `key` if the window has room for it; else False."""
        with self.sessions.begin() as session:
            if self._count(session, key) >= self.limit:
                return False
            self._record(session, key)
            return True

    def _count(self, session: Session, key: str) -> int:
        since = utcnow() - self.window
        return (
            session.scalar(
                select(func.count())
                .select_from(ThrottleEvent)
                .where(
                    ThrottleEvent.scope == self.scope,
                    ThrottleEvent.key == key,
                    ThrottleEvent.at > since,
                )
            )
            or 0
        )

    def _record(self, session: Session, key: str) -> None:
        now = utcnow()
        session.execute(
            delete(ThrottleEvent).where(
                ThrottleEvent.scope == self.scope, ThrottleEvent.at <= now - self.window
            )
        )
        session.add(ThrottleEvent(scope=self.scope, key=key[:320], at=now))
