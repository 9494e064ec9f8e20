"""Every page of a real `arsip serve` carries its protective headers: a walk over every
GET route of the URL map, as a visitor and as an administrator, and the error pages."""

from __future__ import annotations

from sqlalchemy import select, text

from archiver.models import Message
from tests.support import JOURNAL, LIST_DOMAIN, RunningService, run_arsip
from tests.web_client import Answer, Visitor
from web import create_app

PASSWORD = "correct horse battery staple"
ADMIN = "root@example.com"
LIST = f"dev@{LIST_DOMAIN}"
MESSAGE_ID = "walk@example.com"
HTML_MAIL = (
    "From: Alice <alice@example.com>\r\nTo: bob@example.com\r\nSubject: Walk\r\n"
    f"Date: Mon, 02 Feb 2026 10:00:00 +0000\r\nMessage-ID: <{MESSAGE_ID}>\r\n"
    "MIME-Version: 1.0\r\nContent-Type: text/html; charset=utf-8\r\n\r\n"
    "<p>The walk starts here.</p>\r\n"
)
# The message's HTML body is framed by its own page, so it alone may be framed (by us,
# and sandboxed); its error pages are pages like any other.
FRAMED = {"messages.html", "cases.message_html"}


def problems(answer: Answer, where: str, endpoint: str | None = None) -> list[str]:
    """What `answer` lacks; nothing for a response that is not a page."""
    found = []
    if answer.headers.get("X-Content-Type-Options") != "nosniff":
        found.append(f"{where}: no nosniff")
    if not answer.html:
        return found
    policy = answer.headers.get("Content-Security-Policy", "")
    framed = endpoint in FRAMED and answer.status == 200
    framing = "frame-ancestors 'self'" if framed else "frame-ancestors 'none'"
    if not policy.startswith("default-src 'none'") or framing not in policy:
        found.append(f"{where}: policy {policy!r}")
    if answer.headers.get("Referrer-Policy") != "no-referrer":
        found.append(f"{where}: Referrer-Policy {answer.headers.get('Referrer-Policy')!r}")
    return found


def prepared(service: RunningService) -> str:
    """An administrator, a list and an HTML message; returns the message's thread id."""
    added = run_arsip(service.settings, "users", "add", ADMIN, "--role", "admin",
                      "--password-stdin", stdin=PASSWORD + "\n")  # fmt: skip
    assert added.returncode == 0, added.stderr
    service.run_cli("lists", "create", LIST, "--owner", ADMIN, check=True)
    service.run_cli("case", "create", "walk", "--custodian", "alice@example.com", check=True)
    with service.smtp() as client:
        client.sendmail("alice@example.com", [JOURNAL], HTML_MAIL.encode())
    service.wait_until_archived()
    with service.core().sessions() as db:
        return db.scalars(select(Message.thread_id).where(Message.message_id == MESSAGE_ID)).one()


def test_every_page_and_error_page_has_a_policy_and_cannot_be_framed(make_service) -> None:
    service = make_service()
    thread_id = prepared(service)
    port = service.settings.web_port
    app = create_app(service.core())
    urls = app.url_map.bind("127.0.0.1")
    sample = {
        "message_id": MESSAGE_ID,
        "thread_id": thread_id,
        "list_address": LIST,
        "year": 2026,
        "month": 2,
        "position": 1,
        "held_id": 1,
        "user_id": 1,
        "token": "not-a-token",
        "filename": "missing.css",
        "case": "walk",
        "production": 1,
    }
    visitor, admin = Visitor(port), Visitor(port, "127.0.0.2")
    assert admin.log_in(ADMIN, PASSWORD) == 302

    found: list[str] = []
    pages: set[tuple[str, str]] = set()
    for rule in app.url_map.iter_rules():
        if "GET" not in (rule.methods or ()):
            continue
        path = urls.build(rule.endpoint, {name: sample[name] for name in rule.arguments})
        for who, browser in (("visitor", visitor), ("admin", admin)):
            answer = browser.get(path)
            found += problems(answer, f"{who} GET {path} ({answer.status})", rule.endpoint)
            if answer.html:
                pages.add((rule.endpoint, who))
    assert found == []
    seen_by_all = (
        "auth.login",
        "status.index",
        "list_archives.archive",
        "lists.confirm_page",
        "lists.unsubscribe_page",
        "messages.show",
        "messages.html",
        "static",
    )
    for endpoint in seen_by_all:
        assert (endpoint, "visitor") in pages
    for endpoint in (
        "account.account",
        "admin.overview",
        "manage.members",
        "retention.index",
        "cases.show",
        "cases.message",
        "cases.message_html",
    ):
        assert (endpoint, "admin") in pages

    errors = {
        "404": visitor.get("/no-such-page"),
        "405": visitor.get("/logout"),
        "400": visitor.request("POST", "/login", form={"email": ADMIN, "password": "x"}),
        "403": visitor.request("POST", f"/lists/{LIST}/unsubscribe?address=x&sig=y", form={}),
    }
    # A fault below the pages: the table of legal holds is gone.
    with service.core().engine.begin() as connection:
        connection.execute(text("DROP TABLE legal_holds"))
    errors["500"] = admin.get("/admin/holds")
    assert {name: answer.status for name, answer in errors.items()} == {
        name: int(name) for name in errors
    }
    for name, answer in errors.items():
        assert answer.html, name
        assert problems(answer, name) == []
