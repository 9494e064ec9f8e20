"""Shared fixtures: real databases, a real `arsip serve` on free loopback ports.

Database tests run twice, on SQLite and on the PostgreSQL server that `make test` starts
(`tests/with-postgres.sh` exports ARSIP_TEST_POSTGRES_URL); each test gets a fresh
database of its own.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from argon2 import PasswordHasher
from sqlalchemy import create_engine
from sqlalchemy.engine import make_url

from archiver import accounts, migrate
from archiver.contentcheck.daemons import DaemonAddress
from archiver.core import Core, build_core
from tests.support import (
    ANN,
    BOB,
    LIST,
    OWNER,
    RunningService,
    SmarthostSink,
    postgres_database,
    service_env,
    settings_from,
    shared_service,
)

# Passwords made and checked in the test process cost argon2's least, as Django's own
# test settings advise: the suite hashes hundreds, at about 0.15 s of CPU each otherwise.
# A hash carries its parameters, so the services the tests start check these as they are
# (and raise them to the production cost at the first login, as they would an old hash).
accounts._hasher = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)


SHARED_SCOPES = ("module", "class", "package")


def _shares_a_fixture(item: pytest.Item) -> bool:
    """Whether `item` uses a fixture set up once for several tests (a module's service,
    browser or load run)."""
    info = getattr(item, "_fixtureinfo", None)
    if info is None:
        return False
    return any(defs and defs[-1].scope in SHARED_SCOPES for defs in info.name2fixturedefs.values())


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The tests of a module that share a module fixture form one `xdist_group`, so that
    `make test`'s `--dist loadgroup` runs them in one process, one after another, and the
    fixture is set up once; the module's other tests go wherever a process is free.

    Spread over the processes instead, each process would set the fixture up again, and
    again whenever another module's test came between two of them. (Before pytest-xdist
    reads the groups, hence tryfirst; tests/test_parallel_runs.py checks it does.)
    """
    for item in items:
        if _shares_a_fixture(item) and item.get_closest_marker("xdist_group") is None:
            item.add_marker(pytest.mark.xdist_group(item.module.__name__))


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite archive migrated to the head once per test process, copied for each test:
    a copy is a file copy, a migration a few hundred statements."""
    path = tmp_path_factory.mktemp("template") / "arsip.db"
    engine = create_engine(f"sqlite:///{path}")
    migrate.upgrade(engine)
    engine.dispose()
    return path


@pytest.fixture(scope="session")
def postgres_template() -> Iterator[str]:
    """The name of a PostgreSQL database migrated to the head once per test process; each
    test's database is made from it with CREATE DATABASE … TEMPLATE, in a fraction of the
    time a migration takes."""
    with postgres_database() as url:
        engine = create_engine(url)
        migrate.upgrade(engine)
        engine.dispose()  # PostgreSQL copies a template only while nobody is connected
        yield make_url(url).database


@pytest.fixture(params=["sqlite", "postgres"])
def empty_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database, on SQLite and on PostgreSQL, for tests of what migrations and
    first starts do."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'arsip.db'}"
    else:
        with postgres_database() as url:
            yield url


@contextmanager
def migrated_database(request: pytest.FixtureRequest, kind: str, folder: Path) -> Iterator[str]:
    """A database of `kind` ("sqlite" or "postgres") already at the head of the migrations,
    copied from this process's template (the SQLite file goes in `folder`)."""
    if kind == "sqlite":
        path = folder / "arsip.db"
        shutil.copyfile(request.getfixturevalue("sqlite_template"), path)
        yield f"sqlite:///{path}"
    else:
        with postgres_database(template=request.getfixturevalue("postgres_template")) as url:
            yield url


@pytest.fixture
def sqlite_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A SQLite database of the test's own, already at the head of the migrations."""
    with migrated_database(request, "sqlite", tmp_path) as url:
        yield url


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """Each database test runs on SQLite and on PostgreSQL, on a database of its own that
    is already at the head of the migrations."""
    with migrated_database(request, request.param, tmp_path) as url:
        yield url


@pytest.fixture
def core(tmp_path: Path, database_url: str) -> Iterator[Core]:
    """The archiver's parts on a migrated database, without any server."""
    built = build_core(settings_from(service_env(tmp_path / "var", database_url)))
    yield built
    built.engine.dispose()


@pytest.fixture
def make_service(tmp_path: Path) -> Iterator:
    """Factory for services on SQLite (or a given database); all are stopped at the end."""
    started: list[RunningService] = []

    def make(database_url: str | None = None, start: bool = True, **extra: str) -> RunningService:
        index = len(started)
        env = service_env(tmp_path / f"var{index}", database_url, **extra)
        service = RunningService(env, tmp_path / f"serve{index}.log")
        started.append(service)
        return service.start() if start else service

    yield make
    for service in started:
        service.close()


@pytest.fixture
def service(make_service, database_url: str) -> RunningService:
    """A running service on SQLite and, in a second run, PostgreSQL."""
    return make_service(database_url)


@pytest.fixture
def sink() -> Iterator[SmarthostSink]:
    """The smarthost: an aiosmtpd server on loopback that keeps what it is given."""
    with SmarthostSink() as running:
        yield running


@pytest.fixture
def lists_service(make_service, sink: SmarthostSink, database_url: str) -> RunningService:
    """A running service with the list dev@ (owner OWNER, members ANN and BOB), on SQLite
    and on PostgreSQL."""
    service = make_service(
        database_url, ARSIP_SMARTHOST=sink.address, ARSIP_BASE_URL="https://lists.test"
    )
    service.add_list(LIST, OWNER, (ANN, BOB))
    return service


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def shared_lists_service(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningService]:
    """One service with the list dev@ (owner OWNER, members ANN and BOB) for the tests of
    a module that only ask it things and change nothing, on SQLite and on PostgreSQL."""
    folder = tmp_path_factory.mktemp("lists")
    with (
        migrated_database(request, request.param, folder) as url,
        shared_service(folder, url) as service,
    ):
        service.add_list(LIST, OWNER, (ANN, BOB))
        yield service


@pytest.fixture(scope="module")
def browser():
    """Headless Chromium (Debian's), shared by the browser journeys of one test module.

    Not longer: Playwright's synchronous API keeps an event loop running in the main
    thread while it is open, and later tests call `asyncio.run` there.
    """
    from tests import browser as chromium

    if not chromium.available():
        pytest.skip("chromium is not installed (make test installs it)")
    with chromium.chromium() as running:
        yield running


@pytest.fixture
def loopback_browser(browser):
    """A fresh browser context that may only talk to loopback addresses."""
    from tests.browser import LoopbackOnly

    context = LoopbackOnly(browser)
    yield context
    context.close()


@pytest.fixture(scope="session")
def spamd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonAddress]:
    """A private spamd on loopback for the whole session (started on first use)."""
    from tests.daemons import running_spamd

    with running_spamd(tmp_path_factory.mktemp("spamd")) as address:
        yield address


@pytest.fixture(scope="session")
def clamd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonAddress]:
    """A private clamd on loopback that knows the EICAR test file, for the session."""
    from tests.daemons import running_clamd

    with running_clamd(tmp_path_factory.mktemp("clamd")) as address:
        yield address
