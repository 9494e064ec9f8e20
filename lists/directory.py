"""Which lists exist, as the intake asks at every RCPT: a snapshot refreshed every few
seconds, so a list created with `arsip lists create` (another process) is reachable at
once and RCPT never waits on the database."""

from __future__ import annotations

import threading
import time

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from lists.addresses import ListAddress, parse_list_address
from lists.models import MailingList

REFRESH_SECONDS = 2.0


class ListDirectory:
    """The (name, domain) of every list, and the domains that have lists."""

    def __init__(self, sessions: sessionmaker[Session], refresh: float = REFRESH_SECONDS) -> None:
        self.sessions = sessions
        self.refresh = refresh
        self._lock = threading.Lock()
        self._lists: frozenset[tuple[str, str]] = frozenset()
        self._domains: frozenset[str] = frozenset()
        self._loaded_at = float("-inf")

    def parse(self, address: str) -> ListAddress | None:
        """What `address` is among the lists' addresses (None: not one of them)."""
        lists = self._current()
        return parse_list_address(address, lambda name, domain: (name, domain) in lists)

    def has_domain(self, domain: str) -> bool:
        """Whether some list lives in `domain`."""
        self._current()
        return domain.lower() in self._domains

    def forget(self) -> None:
        """Read the lists again at the next question (after creating or deleting one)."""
        with self._lock:
            self._loaded_at = float("-inf")

    def _current(self) -> frozenset[tuple[str, str]]:
        with self._lock:
            if time.monotonic() - self._loaded_at >= self.refresh:
                with self.sessions() as session:
                    rows = session.execute(select(MailingList.name, MailingList.domain)).all()
                self._lists = frozenset((name, domain) for name, domain in rows)
                self._domains = frozenset(domain for _, domain in rows)
                self._loaded_at = time.monotonic()
            return self._lists
