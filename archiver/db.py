"""Database engine and sessions, tuned per backend.

SQLite runs in WAL mode with `synchronous=FULL`: the intake's spool commit is the point
at which Arsip promises not to lose a message, so it must survive power loss, not only a
process crash. PostgreSQL keeps its own durable defaults.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.orm import Session, sessionmaker

POOL_KEPT = 5


def make_engine(url: str, connections: int = 15, **kwargs: Any) -> Engine:
    """An engine for `url`; SQLite gets WAL, full sync, foreign keys and a busy timeout,
    PostgreSQL a pool of at most `connections`."""
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 30}, **kwargs)
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(url, pool_pre_ping=True, **_pool(connections), **kwargs)


def _pool(connections: int) -> dict[str, int]:
    """A pool that keeps up to 5 connections open and opens the rest of `connections`
    only under load: what `ARSIP_DATABASE_CONNECTIONS` means."""
    kept = min(POOL_KEPT, connections)
    return {"pool_size": kept, "max_overflow": connections - kept}


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def session_factory(engine: Engine, default_language: str = "en") -> sessionmaker[Session]:
    """Sessions that keep loaded objects usable after commit (values are plain data here).

    Each session's `info` carries `default_language` (`ARSIP_DEFAULT_LANGUAGE`): what the
    service writes in for whom nobody chose a language (a list's mail), found from any
    loaded row without passing the settings down every call.
    """
    return sessionmaker(engine, expire_on_commit=False, info={"default_language": default_language})


def is_postgres(engine: Engine) -> bool:
    """Whether row-claiming can use `FOR UPDATE SKIP LOCKED`."""
    return engine.dialect.name == "postgresql"


# PostgreSQL settings under which a committed spool batch may not survive a crash: the
# intake's 250 would then promise what the database does not keep.
UNSAFE_SETTINGS = {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"}


def durability_problems(engine: Engine) -> list[str]:
    """The PostgreSQL settings of `UNSAFE_SETTINGS` that this server has (none on SQLite,
    whose settings `make_engine` chooses)."""
    if not is_postgres(engine):
        return []
    with engine.connect() as connection:
        found = {name: connection.scalar(text(f"SHOW {name}")) for name in UNSAFE_SETTINGS}
    return [f"{name}={value}" for name, value in found.items() if value == UNSAFE_SETTINGS[name]]
