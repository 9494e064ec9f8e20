"""The search page as people use it: what each kind of visitor finds, facets, pages, the
query language's mistakes, and downloading a search as mbox."""

from __future__ import annotations

import html
import mailbox
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

import web.search
from archiver.accounts import add_user
from archiver.core import Core
from archiver.models import Message
from archiver.search import postgres_index, whoosh_matching
from archiver.search.indexer import Indexer
from lists.models import MailingList
from tests.test_accounts import log_in
from tests.test_search import ALICE, BOB, MESSAGES, message, sample_copies
from tests.web_client import foreign_scripts
from web import create_app

PASSWORD = "correct horse battery staple"
WEEKLY = [
    message(
        f"weekly{n}@example.com",
        f"Weekly report {n}",
        f"Weekly numbers, week {n}.",
        date=f"Mon, {n + 1:02d} Jun 2026 10:00:00 +0000",
    )
    for n in range(25)
]


@pytest.fixture
def app(core: Core) -> Iterator[Flask]:
    """The web UI over the sample archive (indexed), with a public list and three accounts:
    an admin, alice (a user) and bob (a user)."""
    now = datetime.now(UTC)
    with core.sessions.begin() as session:
        core.archive.archive_batch(session, sample_copies(MESSAGES + WEEKLY, now))
        session.add(MailingList(name="dev", domain="lists.example.com", display_name="dev"))
        add_user(session, "admin@example.com", "admin", PASSWORD)
        add_user(session, ALICE, "user", PASSWORD)
        add_user(session, BOB, "user", PASSWORD)
    yield from indexed_app(core)


def indexed_app(core: Core) -> Iterator[Flask]:
    """The web UI over `core`'s archive, indexed first; its index is closed afterwards."""
    backend = core.search_backend()
    Indexer(core.sessions, backend, core.store).run_once()
    backend.close()
    app = create_app(core)
    yield app
    app.extensions[web.search.BACKEND_KEY].close()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


def as_user(client: FlaskClient, email: str) -> FlaskClient:
    assert log_in(client, email, PASSWORD).status_code == 302
    return client


def page(client: FlaskClient, url: str, status: int = 200) -> str:
    answer = client.get(url)
    assert answer.status_code == status, answer.get_data(as_text=True)
    return answer.get_data(as_text=True)


def total(text: str) -> int:
    found = re.search(r'<p class="count"><strong>([\d,]+) messages?</strong>', text)
    assert found, "the page shows no total"
    return int(found.group(1).replace(",", ""))


def links(text: str) -> list[str]:
    return [html.unescape(href) for href in re.findall(r'href="([^"]+)"', text)]


def message_links(text: str) -> set[str]:
    """The messages a page links to (without the way back to the results they carry)."""
    return {href.split("?")[0] for href in links(text) if href.startswith("/messages/")}


def test_an_empty_search_explains_the_query_language(client: FlaskClient) -> None:
    text = page(client, "/")
    for operator in ("from:", "to:", "cc:", "subject:", "list:", "filename:", "msgid:"):
        assert operator in text
    for operator in ("has:attachment", "before:", "after:", "date:", "larger:", "smaller:"):
        assert operator in text
    assert 'action="/"' in text and 'name="q"' in text
    assert foreign_scripts(text) == []  # the page's own keyboard shortcuts only


def test_an_admin_sees_highlighted_results_and_facets(client: FlaskClient) -> None:
    text = page(as_user(client, "admin@example.com"), "/?q=forecast")
    assert total(text) == 3
    assert "<mark>forecast</mark>" in text.lower()
    assert message_links(text) == {
        "/messages/q1@example.com",
        "/messages/q2@example.com",
        "/messages/list@example.com",
    }
    assert "15 Jan 2026 10:00" in text and "dev.lists.example.com" in text
    assert "/?q=forecast+list:dev.lists.example.com" in links(text)
    assert "/?q=forecast+from:example.org" in links(text)
    assert "/?q=forecast+date:2026" in links(text)
    assert "admin@example.com" in text and 'action="/logout"' in text


def test_clicking_a_facet_narrows_the_results(client: FlaskClient) -> None:
    text = page(as_user(client, "admin@example.com"), "/?q=forecast&sort=date")
    facet = next(href for href in links(text) if "list:dev" in href)
    assert "sort=date" in facet
    narrowed = page(client, facet)
    assert total(narrowed) == 1
    assert message_links(narrowed) == {"/messages/list@example.com"}


def test_a_user_sees_only_their_own_mail_in_results_totals_and_facets(
    client: FlaskClient,
) -> None:
    everything = "/?q=after:2026-01-01+before:2026-03-01"
    admin_text = page(as_user(client, "admin@example.com"), everything)
    assert total(admin_text) == 5
    assert "example.net" in admin_text

    client.post("/logout", data={"csrf_token": _token(admin_text)})
    alice_text = page(as_user(client, ALICE), everything)
    # Her two messages with bob, and the public list's post.
    assert total(alice_text) == 3
    assert message_links(alice_text) == {
        "/messages/q1@example.com",
        "/messages/q2@example.com",
        "/messages/list@example.com",
    }
    assert "example.net" not in alice_text  # dave's mail, not even as a facet
    assert total(page(client, "/?q=lunch")) == 0


def test_an_anonymous_visitor_sees_only_public_list_archives(client: FlaskClient) -> None:
    assert total(page(client, "/?q=ostrich")) == 0
    assert total(page(client, "/?q=lunch")) == 0
    text = page(client, "/?q=forecast")
    assert total(text) == 1
    assert message_links(text) == {"/messages/list@example.com"}
    assert "Export these results" not in text
    assert 'href="/login"' in text


def test_a_malformed_query_gets_a_hint_with_its_position(client: FlaskClient) -> None:
    text = page(client, "/?q=budget+(forecast", status=400)
    assert "&#39;(&#39; is never closed at position 8" in text
    assert 'class="query-error"' in text
    assert "Traceback" not in text
    assert "&#39;date:&#39; needs a value" in page(client, "/?q=date:", status=400)


def test_an_unknown_field_is_named_with_the_fields_there_are(client: FlaskClient) -> None:
    text = page(client, "/?q=forecast+sender:bob", status=400)
    assert "&#39;sender:&#39; is not a search field" in text
    assert "the fields are from:, to:, cc:, subject:" in text and "at position 10" in text
    # times and links are still words
    assert total(page(client, "/?q=forecast+10:30")) == 0
    assert total(page(client, "/?q=forecast+https://example.com/x")) == 0


def test_pages_keep_the_query_and_the_sort(client: FlaskClient) -> None:
    as_user(client, "admin@example.com")
    first = page(client, "/?q=weekly&sort=date")
    assert total(first) == 25
    assert len(message_links(first)) == 20
    # Newest first: week 24 is on the first page, week 0 is not.
    assert "/messages/weekly24@example.com" in message_links(first)
    following = next(href for href in links(first) if "page=2" in href)
    assert "q=weekly" in following and "sort=date" in following
    second = page(client, following)
    assert message_links(second) == {f"/messages/weekly{n}@example.com" for n in range(5)}
    back = re.search(r'href="([^"]+)" rel="prev"', second)
    assert back and html.unescape(back.group(1)) == "/?q=weekly&sort=date"
    assert not any("page=3" in href for href in links(second))


def test_an_export_holds_exactly_the_matches_the_user_may_see(
    core: Core, client: FlaskClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(web.search, "EXPORT_PAGE", 2)  # walk several result pages
    as_user(client, ALICE)
    results = page(client, "/?q=forecast+OR+lunch+OR+ostrich")
    export = next(href for href in links(results) if href.startswith("/export.mbox"))
    answer = client.get(export)
    assert answer.status_code == 200
    assert answer.headers["Content-Type"] == "application/mbox"
    assert answer.headers["Content-Disposition"] == 'attachment; filename="arsip-export.mbox"'

    path = tmp_path / "export.mbox"
    path.write_bytes(answer.get_data())
    box = mailbox.mbox(path)
    exported = {box[key]["Message-ID"].strip("<>"): box.get_bytes(key) for key in box.iterkeys()}
    assert set(exported) == {"q1@example.com", "q2@example.com", "list@example.com"}
    with core.sessions() as session:
        stored = dict(
            session.execute(
                select(Message.message_id, Message.sha256).where(
                    Message.message_id.in_(list(exported))
                )
            ).all()
        )
    for message_id, data in exported.items():
        assert data == core.store.get(stored[message_id])


def test_an_anonymous_export_asks_to_log_in(client: FlaskClient) -> None:
    answer = client.get("/export.mbox?q=forecast")
    assert answer.status_code == 302
    assert answer.headers["Location"].startswith("/login?next=")


def test_the_search_page_forbids_scripts_and_frames(client: FlaskClient) -> None:
    for url in ("/", "/?q=forecast", "/?q=(", "/export.mbox"):
        headers = client.get(url).headers
        assert "default-src 'none'" in headers["Content-Security-Policy"]
        assert "frame-ancestors 'none'" in headers["Content-Security-Policy"]
        assert headers["X-Content-Type-Options"] == "nosniff"
        assert headers["Referrer-Policy"] == "no-referrer"


def test_facet_values_are_quoted_when_the_query_language_needs_it() -> None:
    assert web.search.facet_term("list", "dev.lists.example.com") == "list:dev.lists.example.com"
    assert web.search.facet_term("list", "odd list (old)") == 'list:"odd list (old)"'
    assert web.search.facet_term("list", 'bad"value') is None
    assert web.search.facet_term("from", "") is None


def test_the_status_page_moved_to_its_own_address(client: FlaskClient) -> None:
    assert "Arsip is up" in page(client, "/status")
    assert client.get("/healthz").json["status"] == "ok"


def _token(text: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', text)
    assert found
    return found.group(1)


def test_past_the_counting_limit_the_page_says_about_and_links_to_the_exact_count(
    client: FlaskClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Ten thousand messages would make a slow test; the limit is lowered instead, and with
    # it whoosh's window of newest messages and the page the window must fill.
    monkeypatch.setattr(postgres_index, "EXACT_TOTAL_LIMIT", 10)
    monkeypatch.setattr(whoosh_matching, "EXACT_TOTAL_LIMIT", 10)
    monkeypatch.setattr(whoosh_matching, "WINDOW", 10)
    monkeypatch.setattr(web.search, "PAGE_SIZE", 5)
    admin = as_user(client, "admin@example.com")
    text = page(admin, "/?q=weekly")
    estimated = re.search(r'<strong>about ([\d,]+) messages</strong> · <a href="([^"]+)"', text)
    assert estimated, "the page shows no estimated total"
    assert int(estimated.group(1)) >= 11 and "(about " in text  # the facets are estimates too
    exact = page(admin, html.unescape(estimated.group(2)))
    assert total(exact) == 25 and "count exactly" not in exact and "(about " not in exact
