"""What a page reaches the core through: one accessor per shared object of the app.

As flaskr's `get_db()`: `create_app` hands the core to `init_app`, which keeps it (and
the objects built once per app over it) in `app.extensions`; views ask `get_core()`,
`search_backend()`, `get_membership()` and `dmarc_lookup()` and never read
`app.extensions` themselves, so a test's app (built over its own core) is what every
blueprint of that app sees.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from flask import Flask, current_app

from lists.dmarc import DmarcLookup
from lists.membership import Membership

if TYPE_CHECKING:
    from archiver.core import Core
    from archiver.search.backend import SearchBackend

CORE_KEY = "arsip_core"
BACKEND_KEY = "arsip_search_backend"
DMARC_KEY = "arsip_dmarc"


class SharedBackend:
    """One search backend per app, opened on first use.

    Opening a whoosh index reads its term tables, far too slow to repeat per request; the
    backend refreshes its searcher as the indexer commits, and guards it with its own lock,
    so every request thread can share it.
    """

    def __init__(self, core: Core) -> None:
        self._core = core
        self._lock = threading.Lock()
        self._backend: SearchBackend | None = None

    def get(self) -> SearchBackend:
        """The backend, opened now if this is the first search since the app started."""
        with self._lock:
            if self._backend is None:
                self._backend = self._core.search_backend()
            return self._backend

    def close(self) -> None:
        """Release the index (for tests and shutdown; a later search opens it again)."""
        with self._lock:
            if self._backend is not None:
                self._backend.close()
                self._backend = None


def init_app(app: Flask, core: Core) -> None:
    """Make `core` the one every view of `app` reaches, with the app's shared backend."""
    app.extensions[CORE_KEY] = core
    app.extensions[BACKEND_KEY] = SharedBackend(core)


def get_core(app: Flask | None = None) -> Core:
    """The core (settings, database, store, archive) of `app`; by default of the app
    serving this request."""
    return (app or current_app).extensions[CORE_KEY]


def search_backend() -> SearchBackend:
    """The app's one search backend, shared by every page that searches (opening an
    index per request would reread its term tables every time)."""
    return current_app.extensions[BACKEND_KEY].get()


def dmarc_lookup() -> DmarcLookup:
    """The app's DMARC lookup, made on first use: one per app, because it caches each
    domain's policy between the moderators' approvals."""
    lookup = current_app.extensions.get(DMARC_KEY)
    if lookup is None:
        dns = get_core().settings.dns_server
        lookup = DmarcLookup([dns.host], dns.port) if dns else DmarcLookup()
        current_app.extensions[DMARC_KEY] = lookup
    return lookup


def get_membership() -> Membership:
    """The list engine's subscriptions and confirmations, with links to this site."""
    return Membership(get_core().settings.public_url)
