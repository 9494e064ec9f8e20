"""The content checks' verdicts on the archive side: found with `is:spam` and `has:virus`,
shown on the message page, in `arsip show` and the API, and counted by `arsip stats`."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from alembic import command
from flask import Flask
from flask.testing import FlaskClient

from archiver import migrate
from archiver.accounts import add_user, find_user, new_api_token
from archiver.archive import RawMessage
from archiver.contentcheck.daemons import DaemonAddress
from archiver.contentcheck.verdict import Verdict
from archiver.core import Core
from archiver.report import stats
from archiver.search.backend import SearchBackend, Sort
from archiver.search.indexer import Indexer
from archiver.search.query import (
    HasAttachment,
    HasVirus,
    IsSpam,
    Not,
    Or,
    QuerySyntaxError,
    parse_query,
)
from archiver.search.service import search
from archiver.search.viewer import Viewer
from tests import daemons
from tests.cli_runner import run_arsip_here
from tests.daemons import GTUBE
from tests.support import (
    JOURNAL,
    JOURNAL_DOMAIN,
    RunningService,
    free_ports,
    simple_message,
)
from tests.test_accounts import log_in
from web import create_app

PASSWORD = "correct horse battery staple"
NOW = datetime(2026, 2, 2, 12, 0, tzinfo=UTC)
BOB = "bob@example.com"
CAROL = "carol@example.com"

SPAM = Verdict(spam_score=1000.0, spam_threshold=5.0, spam_rules=("GTUBE", "MISSING_DATE"))
VIRUS = Verdict(spam_score=1.2, spam_threshold=5.0, virus="Eicar-Test-Signature")
HAM = Verdict(spam_score=0.4, spam_threshold=5.0)
UNCHECKED = Verdict(unchecked=("spamd", "clamd"))


def infected_message(message_id: str, to: str = BOB) -> bytes:
    return daemons.infected_message(message_id, to)


# Message-ID -> (message, verdict): bob got all but the note to carol, which was checked
# and found clean, and the old memo, archived before anyone checked anything.
ARCHIVED = {
    "spam@example.net": (
        simple_message("spam@example.net", "Cheap watches", "spammer@example.net", BOB),
        SPAM,
    ),
    "virus@example.net": (infected_message("virus@example.net"), VIRUS),
    "ham@example.com": (simple_message("ham@example.com", "Lunch", to=BOB), HAM),
    "carol@example.com": (simple_message("carol@example.com", "Salaries", to=CAROL), HAM),
    "unchecked@example.com": (
        simple_message("unchecked@example.com", "Minutes", to=BOB),
        UNCHECKED,
    ),
    "old@example.com": (simple_message("old@example.com", "Old memo", to=BOB), None),
}


@pytest.fixture
def archived(core: Core) -> Iterator[tuple[Core, SearchBackend]]:
    """The messages above archived with their verdicts and indexed; yields the backend."""
    with core.sessions.begin() as session:
        core.archive.archive_batch(
            session,
            [
                RawMessage(data, "", [], NOW, "smtp", verdict=verdict, journal_source=True)
                for data, verdict in ARCHIVED.values()
            ],
        )
        for email, role in [(BOB, "user"), (CAROL, "user"), ("audrey@example.com", "auditor")]:
            add_user(session, email, role, PASSWORD)
    backend = core.search_backend()
    Indexer(core.sessions, backend, core.store).run_once()
    yield core, backend
    backend.close()


def found(core: Core, backend: SearchBackend, text: str, viewer: Viewer | None = None) -> set[str]:
    with core.sessions() as session:
        page = search(
            session,
            backend,
            text,
            viewer or Viewer.administrator(),
            Sort.DATE,
            100,
            store=core.store,
        )
    return {result.message_id for result in page.results}


def browser(app: Flask, email: str) -> FlaskClient:
    client = app.test_client()
    assert log_in(client, email, PASSWORD).status_code == 302
    return client


def arsip(core: Core, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """Run `arsip` on the test's database, with extra settings in `env`."""
    settings = {
        "ARSIP_DATA_DIR": str(core.settings.data_dir),
        "ARSIP_DATABASE_URL": core.settings.database_url,
    }
    return run_arsip_here(args, {**settings, **env})


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("is:spam", IsSpam()),
        ("IS:Spam", IsSpam()),
        ('is:"spam"', IsSpam()),
        ("has:virus", HasVirus()),
        ("has:viruses", HasVirus()),
        ("-is:spam", Not(IsSpam())),
        ("NOT has:virus", Not(HasVirus())),
        ("is:spam OR has:virus", Or((IsSpam(), HasVirus()))),
        ("has:attachment", HasAttachment()),
    ],
)
def test_the_query_language_reads_the_verdict_operators(text: str, expected: object) -> None:
    assert parse_query(text) == expected


@pytest.mark.parametrize(
    ("text", "message", "position"),
    [
        (
            "is:unread",
            "'is:' only understands 'spam', 'duplicate-id' or 'postmaster', not 'unread'",
            3,
        ),
        ("lunch is:", "'is:' needs a value", 9),
        ("has:pdf", "'has:' only understands 'attachment' or 'virus', not 'pdf'", 4),
    ],
)
def test_an_unknown_verdict_operator_is_explained_where_it_stands(
    text: str, message: str, position: int
) -> None:
    with pytest.raises(QuerySyntaxError) as caught:
        parse_query(text)
    assert caught.value.message == message
    assert caught.value.position == position


def test_is_spam_and_has_virus_find_exactly_the_flagged_mail(archived) -> None:
    core, backend = archived
    assert found(core, backend, "is:spam") == {"spam@example.net"}
    assert found(core, backend, "has:virus") == {"virus@example.net"}
    assert found(core, backend, "is:spam OR has:virus") == {"spam@example.net", "virus@example.net"}
    assert found(core, backend, "has:virus has:attachment invoice") == {"virus@example.net"}
    assert found(core, backend, "is:spam has:virus") == set()


def test_minus_is_spam_keeps_everything_else_even_mail_never_checked(archived) -> None:
    core, backend = archived
    everything = set(ARCHIVED)
    assert found(core, backend, "-is:spam") == everything - {"spam@example.net"}
    assert found(core, backend, "-is:spam -has:virus") == everything - {
        "spam@example.net",
        "virus@example.net",
    }
    assert found(core, backend, "lunch -is:spam") == {"ham@example.com"}


def test_flagged_mail_is_found_only_by_those_who_may_see_it(archived) -> None:
    core, backend = archived
    bob = Viewer.person(BOB)
    carol = Viewer.person(CAROL)
    assert found(core, backend, "is:spam", bob) == {"spam@example.net"}
    assert found(core, backend, "is:spam OR has:virus", carol) == set()
    assert found(core, backend, "-is:spam", carol) == {"carol@example.com"}


def test_retention_and_holds_can_select_flagged_mail(archived) -> None:
    core, backend = archived
    with core.sessions() as session:
        wanted = search(
            session, backend, "is:spam OR has:virus", Viewer.administrator(), store=core.store
        )
    pks = backend.matching(parse_query("is:spam OR has:virus"))
    assert sorted(pks) == sorted(result.id for result in wanted.results)


def test_a_rebuilt_index_still_knows_the_verdicts(archived) -> None:
    core, backend = archived
    Indexer(core.sessions, backend, core.store).rebuild()
    assert found(core, backend, "is:spam") == {"spam@example.net"}
    assert found(core, backend, "has:virus") == {"virus@example.net"}


def test_postgres_search_keeps_the_verdicts_across_the_0010_migration(archived) -> None:
    core, backend = archived
    if core.engine.dialect.name != "postgresql":
        pytest.skip("the full text search table exists on PostgreSQL only")
    config = migrate.alembic_config(core.engine)
    with core.engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, "0009")  # as if indexed before the flags existed
    migrate.upgrade(core.engine)
    assert found(core, backend, "is:spam") == {"spam@example.net"}
    assert found(core, backend, "has:virus") == {"virus@example.net"}


def test_the_message_page_shows_what_the_checks_said(archived) -> None:
    core, _backend = archived
    client = browser(create_app(core), BOB)

    spam = client.get("/messages/spam@example.net").get_data(as_text=True)
    assert "Spam:" in spam and "scored it 1000.0" in spam and "spam from 5.0" in spam
    assert "GTUBE, MISSING_DATE" in spam

    virus = client.get("/messages/virus@example.net").get_data(as_text=True)
    assert "Virus found" in virus and "Eicar-Test-Signature" in virus
    assert "Not spam:" in virus

    ham = client.get("/messages/ham@example.com").get_data(as_text=True)
    assert "Not spam:" in ham and "scored it 0.4" in ham and "Virus" not in ham

    unchecked = client.get("/messages/unchecked@example.com").get_data(as_text=True)
    assert "SpamAssassin (spamd) could not answer" in unchecked
    assert "ClamAV (clamd) could not answer" in unchecked

    old = client.get("/messages/old@example.com").get_data(as_text=True)
    assert "Old memo" in old
    assert 'class="verdict' not in old and "Not spam" not in old


def test_the_api_and_arsip_show_include_the_verdict(archived) -> None:
    core, _backend = archived
    with core.sessions.begin() as session:
        user = find_user(session, BOB)
        assert user is not None
        headers = {"Authorization": f"Bearer {new_api_token(session, user)}"}
    client = create_app(core).test_client()

    virus = client.get("/api/v1/messages/virus@example.net", headers=headers).get_json()
    assert virus["content_check"]["virus"] == "Eicar-Test-Signature"
    assert virus["content_check"]["spam"] is False
    old = client.get("/api/v1/messages/old@example.com", headers=headers).get_json()
    assert old["content_check"] is None

    shown = arsip(core, "show", "--json", "spam@example.net")
    assert shown.returncode == 0, shown.stderr
    check = json.loads(shown.stdout)["content_check"]
    assert check["spam"] is True and check["spam_score"] == 1000.0
    assert check["spam_threshold"] == 5.0
    assert check["spam_rules"] == ["GTUBE", "MISSING_DATE"]
    assert check["virus"] is None and check["unchecked"] == []


def test_stats_count_the_verdicts_and_say_which_daemons_answer(archived) -> None:
    core, _backend = archived
    with core.sessions() as session:
        figures = stats(session)
    assert figures["messages"] == 6
    assert (figures["checked"], figures["spam"], figures["virus"], figures["unchecked"]) == (
        5,
        1,
        1,
        1,
    )

    unconfigured = json.loads(arsip(core, "stats", "--json").stdout)
    assert unconfigured["spamd_available"] is None and unconfigured["clamd_available"] is None
    assert unconfigured["spam"] == 1

    nobody = f"127.0.0.1:{free_ports(1)[0]}"  # nothing listens there
    gone = json.loads(arsip(core, "stats", "--json", ARSIP_SPAMD=nobody).stdout)
    assert gone["spamd_available"] is False and gone["clamd_available"] is None


def searched(service: RunningService, text: str) -> set[str]:
    """What `arsip search` finds, once the service's indexer has caught up."""
    service.wait_until_indexed()
    # "--": a query may start with "-", which click would take for an option
    result = service.run_cli("search", "--json", "--limit", "100", "--", text, check=True)
    return {hit["message_id"] for hit in json.loads(result.stdout)["results"]}


def test_journaled_spam_and_a_virus_are_archived_flagged_and_found(
    make_service, spamd: DaemonAddress, clamd: DaemonAddress
) -> None:
    service = make_service(ARSIP_SPAMD=str(spamd), ARSIP_CLAMD=str(clamd))
    gtube = simple_message(
        "gtube@example.net", "Cheap watches", "spammer@example.net", BOB, f"{GTUBE}\r\n"
    )
    with service.smtp() as client:
        client.sendmail("spammer@example.net", [JOURNAL], gtube)
        client.sendmail(
            "mallory@example.net",
            [f"bob@{JOURNAL_DOMAIN}"],
            infected_message("invoice@example.net"),
        )
        client.sendmail("alice@example.com", [JOURNAL], simple_message("clean@example.com"))
    assert service.wait_until_archived()["messages"] == 3  # nothing dropped

    assert searched(service, "is:spam") == {"gtube@example.net"}
    assert searched(service, "has:virus") == {"invoice@example.net"}
    assert searched(service, "-is:spam -has:virus") == {"clean@example.com"}

    shown = service.run_cli("show", "--json", "invoice@example.net", check=True)
    virus = json.loads(shown.stdout)["content_check"]["virus"]
    assert virus and "eicar" in virus.lower()

    core = service.core()
    with core.sessions.begin() as session:
        add_user(session, BOB, "user", PASSWORD)
    client = browser(create_app(core), BOB)
    spam_page = client.get("/messages/gtube@example.net").get_data(as_text=True)
    assert "Spam:" in spam_page and "GTUBE" in spam_page
    virus_page = client.get("/messages/invoice@example.net").get_data(as_text=True)
    assert "Virus found" in virus_page and virus in virus_page

    figures = json.loads(service.run_cli("stats", "--json", check=True).stdout)
    assert figures["messages"] == figures["checked"] == 3
    assert (figures["spam"], figures["virus"], figures["unchecked"]) == (1, 1, 0)
    assert figures["spamd_available"] is True and figures["clamd_available"] is True
