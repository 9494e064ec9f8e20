"""`Core`: the archiver's parts wired to one database and one data directory.

Everything that reads or writes the archive (the service's processes, the CLI, the web
app, the list engine) works through a `Core`. It lives apart from the process supervisor
(`archiver.service`) so that a short command (`arsip search`, `arsip show`) builds only
what it uses: the parts that take mail in (spool, archive, recipient policy, content
checks) and the search backends are imported and built on first use, not at start-up.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from types import ModuleType
from typing import TYPE_CHECKING

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from archiver.config import Settings
from archiver.db import make_engine, session_factory
from archiver.store import DirectoryBlobStore

if TYPE_CHECKING:
    from archiver.archive import Archive
    from archiver.contentcheck.checker import ContentChecker
    from archiver.extensions import Extension
    from archiver.routing import RecipientPolicy
    from archiver.search.backend import SearchBackend
    from archiver.spool import Spool
    from archiver.worker import SpoolWorker

SEARCH_MODULES = {
    "whoosh": "archiver.search.whoosh_index",
    "postgres": "archiver.search.postgres_index",
}


@dataclass
class Core:
    """The archiver's parts, wired to one database and one data directory."""

    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    store: DirectoryBlobStore
    extensions: list[Extension] = field(default_factory=list)

    @cached_property
    def spool(self) -> Spool:
        """The durable queue between intake and the workers."""
        from archiver.spool import Spool

        return Spool(self.engine)

    @cached_property
    def archive(self) -> Archive:
        """Parsing, deduplication and threading of spooled mail."""
        from archiver.archive import Archive

        return Archive(self.store)

    @cached_property
    def policy(self) -> RecipientPolicy:
        """Which recipients the intake accepts, and who handles their mail."""
        from archiver.routing import RecipientPolicy

        return RecipientPolicy(self.settings)

    @cached_property
    def checker(self) -> ContentChecker | None:
        """spamd/clamd, when configured."""
        settings = self.settings
        if settings.spamd is None and settings.clamd is None:
            return None
        from archiver.contentcheck.checker import ContentChecker

        return ContentChecker(settings.spamd, settings.clamd, timeout=settings.check_timeout)

    def worker(self) -> SpoolWorker:
        """A spool worker over these parts."""
        from archiver.worker import SpoolWorker

        return SpoolWorker(self.sessions, self.archive, self.policy, self.extensions, self.checker)

    def extend(self, factories: Sequence[ExtensionFactory]) -> None:
        """Build and plug in extensions: they own addresses at RCPT and get their mail."""
        for factory in factories:
            extension = factory(self)
            self.policy.register(extension)
            self.extensions.append(extension)

    @cached_property
    def replica_engine(self) -> Engine | None:
        """The streaming replica searches read from (`ARSIP_DATABASE_REPLICA_URL`), if any.
        Made on first use: connecting waits until a search needs it."""
        url = self.settings.database_replica_url
        if not url:
            return None
        # A replica that is down must not hold a search up for long: the primary answers.
        return make_engine(
            url, self.settings.database_connections, connect_args={"connect_timeout": 3}
        )

    def search_backend(self, repair: bool = False) -> SearchBackend:
        """The configured search index (whoosh: only one process may write it at a time).
        With `repair`, a whoosh index too damaged to open is replaced by an empty one (for
        `arsip reindex`, which fills it from the archive)."""
        module = self.search_module()
        if self.settings.search_backend == "postgres":
            backend: SearchBackend = module.PostgresBackend(self.engine, self.replica_engine)
        else:
            backend = module.WhooshBackend(self.settings.index_dir, repair=repair)
        return backend

    def search_module(self) -> ModuleType:
        """The configured search backend's module. Only that one is imported, so a
        PostgreSQL deployment never loads whoosh and numpy."""
        return importlib.import_module(SEARCH_MODULES[self.settings.search_backend])


def build_core(settings: Settings) -> Core:
    """Create the data directory and the parts; does not touch the schema."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine = make_engine(settings.database_url, settings.database_connections)
    return Core(
        settings=settings,
        engine=engine,
        sessions=session_factory(engine, settings.default_language),
        store=DirectoryBlobStore(settings.blob_dir, key=settings.blob_key()),
    )


# What a plug-in hands the service for each of its extensions: a module-level callable
# (the worker is a spawned process) that builds the extension over a process's `Core`.
ExtensionFactory = Callable[[Core], "Extension"]
