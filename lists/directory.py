"""Which lists exist, as the intake asks at every RCPT: a snapshot of the lists table,
read again every few seconds, and at once (at most a few times a second) when an address
in a list domain is not in it, so that a list created a moment ago with `arsip lists
create` (another process) never gets a permanent 550."""

from __future__ import annotations

import threading
import time

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from lists.addresses import ListAddress, parse_list_address
from lists.models import MailingList

REFRESH_SECONDS = 2.0
MISS_REFRESH_SECONDS = 0.25  # how stale a snapshot may be when it does not know an address


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
        found = self._parse(address, self._current(self.refresh))
        if found is None:
            found = self._parse(address, self._current(MISS_REFRESH_SECONDS))
        return found

    @staticmethod
    def _parse(address: str, lists: frozenset[tuple[str, str]]) -> ListAddress | None:
        return parse_list_address(address, lambda name, domain: (name, domain) in lists)

    def has_domain(self, domain: str) -> bool:
        """Whether some list lives in `domain`."""
        self._current(self.refresh)
        if domain.lower() not in self._domains:
            self._current(MISS_REFRESH_SECONDS)
        return domain.lower() in self._domains

    def forget(self) -> None:
        """Read the lists again at the next question (after creating or deleting one)."""
        with self._lock:
            self._loaded_at = float("-inf")

    def _current(self, max_age: float) -> frozenset[tuple[str, str]]:
        with self._lock:
            if time.monotonic() - self._loaded_at >= max_age:
                with self.sessions() as session:
                    rows = session.execute(select(MailingList.name, MailingList.domain)).all()
                self._lists = frozenset((name, domain) for name, domain in rows)
                self._domains = frozenset(domain for _, domain in rows)
                self._loaded_at = time.monotonic()
            return self._lists
