"""Reading mail in the web UI: a message's page, its HTML body, raw source, attachments and
its thread, each only for those who may see the message."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from html.parser import HTMLParser
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import ColumnElement, select

from archiver.access import find_message, thread_messages, visible_messages
from archiver.accounts import add_user
from archiver.archive import RawMessage
from archiver.core import Core
from archiver.models import Message
from archiver.search.viewer import Viewer
from tests.support import CORPUS, simple_message
from tests.test_accounts import log_in
from web import create_app
from web.downloads import content_disposition
from web.html_frame import FRAME_SCRIPT, SCRIPT_HASH
from web.messages import fold_quotes
from web.sanitize import sanitize_html

PASSWORD = "correct horse battery staple"
NOW = datetime(2026, 2, 2, 12, 0, tzinfo=UTC)

HOSTILE_HTML = """<html><head><title>hi</title>
<style>body { background: url(https://tracker.example/bg.png) }</style>
<script>alert(document.cookie)</script></head>
<body onload="alert(1)">
<p style="color: red">Dear reader,</p>
<img src="https://tracker.example/x.png" onerror="alert(2)" alt="pixel">
<a href="javascript:alert(3)">click</a>
<a href="https://example.org/offer">the offer</a>
<form action="https://phish.example/"><input name="password"></form>
<iframe src="https://evil.example/"></iframe>
</body></html>
"""


def hostile_message(message_id: str = "hostile@example.com") -> bytes:
    """An HTML-and-text message to carol whose HTML tries everything at once."""
    boundary = "==b=="
    return (
        "From: Mallory <mallory@evil.example>\r\nTo: carol@example.com\r\n"
        "Subject: A special offer\r\nDate: Mon, 02 Feb 2026 11:00:00 +0000\r\n"
        f"Message-ID: <{message_id}>\r\nMIME-Version: 1.0\r\n"
        f'Content-Type: multipart/alternative; boundary="{boundary}"\r\n\r\n'
        f"--{boundary}\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nDear reader,\r\n"
        f"--{boundary}\r\nContent-Type: text/html; charset=utf-8\r\n\r\n"
        + HOSTILE_HTML.replace("\n", "\r\n")
        + f"\r\n--{boundary}--\r\n"
    ).encode()


def with_attachments() -> bytes:
    """A text message from alice to bob carrying an HTML file and a file with a Greek name."""
    boundary = "==a=="
    return (
        "From: Alice <alice@example.com>\r\nTo: bob@example.com\r\nSubject: Files\r\n"
        "Date: Mon, 02 Feb 2026 09:00:00 +0000\r\nMessage-ID: <files@example.com>\r\n"
        f'MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="{boundary}"\r\n\r\n'
        f"--{boundary}\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nTwo files.\r\n"
        f"--{boundary}\r\nContent-Type: text/html; charset=utf-8\r\n"
        'Content-Disposition: attachment; filename="page.html"\r\n\r\n'
        "<script>alert(1)</script>\r\n"
        f"--{boundary}\r\nContent-Type: application/pdf\r\n"
        "Content-Disposition: attachment; filename*=utf-8''%CE%B1%CE%B2.pdf\r\n"
        "Content-Transfer-Encoding: base64\r\n\r\nJVBERi0xLjQK\r\n"
        f"--{boundary}--\r\n"
    ).encode()


MESSAGES = [
    simple_message("hello@example.com", subject="Lunch", body="Hello Bob,\r\n\r\nlunch?\r\n"),
    simple_message(
        "reply@example.com",
        subject="Re: Lunch",
        sender="bob@example.com",
        to="alice@example.com",
        body="> Hello Bob,\r\n> lunch?\r\n\r\nYes, at noon.\r\n",
        extra_headers="In-Reply-To: <hello@example.com>\r\nReferences: <hello@example.com>\r\n",
    ),
    simple_message(
        "secret@example.com",
        subject="Salaries",
        sender="carol@example.com",
        to="dave@example.com",
        body="Private figures.\r\n",
    ),
    hostile_message(),
    with_attachments(),
]


@pytest.fixture
def app(core: Core) -> Flask:
    """The web UI over a small archive, with bob and carol as users and an auditor.

    The lunch invitation also went to erin by Bcc (a journal copy with her on the envelope).
    """
    with core.sessions.begin() as session:
        core.archive.archive_batch(
            session,
            [RawMessage(data, "", [], NOW, "import") for data in MESSAGES]
            + [
                RawMessage(
                    MESSAGES[0],
                    "alice@example.com",
                    ["erin@example.com"],
                    NOW,
                    "smtp",
                    journal_source=True,
                )
            ],
        )
        for email, role in [
            ("bob@example.com", "user"),
            ("carol@example.com", "user"),
            ("erin@example.com", "user"),
            ("audrey@example.com", "auditor"),
        ]:
            add_user(session, email, role, PASSWORD)
    return create_app(core)


def browser(app: Flask, email: str | None = None) -> FlaskClient:
    """A browser, logged in as `email` unless None."""
    client = app.test_client()
    if email is not None:
        assert log_in(client, email, PASSWORD).status_code == 302
    return client


def text(response) -> str:
    return response.get_data(as_text=True)


def test_a_user_opens_their_own_message_and_sees_headers_and_body(app: Flask) -> None:
    page = browser(app, "bob@example.com").get("/messages/hello@example.com")
    assert page.status_code == 200
    body = text(page)
    for expected in ("From", "Alice &lt;alice@example.com&gt;", "bob@example.com", "Lunch"):
        assert expected in body
    assert "&lt;hello@example.com&gt;" in body
    assert "lunch?" in body
    assert 'href="/threads/' in body
    assert 'href="/messages/hello@example.com/raw"' in body
    assert 'href="/messages/hello@example.com/eml"' in body
    assert page.headers["Content-Security-Policy"].startswith("default-src 'none'")
    assert "frame-ancestors 'none'" in page.headers["Content-Security-Policy"]
    assert page.headers["Referrer-Policy"] == "no-referrer"


def test_a_message_imported_from_folders_names_them_each_leading_to_its_mail(
    app: Flask, core: Core
) -> None:
    client = browser(app, "bob@example.com")
    assert "Imported from" not in text(client.get("/messages/hello@example.com"))
    with core.sessions.begin() as session:  # found in two folders of two imports
        core.archive.archive_batch(
            session,
            [
                RawMessage(MESSAGES[0], "", [], NOW, "import", folder=folder)
                for folder in ("Inbox/Projects", "Archive 2019", "Inbox/Projects")
            ],
        )
    page = text(client.get("/messages/hello@example.com"))
    assert "<th>Imported from</th>" in page
    assert 'href="/?q=folder:%22Archive+2019%22">Archive 2019</a>' in page
    assert 'href="/?q=folder:%22Inbox/Projects%22">Inbox/Projects</a>' in page


def test_someone_elses_message_is_as_missing_as_an_unknown_one(app: Flask) -> None:
    client = browser(app, "bob@example.com")
    private = client.get("/messages/secret@example.com")
    unknown = client.get("/messages/never-sent@example.com")
    assert private.status_code == unknown.status_code == 404
    assert text(private) == text(unknown)
    assert "Salaries" not in text(private)
    for suffix in ("/raw", "/eml", "/html", "/attachments/0"):
        assert client.get("/messages/secret@example.com" + suffix).status_code == 404
    assert browser(app).get("/messages/hello@example.com").status_code == 404


def test_blind_recipients_show_only_to_auditors_and_to_themselves(app: Flask) -> None:
    auditor = text(browser(app, "audrey@example.com").get("/messages/hello@example.com"))
    assert "Envelope recipients" in auditor
    assert "erin@example.com" in auditor

    recipient = text(browser(app, "bob@example.com").get("/messages/hello@example.com"))
    assert "erin@example.com" not in recipient
    assert "Envelope" not in recipient

    blind = text(browser(app, "erin@example.com").get("/messages/hello@example.com"))
    assert "erin@example.com" in blind
    assert "bob@example.com" in blind  # the To line is hers to see too


def test_hostile_html_is_cleaned_and_shown_only_in_a_sandbox(app: Flask) -> None:
    client = browser(app, "carol@example.com")
    page = text(client.get("/messages/hostile@example.com"))
    frames = re.findall(r"<iframe[^>]*>", page)
    assert len(frames) == 1
    frame = frames[0]
    # Sandboxed with scripts (only the frame's own height script can run, by its hash) and
    # nothing else: no same origin, no forms, no popups, no navigating the page.
    assert re.search(r'\ssandbox="allow-scripts"[\s>]', frame), frame
    assert re.findall(r"allow-[\w-]+", frame) == ["allow-scripts"]
    assert 'src="/messages/hostile@example.com/html"' in frame
    assert "tracker.example" not in page
    assert "/messages/hostile@example.com/html?images=1" in page

    answer = client.get("/messages/hostile@example.com/html")
    assert answer.status_code == 200
    assert answer.headers["Content-Type"] == "text/html; charset=utf-8"
    assert answer.headers["X-Content-Type-Options"] == "nosniff"
    policy = answer.headers["Content-Security-Policy"]
    assert "default-src 'none'" in policy
    assert "img-src data: cid:" in policy
    assert "frame-ancestors 'self'" in policy
    assert "connect-src" not in policy and "form-action 'none'" in policy
    # One script may run: the one whose hash the policy names, which is the frame's own.
    assert re.findall(r"script-src ([^;]+);", policy) == [f"'{SCRIPT_HASH}'"]
    assert policy.endswith("; sandbox allow-scripts")
    served = text(answer)
    assert re.findall(r"<script[^>]*>(.*?)</script>", served, re.S) == [FRAME_SCRIPT]
    html = served.replace(f"<script>{FRAME_SCRIPT}</script>", "").lower()
    assert "<script" not in html
    assert "alert(" not in html
    assert not re.search(r"\son\w+\s*=", html)
    assert "javascript:" not in html
    assert "<form" not in html and "<input" not in html and "<iframe" not in html
    assert "tracker.example" not in html
    assert "url(" not in html
    assert "dear reader" in html
    assert 'href="https://example.org/offer"' in html

    with_images = client.get("/messages/hostile@example.com/html?images=1")
    assert 'src="https://tracker.example/x.png"' in text(with_images)
    assert "img-src data: https: http:" in with_images.headers["Content-Security-Policy"]
    assert text(with_images).lower().count("<script") == 1  # the height script alone


def test_raw_source_is_plain_text_and_the_eml_a_download(app: Flask) -> None:
    client = browser(app, "bob@example.com")
    raw = client.get("/messages/hello@example.com/raw")
    assert raw.status_code == 200
    assert raw.headers["Content-Type"] == "text/plain; charset=utf-8"
    assert raw.headers["X-Content-Type-Options"] == "nosniff"
    assert "Message-ID: <hello@example.com>" in text(raw)

    eml = client.get("/messages/hello@example.com/eml")
    assert eml.headers["Content-Type"] == "message/rfc822"
    assert eml.headers["Content-Disposition"] == 'attachment; filename="message.eml"'
    assert eml.data == MESSAGES[0]


def test_attachments_download_as_opaque_files(app: Flask) -> None:
    client = browser(app, "bob@example.com")
    page = text(client.get("/messages/files@example.com"))
    assert "page.html" in page and "αβ.pdf" in page
    links = re.findall(r'href="(/messages/files@example.com/attachments/\d+)"', page)
    assert len(links) == 2

    html_file = client.get(links[0])
    assert html_file.status_code == 200
    assert html_file.data.strip() == b"<script>alert(1)</script>"
    assert html_file.headers["Content-Type"] == "application/octet-stream"
    assert html_file.headers["X-Content-Type-Options"] == "nosniff"
    assert html_file.headers["Content-Disposition"] == 'attachment; filename="page.html"'

    pdf = client.get(links[1])
    assert pdf.data == b"%PDF-1.4\n"
    assert pdf.headers["Content-Disposition"] == (
        "attachment; filename=\"__.pdf\"; filename*=UTF-8''%CE%B1%CE%B2.pdf"
    )
    assert client.get("/messages/files@example.com/attachments/9").status_code == 404


def test_a_filename_cannot_break_out_of_its_header() -> None:
    assert content_disposition('a"b\r\n.txt') == 'attachment; filename="a_b__.txt"'
    assert content_disposition(None) == 'attachment; filename="attachment"'


def test_the_thread_page_nests_the_reply_and_folds_quoted_text(app: Flask, core: Core) -> None:
    with core.sessions() as session:
        thread_id = session.scalar(
            select(Message.thread_id).where(Message.message_id == "hello@example.com")
        )
    page = text(browser(app, "bob@example.com").get(f"/threads/{thread_id}"))
    entries = re.findall(
        r'<li class="entry" data-depth="(\d+)".*?href="/messages/([^"]+)"', page, re.S
    )
    assert entries == [("0", "hello@example.com"), ("1", "reply@example.com")]
    assert "<details><summary>quoted text</summary><pre>&gt; Hello Bob,\n&gt; lunch?</pre>" in page
    assert "Yes, at noon." in page

    # A visitor who is not logged in sees neither message: there is no thread for them.
    assert browser(app).get(f"/threads/{thread_id}").status_code == 404


def test_a_reply_whose_parent_is_hidden_starts_at_the_top(app: Flask, core: Core) -> None:
    forwarded = simple_message(
        "to-frank@example.com",
        subject="Re: Lunch",
        sender="bob@example.com",
        to="frank@example.com",
        body="Join us?\r\n",
        extra_headers="In-Reply-To: <hello@example.com>\r\nReferences: <hello@example.com>\r\n",
    )
    with core.sessions.begin() as session:
        core.archive.archive_batch(session, [RawMessage(forwarded, "", [], NOW, "import")])
        add_user(session, "frank@example.com", "user", PASSWORD)
        thread_id = session.scalar(
            select(Message.thread_id).where(Message.message_id == "hello@example.com")
        )
    with core.sessions() as session:
        seen = thread_messages(session, Viewer.person("frank@example.com"), thread_id)
        assert [m.message_id for m in seen] == ["to-frank@example.com"]
        everything = thread_messages(session, Viewer.administrator(), thread_id)
        assert len(everything) == 3
    page = text(browser(app, "frank@example.com").get(f"/threads/{thread_id}"))
    assert re.findall(r'data-depth="(\d+)"', page) == ["0"]
    assert "Join us?" in page and "lunch?" not in page


def test_fold_quotes_keeps_the_order_of_runs() -> None:
    segments = fold_quotes("Hi\n> a\n>> b\nok\n> c")
    assert [(s.quoted, s.text) for s in segments] == [
        (False, "Hi"),
        (True, "> a\n>> b"),
        (False, "ok"),
        (True, "> c"),
    ]


def test_the_access_check_is_part_of_the_sql(core: Core) -> None:
    condition = visible_messages(Viewer.person("bob@example.com", lists=("dev.lists.example",)))
    assert isinstance(condition, ColumnElement)
    sql = str(select(Message).where(condition).compile(core.engine))
    assert "message_addresses" in sql
    assert "EXISTS" in sql.upper()
    assert "list_id IN" in sql
    nobody = str(select(Message).where(visible_messages(Viewer())).compile(core.engine))
    assert "message_addresses" not in nobody

    with core.sessions.begin() as session:
        core.archive.archive_batch(session, [RawMessage(MESSAGES[2], "", [], NOW, "import")])
    with core.sessions() as session:
        assert find_message(session, Viewer.person("bob@example.com"), "secret@example.com") is None
        assert find_message(session, Viewer.person("dave@example.com"), "<secret@example.com>")
        assert find_message(session, Viewer.administrator(), "secret@example.com")


def xss_vectors() -> list[pytest.param]:
    """The HTML attack vectors of the corpus (Roundcube's and DOMPurify's test tables)."""
    sources = [
        (CORPUS / "html-xss" / "roundcube" / "washtml-test-vectors.json", "input"),
        (CORPUS / "html-xss" / "dompurify" / "expect.json", "payload"),
    ]
    found: list[pytest.param] = []
    for path, key in sources:
        if not path.exists():
            continue
        for number, case in enumerate(json.loads(path.read_text())):
            payload = case.get(key)
            if isinstance(payload, str):
                found.append(pytest.param(payload, id=f"{path.parent.name}-{number}"))
    return found or [pytest.param(None, marks=pytest.mark.skip(reason="no HTML attack corpus"))]


RESOURCE_TAGS = {"img", "iframe", "object", "embed", "link", "image", "video", "audio", "source"}
URL_ATTRIBUTES = {"src", "href", "data", "poster", "srcset", "background", "xlink:href"}


class Elements(HTMLParser):
    """Every start tag of a document with its attributes, as a browser would read them."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, list[tuple[str, str]]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, [(name, value or "") for name, value in attrs]))


def assert_harmless(html: str) -> None:
    """No script, no handler, no script URL, no remote resource: checked on the parsed
    elements, so text that merely mentions `onerror=` (escaped) does not count."""
    assert "<script" not in html.lower()
    parser = Elements()
    parser.feed(html)
    parser.close()
    for tag, attributes in parser.tags:
        assert tag not in {"script", "style", "iframe", "object", "embed", "form", "base"}
        for name, value in attributes:
            assert not name.startswith("on"), (tag, name, value)
            squeezed = re.sub(r"[\x00-\x20]+", "", value).lower()
            for scheme in ("javascript:", "vbscript:", "data:text/html"):
                assert scheme not in squeezed, (tag, name, value)
            if name == "style":
                assert "url(" not in squeezed, (tag, value)
            if tag in RESOURCE_TAGS and name in URL_ATTRIBUTES:
                assert not re.match(r"(https?:)?//", squeezed), (tag, name, value)


@pytest.mark.parametrize("vector", xss_vectors())
def test_attack_vectors_from_the_corpus_come_out_harmless(vector: str) -> None:
    body = f'<html><body><p>Hello</p>{vector}<a href="https://ok.example/">ok</a></body></html>'
    assert_harmless(sanitize_html(body).html)


@pytest.mark.parametrize(
    "name", ["roundcube/html.msg", "ietf-mailarchive/mail_html_unsafe.1", "roundcube/htmlxss.txt"]
)
def test_whole_hostile_files_from_the_corpus_come_out_harmless(name: str) -> None:
    path: Path = CORPUS / "html-xss" / name
    if not path.exists():
        pytest.skip(f"{name} is not in the corpus")
    assert_harmless(sanitize_html(path.read_text(errors="replace")).html)
