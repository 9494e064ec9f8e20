"""Mail the web UI sends on request, counted so nobody can use Arsip to flood a mailbox."""

from __future__ import annotations

import threading
import time
from collections import defaultdict, deque
from collections.abc import Hashable


class MailThrottle:
    """Mails per key (an account, an address, a client) within a sliding window, in memory.

    It only has to stop someone using Arsip to mail strangers in bulk; a restart forgetting
    the count allows a few more mails, nothing worse.
    """

    def __init__(self, limit: int, window: float = 60 * 60) -> None:
        self.limit = limit
        self.window = window
        self._sent: dict[Hashable, deque[float]] = defaultdict(deque)
        self._lock = threading.Lock()

    def allow(self, key: Hashable, now: float | None = None) -> bool:
        """Count one mail for `key` if the window has room for it; else False."""
        now = time.monotonic() if now is None else now
        with self._lock:
            sent = self._sent[key]
            while sent and sent[0] <= now - self.window:
                sent.popleft()
            if len(sent) >= self.limit:
                return False
            sent.append(now)
            return True
