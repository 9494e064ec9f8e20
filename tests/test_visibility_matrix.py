"""One rule decides who sees a message, and every way of reading the archive obeys it.

A real `arsip serve` (SQLite with whoosh, PostgreSQL with its full text search) takes in
mail over SMTP on loopback: a message naming someone only in `Reply-To:`, an Exchange
journal report with a Bcc recipient, a journal copy whose only trace of a reader is the
envelope, a post to a private list, and mail to an account's second address. Each viewer
then reads through every door over HTTP and the command line: the search page, its totals
and facets, `/export.mbox`, the message, raw, attachment and thread pages, the JSON API,
the list's Atom feed and `arsip search --as`. All of them must give the same answer, and
that answer is the matrix below. Naming someone in Reply-To grants nothing.
"""

from __future__ import annotations

import http.cookiejar
import io
import json
import re
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass

import pytest

from archiver.accounts import add_address, add_user, new_api_token
from archiver.mailfiles import read_mbox
from tests.support import (
    JOURNAL,
    JOURNAL_DOMAIN,
    LIST_DOMAIN,
    RunningService,
    run_arsip,
    simple_message,
)

PASSWORD = "correct horse battery staple"
BOARD = f"board@{LIST_DOMAIN}"  # a list whose archive only its members may read
WORD = "zebra"  # in every message, so one search finds all of them

REPLY_TO_ONLY = "replyto@example.com"
BCC = "bcc@example.com"
ENVELOPE = "envelope@example.com"
LIST_POST = "board-post@example.com"
ALIAS = "alias@example.com"
ALL = {REPLY_TO_ONLY, BCC, ENVELOPE, LIST_POST, ALIAS}

# viewer -> (role, extra verified address, what they may see)
VIEWERS: dict[str, tuple[str, str | None, set[str]]] = {
    "rita@example.com": ("user", None, set()),  # named only in Reply-To
    "bea@example.com": ("user", None, {BCC}),  # Bcc of a journal report
    "erin@example.com": ("user", None, {ENVELOPE}),  # on the envelope only
    "ann@example.com": ("user", None, {LIST_POST}),  # member of the private list
    "dana@example.com": ("user", "dan@example.org", {ALIAS}),  # mail to her 2nd address
    "nobody@example.com": ("user", None, set()),
    "audrey@example.com": ("auditor", "audit-desk@example.com", ALL),
    "root@example.com": ("admin", None, ALL),
}
ENVELOPE_SENDER = "bounces+4711@mta.example.com"


def with_attachment(message_id: str) -> bytes:
    """Alice to Bob with a file; Rita is named in Reply-To and nowhere else."""
    return (
        "From: Alice <alice@example.com>\r\nTo: bob@example.com\r\n"
        "Reply-To: Rita <rita@example.com>\r\nSubject: Zebra budget\r\n"
        f"Date: Mon, 02 Feb 2026 10:00:00 +0000\r\nMessage-ID: <{message_id}>\r\n"
        'MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="b"\r\n\r\n'
        "--b\r\nContent-Type: text/plain\r\n\r\nThe zebra budget is attached.\r\n"
        "--b\r\nContent-Type: text/csv\r\n"
        'Content-Disposition: attachment; filename="budget.csv"\r\n\r\nzebra,1\r\n--b--\r\n'
    ).encode()


def journal_report(original: bytes, bcc: str) -> bytes:
    """An Exchange journal report for `original` naming `bcc` as a Bcc recipient."""
    return (
        b"From: Microsoft Exchange <journal@example.com>\r\n"
        b"To: journal@archive.test\r\nSubject: Zebra numbers\r\n"
        b"Message-ID: <report-1@example.com>\r\nX-MS-Journal-Report:\r\n"
        b"Date: Mon, 02 Feb 2026 10:00:05 +0000\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/mixed; boundary="b1"\r\n\r\n'
        b"--b1\r\nContent-Type: text/plain\r\n\r\n"
        b"Sender: alice@example.com\r\nSubject: Zebra numbers\r\n"
        b"Message-Id: <" + BCC.encode() + b">\r\nTo: bob@example.com\r\n"
        b"Bcc: " + bcc.encode() + b"\r\n\r\n"
        b"--b1\r\nContent-Type: message/rfc822\r\n\r\n" + original + b"\r\n--b1--\r\n"
    )


def zebra(message_id: str, **fields: str) -> bytes:
    return simple_message(message_id, subject=f"Zebra {message_id}", body="A zebra.\r\n", **fields)


class Client:
    """A browser over HTTP: keeps its session cookie, never follows a redirect away."""

    def __init__(self, base: str) -> None:
        self.base = base
        self._opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar())
        )

    def get(self, path: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
        request = urllib.request.Request(self.base + path, headers=headers or {})
        try:
            with self._opener.open(request, timeout=60) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as error:
            return error.code, error.read()

    def log_in(self, email: str) -> None:
        _, page = self.get("/login")
        token = re.search(rb'name="csrf_token" value="([^"]+)"', page)
        assert token, page
        form = {"csrf_token": token.group(1).decode(), "email": email, "password": PASSWORD}
        data = urllib.parse.urlencode(form).encode()
        with self._opener.open(self.base + "/login", data=data, timeout=60) as response:
            assert response.status == 200


@dataclass
class Archive:
    service: RunningService
    base: str
    threads: dict[str, str]  # Message-ID -> thread id
    tokens: dict[str, str]


def arsip(service: RunningService, *args: str, stdin: str = "") -> str:
    result = run_arsip(service.settings, *args, stdin=stdin)
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.fixture
def archive(service: RunningService) -> Archive:
    """The five messages, taken in over SMTP and indexed, and every viewer's account."""
    arsip(service, "lists", "create", BOARD, "--archive", "private", "--owner", "o@example.com")
    arsip(service, "lists", "add-member", BOARD, "ann@example.com", "o@example.com", "--no-confirm")
    with service.smtp() as client:
        client.sendmail("alice@example.com", [JOURNAL], with_attachment(REPLY_TO_ONLY))
        client.sendmail(
            "journal@example.com", [JOURNAL], journal_report(zebra(BCC), "bea@example.com")
        )
        client.sendmail(ENVELOPE_SENDER, [f"erin@{JOURNAL_DOMAIN}"], zebra(ENVELOPE))
        client.sendmail(
            "o@example.com", [BOARD], zebra(LIST_POST, to=BOARD, sender="o@example.com")
        )
        client.sendmail("alice@example.com", [JOURNAL], zebra(ALIAS, to="dan@example.org"))
    service.wait_until_archived()
    tokens = {}
    with service.core().sessions.begin() as session:
        for email, (role, extra, _) in VIEWERS.items():
            user = add_user(session, email, role, PASSWORD)
            if extra:
                add_address(session, user, extra, verified=True)
            tokens[email] = new_api_token(session, user)
    service.wait_until_indexed()
    base = f"http://127.0.0.1:{service.settings.web_port}"
    admin = {"Authorization": f"Bearer {tokens['root@example.com']}"}
    threads = {}
    for message_id in ALL:
        status, body = Client(base).get(f"/api/v1/messages/{message_id}", admin)
        assert status == 200, (message_id, body)
        threads[message_id] = json.loads(body)["thread_id"]
    return Archive(service, base, threads, tokens)


def found_ids(page: bytes) -> set[str]:
    """The Message-IDs a search results page links to (each link carries the way back to
    the results after its `?`)."""
    return {
        urllib.parse.unquote(m.decode())
        for m in re.findall(rb'href="/messages/([^"/?]+)[^"]*"', page)
    }


def test_every_door_shows_each_viewer_the_same_messages(archive: Archive) -> None:
    for email in VIEWERS:
        check_doors(archive, email)


def check_doors(archive: Archive, email: str) -> None:
    """Every door shows `email` exactly the messages the matrix says they may see."""
    _, _, expected = VIEWERS[email]
    browser = Client(archive.base)
    browser.log_in(email)
    api = {"Authorization": f"Bearer {archive.tokens[email]}"}

    status, page = browser.get(f"/?q={WORD}")
    assert status == 200
    assert found_ids(page) == expected, f"{email}: search page"
    total = re.search(rb'class="count"><strong>([^<]+)<', page)
    assert total is not None and total.group(1).split()[0] == str(len(expected)).encode()

    status, body = browser.get(f"/api/v1/search?q={WORD}&limit=100", api)
    result = json.loads(body)
    assert {r["message_id"] for r in result["results"]} == expected, f"{email}: API search"
    assert result["total"] == len(expected)
    assert sum(result["facets"].get("sender_domain", {}).values()) == len(expected), (
        f"{email}: facets"
    )

    status, mbox = browser.get(f"/export.mbox?q={WORD}")
    assert status == 200
    exported = {
        re.search(rb"Message-I[dD]: <([^>]+)>", found.data).group(1).decode()
        for found in read_mbox(io.BytesIO(mbox), "export")
    }
    assert exported == expected, f"{email}: export.mbox"

    cli = json.loads(arsip(archive.service, "search", "--json", "--as", email, WORD))
    assert {r["message_id"] for r in cli["results"]} == expected, f"{email}: arsip search --as"
    extra = VIEWERS[email][1]
    if extra:  # the account's second address is the same viewer, role and all
        by_alias = json.loads(arsip(archive.service, "search", "--json", "--as", extra, WORD))
        assert {r["message_id"] for r in by_alias["results"]} == expected, (
            f"{email}: --as its alias"
        )

    for message_id in ALL:
        wanted = 200 if message_id in expected else 404
        doors = {
            "page": browser.get(f"/messages/{message_id}"),
            "raw": browser.get(f"/messages/{message_id}/raw"),
            "eml": browser.get(f"/messages/{message_id}/eml"),
            "thread": browser.get(f"/threads/{archive.threads[message_id]}"),
            "api": browser.get(f"/api/v1/messages/{message_id}", api),
            "api thread": browser.get(f"/api/v1/threads/{archive.threads[message_id]}", api),
        }
        if message_id == REPLY_TO_ONLY:
            doors["attachment"] = browser.get(f"/messages/{message_id}/attachments/0")
        assert {door: answer[0] for door, answer in doors.items()} == dict.fromkeys(
            doors, wanted
        ), (email, message_id)

    status, feed = browser.get(f"/lists/{BOARD}/feed.atom")
    if LIST_POST in expected:
        assert status == 200 and LIST_POST.encode() in feed
    else:
        assert status == 404, email


def test_only_those_who_see_everything_get_the_envelope_sender(archive: Archive) -> None:
    """The message page hides the envelope sender from ordinary users; so do the API and
    the mbox export's `From ` lines."""

    def api_view(email: str) -> dict:
        headers = {"Authorization": f"Bearer {archive.tokens[email]}"}
        status, body = Client(archive.base).get(f"/api/v1/messages/{ENVELOPE}", headers)
        assert status == 200
        return json.loads(body)

    erin, auditor = api_view("erin@example.com"), api_view("audrey@example.com")
    assert erin["envelope_from"] is None
    assert erin["envelope_recipients"] == ["erin@example.com"]
    assert auditor["envelope_from"] == ENVELOPE_SENDER

    def export_of(email: str) -> bytes:
        browser = Client(archive.base)
        browser.log_in(email)
        status, mbox = browser.get(f"/export.mbox?q=msgid:{ENVELOPE}")
        assert status == 200
        return mbox

    assert ENVELOPE_SENDER.encode() not in export_of("erin@example.com")
    assert export_of("audrey@example.com").startswith(f"From {ENVELOPE_SENDER} ".encode())
