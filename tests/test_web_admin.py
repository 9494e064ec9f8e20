"""Administrators run the service from the browser: a dashboard in words and numbers,
lists made and deleted, accounts made, changed and deleted (never the last
administrator), password links and forgotten passwords, API tokens revoked; moderators
see a held post's text and attachments before they decide."""

from __future__ import annotations

import email
import hashlib
import html
import os
import re
from datetime import timedelta
from email.message import EmailMessage
from email.policy import default

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from archiver import ledger
from archiver.accounts import ApiToken, User, add_user, find_user, new_api_token
from archiver.archive import RawMessage
from archiver.core import Core
from archiver.models import Message, utcnow
from lists.models import HeldMessage, MailingList, Member, OutboxMessage, OutboxRecipient
from lists.posting import hold, parse
from lists.wording import LISTS
from tests.test_accounts import PASSWORD, arsip, csrf_field, log_in
from tests.test_admin_cli import archived_ids, audit_entries, file_into_list, post
from web import create_app
from web.html_frame import FRAME_SCRIPT

ADMIN = "root@example.org"
OTHER_ADMIN = "second@example.org"
USER = "ann@example.org"
DOMAIN = "lists.example.com"


@pytest.fixture
def app(core: Core) -> Flask:
    """The web UI with an administrator and a user."""
    with core.sessions.begin() as session:
        add_user(session, ADMIN, "admin", PASSWORD)
        add_user(session, USER, "user", PASSWORD)
    return create_app(core)


def browser(app: Flask, who: str = ADMIN, language: str = "en") -> FlaskClient:
    client = app.test_client()
    client.environ_base["HTTP_ACCEPT_LANGUAGE"] = language
    assert log_in(client, who, PASSWORD).status_code == 302
    return client


def send(client: FlaskClient, page: str, target: str, **form: str):
    """Open `page` and send a form of it to `target` with the page's CSRF token."""
    token = csrf_field(client.get(page).get_data(as_text=True))
    return client.post(target, data={"csrf_token": token, **form})


def text(answer) -> str:
    """The page as a reader sees its words (entities such as &#39; decoded)."""
    return html.unescape(answer.get_data(as_text=True))


def notices_to(core: Core, address: str) -> list[EmailMessage]:
    """The notices queued in the outbox for `address`, oldest first."""
    with core.sessions() as session:
        rows = session.scalars(
            select(OutboxMessage.data)
            .join(OutboxRecipient, OutboxRecipient.message_id == OutboxMessage.id)
            .where(OutboxRecipient.address == address, OutboxMessage.kind == "notice")
            .order_by(OutboxMessage.id)
        )
        return [email.message_from_bytes(data, policy=default) for data in rows]  # type: ignore[misc]


def reset_path(mail: EmailMessage) -> str:
    body = mail.get_body().get_content()  # type: ignore[union-attr]
    found = re.search(r"http://[^/\s]+(/account/reset-password/\S+)", body)
    assert found, body
    return found.group(1)


def test_the_dashboard_says_its_figures_in_words_and_the_readers_number_format(
    app: Flask, core: Core
) -> None:
    bulky = EmailMessage()
    bulky["From"], bulky["To"], bulky["Subject"] = "a@example.com", "b@example.com", "Scan"
    bulky["Message-ID"] = "<bulky@example.com>"
    bulky.set_content("The scan is attached.")
    bulky.add_attachment(os.urandom(1_500_000), maintype="application", subtype="octet-stream")
    with core.sessions.begin() as session:
        core.archive.archive_batch(
            session, [RawMessage(bulky.as_bytes(), "", [], utcnow(), "import")]
        )
        now = utcnow()
        hashes = [hashlib.sha256(str(n).encode()).hexdigest() for n in range(1234)]
        ledger.record(session, [(now - timedelta(minutes=5), h) for h in hashes])
    page = text(browser(app).get("/admin/"))
    assert "Messages archived" in page and "Storage used" in page
    assert re.search(r'class="value">1\.\d MB<', page)  # stored, compressed or not
    assert re.search(r"of 2\.\d MB as received", page)  # base64 takes a third more
    assert 'class="value">1,234<' in page  # taken in during the last hour
    for words in ("Deliveries, last hour", "Waiting to be delivered", "Index lag",
                  "Last retention sweep", "next run", "Spam and virus checks"):  # fmt: skip
        assert words in page
    assert "blobs_bytes_raw" not in page
    indonesian = text(browser(app, language="id").get("/admin/"))
    assert 'class="value">1.234<' in indonesian and re.search(r'class="value">1,\d MB<', indonesian)


def test_an_admin_creates_a_list_from_the_web_as_the_command_line_would(
    app: Flask, core: Core
) -> None:
    admin = browser(app)
    address = f"team@{DOMAIN}"
    made = send(admin, "/admin/lists/new", "/admin/lists/new", address="Team@" + DOMAIN,
                owners=f"{USER}\n{ADMIN}", subscription="moderate", posting="members",
                archive="private", description="The team")  # fmt: skip
    assert made.status_code == 302 and made.location == f"/lists/{address}/settings"
    assert f"Created the list {address}." in text(admin.get(made.location))
    with core.sessions() as session:
        mlist = session.scalars(select(MailingList)).one()
        assert (mlist.address, mlist.subscription, mlist.archive) == (
            address,
            "moderate",
            "private",
        )
        owners = session.scalars(select(Member.address).where(Member.role == "owner"))
        assert sorted(owners) == [USER, ADMIN]
    assert audit_entries(core, "list.create")[0].actor == ADMIN

    again = send(admin, "/admin/lists/new", "/admin/lists/new", address=address, owners="")
    assert again.status_code == 400 and f"The list {address} exists already." in text(again)
    for field, value, said in [
        ("address", "team-request@" + DOMAIN, "Give NAME@DOMAIN"),
        ("owners", "ann@example.org, eve@example.net", "give exactly one address"),
        ("archive", "everywhere", "is not a choice for archive"),
    ]:
        form = {"address": f"other@{DOMAIN}", "owners": USER, "archive": "public", field: value}
        refused = send(admin, "/admin/lists/new", "/admin/lists/new", **form)
        assert refused.status_code == 400 and said in text(refused)
    assert browser(app, USER).get("/admin/lists/new").status_code == 404


def test_deleting_a_list_asks_first_and_a_purge_spares_mail_under_a_legal_hold(
    app: Flask, core: Core
) -> None:
    address = f"gone@{DOMAIN}"
    assert arsip(core, "lists", "create", address, "--owner", USER).returncode == 0
    file_into_list(core, address, post(address, "p1@example.com"),
                   post(address, "p2@example.com", sender="dave@example.com"))  # fmt: skip
    hold_made = arsip(core, "hold", "add", "--name", "lawsuit", "--reason", "Dave v. Co",
                      "--custodian", "dave@example.com")  # fmt: skip
    assert hold_made.returncode == 0, hold_made.stderr
    admin = browser(app)
    page = f"/admin/lists/{address}/delete"
    asked = text(admin.get(page))
    assert "1 member, owner or moderator" in asked and "2 archived messages" in asked
    wrong = send(admin, page, page, confirm="other@" + DOMAIN, purge="1")
    assert wrong.status_code == 400 and "Type the list's address to confirm." in text(wrong)
    assert archived_ids(core, address) == {"p1@example.com", "p2@example.com"}

    done = send(admin, page, page, confirm=address, purge="1")
    assert done.status_code == 302 and done.location == "/admin/"
    said = text(admin.get("/admin/"))
    assert f"Deleted the list {address}." in said and "1 archived message purged." in said
    assert "1 kept under a legal hold." in said
    assert archived_ids(core, address) == {"p2@example.com"}
    (entry,) = audit_entries(core, "list.delete")
    assert entry.actor == ADMIN and entry.details["purge"]["per_hold"] == {"lawsuit": 1}
    assert admin.get(page).status_code == 404


def test_a_new_account_sets_its_password_through_the_mailed_link(app: Flask, core: Core) -> None:
    admin = browser(app)
    newcomer = "newcomer@example.org"
    made = send(
        admin, "/admin/accounts", "/admin/accounts", email=newcomer, role="auditor", mail="1"
    )
    assert made.status_code == 200 and f"{newcomer} gets a mail with a link" in text(made)
    (mail,) = notices_to(core, newcomer)
    assert mail["Subject"] == "Set your password for Arsip"

    visitor = app.test_client()
    path = reset_path(mail)
    assert "Set a new password for newcomer@example.org" in text(visitor.get(path))
    token = csrf_field(text(visitor.get(path)))
    differ = visitor.post(path, data={"csrf_token": token, "password": "a b c", "repeat": "abc"})
    assert differ.status_code == 400 and "The two passwords differ." in text(differ)
    empty = visitor.post(path, data={"csrf_token": token, "password": "", "repeat": ""})
    assert empty.status_code == 400
    done = visitor.post(
        path, data={"csrf_token": token, "password": "new pass", "repeat": "new pass"}
    )
    assert done.status_code == 302 and done.location == "/login"
    assert log_in(visitor, newcomer, "new pass").status_code == 302
    assert visitor.get(path).status_code == 404  # it worked once
    with core.sessions() as session:
        assert find_user(session, newcomer).role == "auditor"  # type: ignore[union-attr]

    # Not mailed: the page shows the link to hand over.
    shown = send(
        admin, "/admin/accounts", "/admin/accounts", email="quiet@example.org", role="user"
    )
    link = re.search(r'class="copy-link" readonly value="([^"]+)"', text(shown))
    assert link and "/account/reset-password/" in link.group(1)
    assert notices_to(core, "quiet@example.org") == []
    taken = send(admin, "/admin/accounts", "/admin/accounts", email=newcomer, role="user")
    assert taken.status_code == 400 and "exists already" in text(taken)


def test_forgot_password_mails_a_link_and_tells_nobody_which_accounts_exist(
    app: Flask, core: Core
) -> None:
    visitor = app.test_client()
    assert "/account/forgot-password" in text(visitor.get("/login"))
    page = "/account/forgot-password"
    known = send(visitor, page, page, email=USER.upper())
    unknown = send(visitor, page, page, email="nobody@example.org")
    assert known.status_code == unknown.status_code == 200
    assert text(known).replace(USER, "X") == text(unknown).replace("nobody@example.org", "X")
    assert notices_to(core, "nobody@example.org") == []
    (mail,) = notices_to(core, USER)

    signed_in = browser(app, USER)
    path = reset_path(mail)
    token = csrf_field(text(visitor.get(path)))
    visitor.post(path, data={"csrf_token": token, "password": "fresh one", "repeat": "fresh one"})
    assert signed_in.get("/account").status_code != 200  # every session ended
    assert log_in(app.test_client(), USER, PASSWORD).status_code == 401
    assert log_in(app.test_client(), USER, "fresh one").status_code == 302

    # A few mails an address an hour, then quietly none; then the client itself waits.
    for _ in range(4):
        assert send(visitor, page, page, email=USER).status_code == 200
    assert len(notices_to(core, USER)) == 3
    for _ in range(5):
        last = send(visitor, page, page, email="someone@example.org")
    assert last.status_code == 429


def test_roles_change_but_never_leave_the_service_without_an_administrator(
    app: Flask, core: Core
) -> None:
    admin = browser(app)
    with core.sessions() as session:
        me = find_user(session, ADMIN).id  # type: ignore[union-attr]
        ann = find_user(session, USER).id  # type: ignore[union-attr]
    for path in (f"/admin/accounts/{me}/role",):
        refused = send(admin, f"/admin/accounts/{me}", path, role="user")
        assert refused.status_code == 400 and "last enabled administrator" in text(refused)
    own = f"/admin/accounts/{me}"
    for action in ("disable", "delete"):
        refused = send(admin, own, f"{own}/{action}")
        assert refused.status_code == 400 and "your own account" in text(refused)
    promoted = send(admin, f"/admin/accounts/{ann}", f"/admin/accounts/{ann}/role", role="admin")
    assert promoted.status_code == 302
    assert "The role is now administrator." in text(admin.get(promoted.location))
    assert [e.details for e in audit_entries(core, "user.role")] == [
        {"before": "user", "after": "admin"}
    ]
    # With a second administrator, the first may step down (and leaves the admin pages).
    stepped = send(admin, own, f"{own}/role", role="auditor")
    assert stepped.status_code == 302 and stepped.location == "/account"
    assert admin.get("/admin/").status_code == 404


def test_an_admin_disables_enables_and_deletes_an_account(app: Flask, core: Core) -> None:
    admin = browser(app)
    ann_browser = browser(app, USER)
    with core.sessions() as session:
        ann = find_user(session, USER).id  # type: ignore[union-attr]
    page = f"/admin/accounts/{ann}"
    assert send(admin, page, f"{page}/disable").status_code == 302
    assert ann_browser.get("/account").status_code == 302  # its session ended
    assert log_in(app.test_client(), USER, PASSWORD).status_code == 401
    refused = send(admin, page, f"{page}/reset-link")
    assert refused.status_code == 400 and "Enable the account first." in text(refused)
    assert send(admin, page, f"{page}/enable").status_code == 302
    assert log_in(app.test_client(), USER, PASSWORD).status_code == 302
    asked = text(admin.get(f"{page}/delete"))
    assert "Deleting an account cannot be undone." in asked
    assert send(admin, f"{page}/delete", f"{page}/delete").status_code == 302
    with core.sessions() as session:
        assert find_user(session, USER) is None
    actions = [e.action for e in audit_entries(core, "user.delete")]
    assert actions == ["user.delete"]
    assert [e.target for e in audit_entries(core, "user.disable")] == [USER]


def test_api_tokens_are_revoked_by_their_owner_or_an_admin(app: Flask, core: Core) -> None:
    with core.sessions.begin() as session:
        ann = find_user(session, USER)
        root = find_user(session, ADMIN)
        assert ann is not None and root is not None
        for owner in (ann, ann, root):
            new_api_token(session, owner)
        first_id, second_id, admins_id = session.scalars(select(ApiToken.id).order_by(ApiToken.id))
        ann_id = ann.id
    user = browser(app, USER)
    page = text(user.get("/account"))
    assert f"Revoke token {first_id}" in page and f"Revoke token {admins_id}" not in page
    assert send(user, "/account", f"/account/tokens/{first_id}/revoke").status_code == 302
    assert send(user, "/account", f"/account/tokens/{admins_id}/revoke").status_code == 404
    admin = browser(app)
    detail = f"/admin/accounts/{ann_id}"
    revoked = send(admin, detail, f"{detail}/tokens/{second_id}/revoke")
    assert revoked.status_code == 302
    with core.sessions() as session:
        assert session.scalars(select(ApiToken.id)).all() == [admins_id]
    assert [e.details for e in audit_entries(core, "user.token.revoke")] == [
        {"id": first_id},
        {"id": second_id},
    ]


def test_every_new_form_refuses_a_post_without_its_token(app: Flask, core: Core) -> None:
    assert arsip(core, "lists", "create", f"dev@{DOMAIN}").returncode == 0
    with core.sessions.begin() as session:
        ann = find_user(session, USER)
        assert ann is not None
        new_api_token(session, ann)
        token_id = session.scalars(select(ApiToken.id)).one()
        ann_id = ann.id
    admin = browser(app)
    admin.get("/admin/")  # a session with a token, which the posts below leave out
    for path in [
        "/admin/lists/new",
        f"/admin/lists/dev@{DOMAIN}/delete",
        "/admin/accounts",
        *(f"/admin/accounts/{ann_id}/{what}" for what in
          ("role", "disable", "enable", "reset-link", "delete", f"tokens/{token_id}/revoke")),
        f"/account/tokens/{token_id}/revoke",
        "/account/forgot-password",
        "/account/reset-password/anything",
    ]:  # fmt: skip
        answer = admin.post(path, data={"role": "admin", "email": "x@example.org"})
        assert answer.status_code == 400 and "This form has expired" in text(answer), path
    with core.sessions() as session:
        assert session.get(User, ann_id).role == "user"  # type: ignore[union-attr]
        assert session.scalars(select(MailingList.name)).all() == ["dev"]


HELD = (
    "From: Stranger <stranger@example.net>\r\nTo: dev@lists.example.com\r\n"
    "Subject: Offer\r\nMessage-ID: <offer@example.net>\r\nMIME-Version: 1.0\r\n"
    'Content-Type: multipart/mixed; boundary="b1"\r\n\r\n'
    '--b1\r\nContent-Type: multipart/alternative; boundary="b2"\r\n\r\n'
    "--b2\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nPlease see the price list.\r\n"
    "--b2\r\nContent-Type: text/html; charset=utf-8\r\n\r\n"
    "<p>Please see the <b>price list</b>.</p><script>alert(1)</script>"
    '<img src="https://tracker.example/p.png">\r\n--b2--\r\n'
    '--b1\r\nContent-Type: text/csv; name="prices.csv"\r\n'
    'Content-Disposition: attachment; filename="prices.csv"\r\n\r\nitem,price\r\nx,1\r\n'
    "--b1--\r\n"
)


def test_a_moderator_sees_a_held_posts_text_and_attachments_before_deciding(
    app: Flask, core: Core
) -> None:
    address = f"dev@{DOMAIN}"
    assert arsip(core, "lists", "create", address, "--owner", USER).returncode == 0
    with core.sessions.begin() as session:
        mlist = session.scalars(select(MailingList)).one()
        mlist.dmarc = "never"  # approving asks no DNS server in the tests
        data = HELD.encode()
        reason = LISTS.lazy_gettext("Not a member.")
        held = hold(session, mlist, data, parse(data), "stranger@example.net", reason)
        held_id = held.id
    owner = browser(app, USER)
    page = owner.get(f"/lists/{address}/held")
    body = text(page)
    assert "Please see the price list." in body and "prices.csv" in body and "text/csv" in body
    assert "frame-src 'self'" in page.headers["Content-Security-Policy"]
    frame = owner.get(f"/lists/{address}/held/{held_id}/html")
    assert "sandbox" in frame.headers["Content-Security-Policy"]
    # the mail's own markup, and of scripts only the frame's height script
    assert "<b>price list</b>" in text(frame)
    assert re.findall(r"<script[^>]*>(.*?)</script>", text(frame), re.S) == [FRAME_SCRIPT]
    assert "tracker.example" not in text(frame)
    attachment = owner.get(f"/lists/{address}/held/{held_id}/attachments/0")
    assert attachment.data.replace(b"\r\n", b"\n") == b"item,price\nx,1"
    assert attachment.headers["Content-Type"] == "application/octet-stream"
    assert attachment.headers["Content-Disposition"] == 'attachment; filename="prices.csv"'
    assert "sandbox" in attachment.headers["Content-Security-Policy"]
    assert owner.get(f"/lists/{address}/held/{held_id}/attachments/1").status_code == 404
    # Not for anyone but the list's owners and moderators.
    assert (
        browser(app, ADMIN).get(f"/lists/{address}/held/{held_id}/attachments/0").status_code == 200
    )
    stranger = app.test_client()
    assert stranger.get(f"/lists/{address}/held/{held_id}/html").status_code == 302
    with core.sessions.begin() as session:
        add_user(session, "zed@example.org", "user", PASSWORD)
    zed = browser(app, "zed@example.org")
    assert zed.get(f"/lists/{address}/held/{held_id}/attachments/0").status_code == 404

    # The list's own page leads its owner to the held post.
    assert f"/lists/{address}/held" in text(owner.get(f"/lists/{address}/"))
    assert f"/lists/{address}/held" not in text(zed.get(f"/lists/{address}/"))
    approved = send(owner, f"/lists/{address}/held", f"/lists/{address}/held/{held_id}",
                    action="approve")  # fmt: skip
    assert approved.status_code == 302
    with core.sessions() as session:
        assert session.get(HeldMessage, held_id) is None
        assert session.scalars(select(Message.message_id)).all() == ["offer@example.net"]
