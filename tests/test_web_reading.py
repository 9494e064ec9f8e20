"""Reading on the web, page by page: results folded into conversations, the way from a
message to its neighbours and back, a month of a list by thread, and attachment previews
that show what the bytes are, never what the mail claims."""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from email.message import EmailMessage
from email.policy import SMTP

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from archiver.accounts import add_user
from archiver.archive import RawMessage
from archiver.core import Core
from archiver.models import ContentCheck, Message
from lists.models import MailingList
from tests.reading_mail import pdf, png
from tests.support import simple_message
from tests.test_accounts import PASSWORD
from tests.test_web_list_archives import DOMAIN, list_post
from tests.test_web_search import as_user, indexed_app
from tests.test_web_search import page as page_of
from web import search
from web.navigation import conversations, search_return

BOB = "bob@example.com"
NOW = datetime(2026, 2, 2, 12, 0, tzinfo=UTC)
SPRING = datetime(2026, 4, 1, tzinfo=UTC)  # received after the last post was written
LIST = f"dev@{DOMAIN}"
TEXT_LINES = [f"line {n} <script>alert({n})</script>" for n in range(50)]


def thread_mail(n: int, date: str) -> bytes:
    replying = f"In-Reply-To: <t{n - 1}@example.com>\r\n" if n > 1 else ""
    return simple_message(
        f"t{n}@example.com",
        subject="Budget forecast" if n == 1 else "Re: Budget forecast",
        to="bob@example.com",
        body=f"Forecast number {n}.\r\n",
        extra_headers=replying,
    ).replace(b"Mon, 02 Feb 2026 10:00:00 +0000", date.encode())


def files_mail() -> bytes:
    message = EmailMessage(policy=SMTP)
    message["From"], message["To"], message["Subject"] = "alice@example.com", BOB, "Files"
    message["Date"], message["Message-ID"] = (
        "Tue, 03 Feb 2026 09:00:00 +0000",
        "<files@example.com>",
    )
    message.set_content("Files.")
    attach = message.add_attachment
    attach(png(), maintype="image", subtype="jpeg", filename="claims-jpeg.jpg")  # 0
    svg = b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>'
    attach(svg, maintype="image", subtype="svg+xml", filename="drawing.svg")  # 1
    attach(b"%PDF-1.7\nthis is not a PDF at all", maintype="application", subtype="pdf",
           filename="broken.pdf")  # 2  # fmt: skip
    attach(pdf(), maintype="application", subtype="pdf", filename="report.pdf")  # 3
    attach(b"<html><script>alert(1)</script></html>", maintype="image", subtype="png",
           filename="photo.png")  # 4  # fmt: skip
    attach("\n".join(TEXT_LINES), subtype="plain", filename="notes.txt")  # 5
    return message.as_bytes()


@pytest.fixture
def app(core: Core) -> Iterator[Flask]:
    """Bob's thread of three and a files message; a public list with posts in January and
    March 2026 (none in February); bob and carol as users."""
    journal = [
        thread_mail(1, "Mon, 02 Feb 2026 09:00:00 +0000"),
        thread_mail(2, "Mon, 02 Feb 2026 10:00:00 +0000"),
        thread_mail(3, "Mon, 02 Feb 2026 11:00:00 +0000"),
        simple_message(
            "other@example.com", subject="Forecast, alone", body="A forecast.\r\n"
        ).replace(b"10:00:00", b"08:00:00"),
        files_mail(),
    ]
    posts = [
        list_post("d1@x", "dev", "Kick-off", "Tue, 06 Jan 2026 09:00:00 +0000"),
        list_post("d2@x", "dev", "Re: Kick-off", "Wed, 07 Jan 2026 09:00:00 +0000").replace(
            b"MIME-Version", b"In-Reply-To: <d1@x>\r\nMIME-Version"
        ),
        list_post("d3@x", "dev", "Spring", "Tue, 03 Mar 2026 09:00:00 +0000"),
    ]
    with core.sessions.begin() as session:
        session.add(MailingList(name="dev", domain=DOMAIN, display_name="Developers"))
        core.archive.archive_batch(
            session,
            [RawMessage(data, "", [], NOW, "import") for data in journal]
            + [RawMessage(data, "", [], SPRING, "list", list_id=f"dev.{DOMAIN}") for data in posts],
        )
        for email in (BOB, "carol@example.com"):
            add_user(session, email, "user", PASSWORD)
    yield from indexed_app(core)


def client_of(app: Flask, email: str | None = BOB) -> FlaskClient:
    """A browser, logged in as `email` unless None."""
    return as_user(app.test_client(), email) if email else app.test_client()


def rel(page: str, name: str) -> list[str]:
    return [html.unescape(href) for href in re.findall(rf'href="([^"]+)" rel="{name}"', page)]


def thread_of(core: Core, message_id: str) -> str:
    with core.sessions() as session:
        return session.scalars(
            select(Message.thread_id).where(Message.message_id == message_id)
        ).one()


def test_a_thread_that_matches_three_times_is_one_conversation_and_the_total_counts_messages(
    app: Flask,
) -> None:
    page = page_of(client_of(app), "/?q=forecast+-has:attachment")
    assert "<strong>4 messages</strong>" in page
    assert "this page: 4 messages in 2 conversations" in page
    (conversation,) = re.findall(r'<li class="conversation">(.*?)</ol>', page, re.S)
    assert ">3 messages</span>" in conversation
    assert "Read the whole conversation" in conversation
    # Every match stays one click away: the entry's subject and its other matches.
    linked = {href.split("?")[0] for href in re.findall(r'href="(/messages/[^"]+)"', page)}
    assert {f"/messages/t{n}@example.com" for n in (1, 2, 3)} <= linked


def test_a_conversation_split_by_a_page_break_shows_on_both_pages(
    app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(search, "PAGE_SIZE", 2)
    client = client_of(app)
    first = page_of(client, "/?q=forecast+-has:attachment&sort=date")
    second = page_of(client, "/?q=forecast+-has:attachment&sort=date&page=2")
    for page in (first, second):
        assert "<strong>4 messages</strong>" in page  # the total never changes
    assert "this page: 2 messages in 1 conversation" in first
    assert "this page: 2 messages in 2 conversations" in second
    assert "Budget forecast" in first and "Budget forecast" in second


def test_a_message_from_the_results_leads_to_its_neighbours_and_back(app: Flask) -> None:
    back = "/?q=forecast&page=1"
    page = page_of(client_of(app), "/messages/t2@example.com?from=%2F%3Fq%3Dforecast%26page%3D1")
    assert rel(page, "up") == [back]
    assert rel(page, "prev") == ["/messages/t1@example.com?from=" + "%2F%3Fq%3Dforecast%26page%3D1"]
    assert rel(page, "next") == ["/messages/t3@example.com?from=" + "%2F%3Fq%3Dforecast%26page%3D1"]
    assert "2 of 3 in this thread" in page
    last = page_of(client_of(app), "/messages/t3@example.com")
    assert rel(last, "next") == [] and len(rel(last, "prev")) == 1


@pytest.mark.parametrize(
    "hostile",
    [
        "//evil.example/",
        "https://evil.example/",
        "/\\evil.example",
        "/login",
        "javascript:alert(1)",
        "/?q=x\r\nSet-Cookie: a=b",
        "/?" + "q" * 3000,
    ],
)
def test_a_return_address_that_is_not_our_search_page_is_ignored(
    app: Flask, core: Core, hostile: str
) -> None:
    assert search_return(hostile) is None
    from urllib.parse import quote

    page = page_of(client_of(app), f"/messages/t2@example.com?from={quote(hostile, safe='')}")
    thread = f"/threads/{thread_of(core, 't2@example.com')}?message=t2%40example.com"
    assert rel(page, "up") == [thread]  # the thread, as if no search had led here
    assert "evil.example" not in page and "javascript:" not in page


def test_the_thread_page_marks_the_message_and_leads_up_to_the_month(
    app: Flask, core: Core
) -> None:
    thread = thread_of(core, "d2@x")
    page = page_of(client_of(app, None), f"/threads/{thread}?message=d2%40x")
    current = re.findall(r'<li class="entry current"[^>]*>.*?href="([^"]+)"', page, re.S)
    assert current == ["/messages/d2@x"]
    assert rel(page, "up") == [f"/lists/{LIST}/2026-01"]
    # Someone who only got the mail, not a reader of a list, has no month to go up to.
    journal = page_of(client_of(app), f"/threads/{thread_of(core, 't1@example.com')}")
    assert rel(journal, "up") == []


def test_a_month_shows_threads_and_leads_only_to_months_with_mail(app: Flask) -> None:
    client = client_of(app, None)
    january = page_of(client, f"/lists/{LIST}/2026-01")
    assert january.count('<li class="conversation">') == 1 and ">2 messages</span>" in january
    assert rel(january, "next")[0] == f"/lists/{LIST}/2026-03"  # February had none
    assert rel(january, "prev") == [] and rel(january, "up") == [f"/lists/{LIST}/"]
    march = page_of(client, f"/lists/{LIST}/2026-03")
    assert rel(march, "prev")[0] == f"/lists/{LIST}/2026-01" and rel(march, "next") == []
    page_of(client, f"/lists/{LIST}/2026-13", 404)


def preview_url(position: int) -> str:
    return f"/messages/files@example.com/attachments/{position}/preview"


def test_previews_show_what_the_bytes_are_never_what_the_mail_claims(app: Flask) -> None:
    client = client_of(app)
    page = page_of(client, "/messages/files@example.com")
    shown = set(re.findall(r'<img class="preview (\w+)" src="([^"]+)"', page))
    # The broken PDF gets its card's picture too: only rendering it shows it is broken.
    assert shown == {("image", preview_url(0)), ("pdf", preview_url(2)), ("pdf", preview_url(3))}

    picture = client.get(preview_url(0))
    assert picture.headers["Content-Type"] == "image/png"  # its bytes, not its "image/jpeg"
    assert picture.headers["X-Content-Type-Options"] == "nosniff"
    assert "sandbox" in picture.headers["Content-Security-Policy"]
    assert picture.data == png()

    page_one = client.get(preview_url(3))
    assert page_one.headers["Content-Type"] == "image/png"
    assert page_one.data.startswith(b"\x89PNG\r\n\x1a\n")

    for position in (1, 2, 4):  # an SVG, a broken PDF, HTML that calls itself a PNG
        answer = client.get(preview_url(position))
        assert answer.status_code == 404
        assert answer.headers["Content-Type"].startswith("text/plain")
        assert answer.get_data(as_text=True) == "No preview"

    notes = re.search(r'<pre class="preview text"[^>]*>(.*?)</pre>', page, re.S)
    assert notes is not None
    assert notes.group(1).split("\n") == [html.escape(line) for line in TEXT_LINES[:40]]
    assert "<script>alert" not in page
    assert "download the file for the rest" in page


def test_previews_are_as_private_as_the_message(app: Flask) -> None:
    for client in (client_of(app, "carol@example.com"), client_of(app, None)):
        for position in (0, 3):
            assert client.get(preview_url(position)).status_code == 404


def test_a_message_with_a_virus_shows_no_previews(app: Flask, core: Core) -> None:
    with core.sessions.begin() as session:
        pk = session.scalars(select(Message.id).where(Message.message_id == "files@example.com"))
        session.add(ContentCheck(message_pk=pk.one(), checked_at=NOW, virus="Eicar-Signature"))
    client = client_of(app)
    page = page_of(client, "/messages/files@example.com")
    assert "<img" not in page and 'class="preview' not in page
    assert page.count("No preview") == 6 and page.count(" download>") == 6
    for position in (0, 3):
        assert page_of(client, preview_url(position), 404) == "No preview"
    assert client.get("/messages/files@example.com/attachments/0").data == png()


def test_conversations_keep_the_order_of_their_first_items() -> None:
    items = [("a", 1), ("b", 2), ("a", 3), ("", 4), ("c", 5), ("b", 6), ("", 7)]
    folded = conversations(items, lambda item: item[0])
    assert [[n for _, n in c.items] for c in folded] == [[1, 3], [2, 6], [4], [5], [7]]
    assert [c.count for c in folded] == [2, 2, 1, 1, 1]
