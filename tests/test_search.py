"""Searching the archive: the query language, the viewer filter, facets, snippets, reindex."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime

import pytest

from archiver.archive import RawMessage
from archiver.core import Core
from archiver.search import whoosh_matching
from archiver.search.backend import Sort
from archiver.search.indexer import Indexer
from archiver.search.query import QuerySyntaxError
from archiver.search.service import search
from archiver.search.viewer import Viewer
from archiver.search.whoosh_index import WhooshBackend
from tests.support import JOURNAL, RunningService, simple_message

ALICE = "alice@example.com"
BOB = "bob@example.com"
CAROL = "carol@example.org"


def message(
    mid: str,
    subject: str,
    body: str,
    sender: str = ALICE,
    to: str = BOB,
    date: str = "Mon, 02 Feb 2026 10:00:00 +0000",
    extra: str = "",
) -> bytes:
    return simple_message(
        mid, subject=subject, sender=sender, to=to, body=body + "\r\n", extra_headers=extra
    ).replace(b"Mon, 02 Feb 2026 10:00:00 +0000", date.encode())


ATTACHED = (
    b"From: Carol <carol@example.org>\r\nTo: dave@example.net\r\nSubject: Budget sheet\r\n"
    b"Date: Tue, 10 Mar 2026 09:00:00 +0000\r\nMessage-ID: <sheet@example.org>\r\n"
    b'MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="b"\r\n\r\n'
    b"--b\r\nContent-Type: text/plain\r\n\r\nThe budget is attached.\r\n"
    b'--b\r\nContent-Type: text/csv; name="budget-2026.csv"\r\n'
    b'Content-Disposition: attachment; filename="budget-2026.csv"\r\n\r\n'
    b"line,amount\r\nzeppelin,12\r\n--b--\r\n"
)

MESSAGES = [
    message(
        "q1@example.com",
        "Quarterly forecast",
        "The quarterly forecast looks good.",
        date="Thu, 15 Jan 2026 10:00:00 +0000",
    ),
    message(
        "q2@example.com",
        "Re: Quarterly forecast",
        "Forecasting is hard; see the numbers.",
        sender=BOB,
        to=ALICE,
        date="Fri, 16 Jan 2026 10:00:00 +0000",
        extra="In-Reply-To: <q1@example.com>\r\n",
    ),
    message(
        "lunch@example.com",
        "Lunch",
        "Shall we have lunch at the Café Müller?",
        sender=CAROL,
        to=BOB,
        date="Mon, 02 Feb 2026 12:00:00 +0000",
    ),
    message(
        "list@example.com",
        "[dev] Release plan",
        "The release forecast is for March.",
        sender=CAROL,
        to="dev@lists.example.com",
        date="Tue, 03 Feb 2026 08:00:00 +0000",
        extra="List-Id: Developers <dev.lists.example.com>\r\n",
    ),
    ATTACHED,
    message(
        "gap@example.net",
        "Field notes",
        "An ostrich here; " + "then nothing but filler words " * 80 + "an ostrich parade, "
        "and a walrus walrus walrus.",
        sender="dave@example.net",
        to="erin@example.net",
        date="Wed, 04 Feb 2026 08:00:00 +0000",
    ),
]


def sample_copies(messages: list[bytes], now: datetime) -> list[RawMessage]:
    """The samples as they reach the archive: imported, except the list post, which is the
    list engine's copy (only it files mail into a list; a List-Id header does not)."""
    return [
        RawMessage(data, "", [], now, "list", list_id="dev.lists.example.com")
        if b"List-Id:" in data
        else RawMessage(data, "", [], now, "import")
        for data in messages
    ]


@pytest.fixture
def indexed(core: Core):
    """The sample messages archived and indexed; yields (core, backend)."""
    now = datetime.now(UTC)
    with core.sessions.begin() as session:
        core.archive.archive_batch(
            session,
            [
                *sample_copies(MESSAGES, now),
                RawMessage(
                    MESSAGES[2], CAROL, ["secret-bcc@example.com"], now, "smtp", journal_source=True
                ),
            ],
        )
    backend = core.search_backend()
    Indexer(core.sessions, backend, core.store).run_once()
    yield core, backend
    backend.close()


def ids(core: Core, backend, text: str, viewer: Viewer | None = None, **options) -> list[str]:
    with core.sessions() as session:
        page = search(
            session, backend, text, viewer or Viewer.administrator(), store=core.store, **options
        )
    return sorted(found.message_id for found in page.results)


QUERIES = [
    ("forecast", ["list@example.com", "q1@example.com", "q2@example.com"]),
    ('"quarterly forecast"', ["q1@example.com", "q2@example.com"]),
    ("forecast -release", ["q1@example.com", "q2@example.com"]),
    ("lunch OR zeppelin", ["lunch@example.com", "sheet@example.org"]),
    ("cafe muller", ["lunch@example.com"]),
    ("from:alice@example.com", ["q1@example.com"]),
    ("from:example.org", ["list@example.com", "lunch@example.com", "sheet@example.org"]),
    ("from:carol", ["list@example.com", "lunch@example.com", "sheet@example.org"]),
    ("to:secret-bcc@example.com", ["lunch@example.com"]),
    ("subject:lunch", ["lunch@example.com"]),
    ("list:dev.lists.example.com", ["list@example.com"]),
    ("list:dev@lists.example.com", ["list@example.com"]),
    ("list:<dev.lists.example.com>", ["list@example.com"]),
    ("filename:budget", ["sheet@example.org"]),
    ("msgid:<q2@example.com>", ["q2@example.com"]),
    ("has:attachment", ["sheet@example.org"]),
    (
        "after:2026-02-01 before:2026-03-01",
        ["gap@example.net", "list@example.com", "lunch@example.com"],
    ),
    ("date:2026-01", ["q1@example.com", "q2@example.com"]),
    ("larger:100k", []),
    ("(forecast OR lunch) from:example.org", ["list@example.com", "lunch@example.com"]),
    # tests of single documents: alone, together, and applied to what words found
    ("-forecast", ["gap@example.net", "lunch@example.com", "sheet@example.org"]),
    ("zeppelin OR -forecast", ["gap@example.net", "lunch@example.com", "sheet@example.org"]),
    ("has:attachment after:2026-03-01", ["sheet@example.org"]),
    ("before:2026-02-01 -from:alice@example.com", ["q2@example.com"]),
    ('forecast -"quarterly forecast"', ["list@example.com"]),
    ('"quarterly forecast" before:2026-01-16', ["q1@example.com"]),
    # words hundreds of positions apart, and a word repeated in a phrase
    ('"ostrich parade"', ["gap@example.net"]),
    ('"parade ostrich"', []),
    ('"walrus walrus walrus"', ["gap@example.net"]),
    ('"walrus walrus walrus walrus"', []),
]


@pytest.mark.parametrize(("query", "expected"), QUERIES)
def test_query_language_finds_the_right_messages(indexed, query: str, expected: list[str]) -> None:
    core, backend = indexed
    assert ids(core, backend, query) == expected


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)  # whoosh's default
@pytest.mark.parametrize("dense", [True, False], ids=["masks", "bisection"])
def test_whoosh_answers_the_same_whichever_way_it_combines_matches(
    indexed, monkeypatch: pytest.MonkeyPatch, dense: bool
) -> None:
    """Sets of matches are looked up and merged through masks over the whole archive when
    they are a sizeable share of it, and by bisection and sorting when not; a small
    archive takes one way or the other everywhere, as a large one does query by query."""
    core, backend = indexed
    assert isinstance(backend, WhooshBackend)
    share = 0.0 if dense else 2.0
    monkeypatch.setattr(whoosh_matching, "DENSE_LOOKUP", share)
    monkeypatch.setattr(whoosh_matching, "DENSE_MERGE", share)
    for query, expected in QUERIES:
        assert ids(core, backend, query) == expected, query
    person = Viewer.person(ALICE, lists=("dev.lists.example.com",))
    assert ids(core, backend, "forecast", person) == [
        "list@example.com",
        "q1@example.com",
        "q2@example.com",
    ]


def test_a_user_sees_only_their_own_mail_even_in_totals_and_facets(indexed) -> None:
    core, backend = indexed
    alice = Viewer.person(ALICE)
    assert ids(core, backend, "forecast", alice) == ["q1@example.com", "q2@example.com"]
    with core.sessions() as session:
        page = search(session, backend, "", alice, store=core.store)
    assert page.total == 2
    assert sum(page.facets["year"].values()) == 2
    bcc = Viewer.person("secret-bcc@example.com")
    assert ids(core, backend, "", bcc) == ["lunch@example.com"]
    member = Viewer.person("nobody@example.com", lists=("dev.lists.example.com",))
    assert ids(core, backend, "", member) == ["list@example.com"]
    assert ids(core, backend, "", Viewer.person("stranger@example.com")) == []


def test_every_form_of_a_word_matches_and_the_exact_form_ranks_first(core: Core) -> None:
    now = datetime.now(UTC)
    forms = [
        message("runs@example.com", "Training", "She runs every morning before work."),
        message("running@example.com", "Training", "We are running the numbers today."),
        message("run@example.com", "Training", "A long run on Sunday was the plan."),
    ]
    with core.sessions.begin() as session:
        core.archive.archive_batch(session, [RawMessage(m, "", [], now, "import") for m in forms])
    backend = core.search_backend()
    try:
        Indexer(core.sessions, backend, core.store).run_once()
        for typed in ("running", "runs", "run"):
            with core.sessions() as session:
                page = search(session, backend, typed, Viewer.administrator(), store=core.store)
            assert page.total == 3, typed
            assert page.results[0].message_id == f"{typed}@example.com"
    finally:
        backend.close()


def test_an_open_index_sees_new_mail_and_removals(indexed) -> None:
    core, backend = indexed
    with core.sessions() as session:
        before = search(session, backend, "forecast", Viewer.administrator(), store=core.store)
        pk = next(found.id for found in before.results if found.message_id == "list@example.com")
    late = message("late@example.com", "Forecasts, again", "The forecasts are late.")
    with core.sessions.begin() as session:
        core.archive.archive_batch(session, [RawMessage(late, "", [], datetime.now(UTC), "import")])
    Indexer(core.sessions, backend, core.store).run_once()
    backend.delete([pk])
    with core.sessions() as session:
        after = search(session, backend, "forecast", Viewer.administrator(), store=core.store)
    assert sorted(found.message_id for found in after.results) == [
        "late@example.com",
        "q1@example.com",
        "q2@example.com",
    ]
    assert after.total == 3
    assert after.facets["list"] == {}


def test_results_carry_facets_snippets_and_sort_by_date(indexed) -> None:
    core, backend = indexed
    with core.sessions() as session:
        page = search(
            session, backend, "forecast", Viewer.administrator(), Sort.DATE, store=core.store
        )
    assert [found.message_id for found in page.results] == [
        "list@example.com",
        "q2@example.com",
        "q1@example.com",
    ]
    assert page.facets["sender_domain"] == {"example.com": 2, "example.org": 1}
    assert page.facets["list"] == {"dev.lists.example.com": 1}
    assert "<mark>Forecasting</mark>" in page.results[1].snippet


def test_a_malformed_query_says_where(indexed) -> None:
    core, backend = indexed
    with pytest.raises(QuerySyntaxError) as error:
        ids(core, backend, 'subject:"unclosed')
    assert error.value.position >= 0


@pytest.fixture
def idle(make_service, database_url: str) -> RunningService:
    """A configured service, not running: whoosh on SQLite, PostgreSQL search on PostgreSQL."""
    return make_service(database_url, start=False)


def test_cli_search_json_as_user_and_errors(idle: RunningService, tmp_path) -> None:
    source = tmp_path / "mail.mbox"
    from archiver.mailfiles import mbox_entry

    source.write_bytes(b"".join(mbox_entry(m, ALICE, datetime.now(UTC)) for m in MESSAGES))
    idle.run_cli("import", str(source), check=True)
    core = idle.core()
    Indexer(core.sessions, core.search_backend(), core.store).run_once()

    found = idle.run_cli("search", "--json", "--as", BOB, "forecast", process=True)
    assert found.returncode == 0, found.stderr
    page = json.loads(found.stdout)
    assert page["total"] == 2
    assert set(page["results"][0]) == {
        "id",
        "message_id",
        "subject",
        "from",
        "from_name",
        "date",
        "list",
        "snippet",
    }
    bad = idle.run_cli("search", "from:")
    assert bad.returncode == 2
    assert bad.stderr.startswith("arsip: bad query:") and len(bad.stderr.splitlines()) == 1

    before = idle.run_cli("search", "--json", "--limit", "50", "").stdout
    if idle.settings.search_backend == "whoosh":
        shutil.rmtree(idle.settings.index_dir)  # the index is lost
        (idle.settings.index_dir / "v0").mkdir(parents=True)  # and an old schema's is left
    else:
        idle.core().search_backend().clear()
    rebuilt = idle.run_cli("reindex")
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert f"indexed {len(MESSAGES)} messages" in rebuilt.stdout
    assert idle.run_cli("search", "--json", "--limit", "50", "").stdout == before
    assert not (idle.settings.index_dir / "v0").exists()


def test_mail_is_searchable_soon_after_250(make_service) -> None:
    service: RunningService = make_service()
    with service.smtp() as client:
        client.sendmail(
            ALICE, [JOURNAL], message("fresh@example.com", "Zebra", "A zebra crossing.")
        )
    assert service.wait_until_found("zebra")["total"] == 1


def test_an_index_of_an_earlier_format_is_rebuilt_when_the_service_starts(make_service) -> None:
    service: RunningService = make_service()
    with service.smtp() as client:
        client.sendmail(ALICE, [JOURNAL], message("old@example.com", "Okapi", "An okapi."))
    service.wait_until_found("okapi")
    service.stop()
    # An upgrade brings a new index format: the index on disk is an earlier version's.
    current = next(service.settings.index_dir.glob("v*"))
    current.rename(current.with_name("v1"))
    service.start()
    service.wait_until_found("okapi")
    assert not (service.settings.index_dir / "v1").exists()
    assert "rebuilding it from the archive" in service.log()
