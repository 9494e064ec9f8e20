"""Running lists in the browser: moderators decide on held posts, owners manage members,
bans and settings, administrators see the whole service; everyone else finds nothing."""

from __future__ import annotations

import html

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from archiver.accounts import add_user
from archiver.core import Core
from lists.models import (
    Ban,
    HeldMessage,
    MailingList,
    Member,
    OutboxMessage,
    OutboxRecipient,
    Pending,
)
from lists.posting import hold, parse
from lists.wording import LISTS
from tests.support import simple_message
from tests.test_accounts import PASSWORD, arsip, csrf_field, log_in
from web import create_app

DOMAIN = "lists.example.com"
LIST = f"board@{DOMAIN}"
OWNER = "olga@example.org"
MODERATOR = "mo@example.org"
MEMBER = "mem@example.org"
STRANGER = "zed@example.org"
ADMIN = "root@example.org"
OUTSIDER = "outsider@example.net"
# Why the nonmember rule holds a post (`lists/rules/nonmember.py`).
NOT_A_MEMBER = LISTS.lazy_gettext("the sender is not a member of the list")


@pytest.fixture
def app(core: Core) -> Flask:
    """A private list board@ with an owner, a moderator and a member, one post held from an
    outsider, and accounts for each of them plus a stranger and an administrator."""
    with core.sessions.begin() as session:
        # DMARC "never": approving a post must not ask a DNS server in the tests.
        mlist = MailingList(name="board", domain=DOMAIN, archive="private", dmarc="never")
        session.add(mlist)
        session.flush()
        session.add(Member(list_id=mlist.id, address=OWNER, role="owner"))
        session.add(Member(list_id=mlist.id, address=MODERATOR, role="moderator"))
        session.add(Member(list_id=mlist.id, address=MEMBER))
        data = simple_message("held1@x", subject="Buy now", sender=OUTSIDER, to=LIST)
        hold(session, mlist, data, parse(data), OUTSIDER, NOT_A_MEMBER)
        for email in (OWNER, MODERATOR, MEMBER, STRANGER):
            add_user(session, email, "user", PASSWORD)
        add_user(session, ADMIN, "admin", PASSWORD)
    return create_app(core)


def browser(app: Flask, email: str) -> FlaskClient:
    """A browser logged in as `email`."""
    client = app.test_client()
    assert log_in(client, email, PASSWORD).status_code == 302
    return client


def post_form(client: FlaskClient, page: str, target: str, **form: str):
    """Open `page` and send one of its forms to `target`, as a browser does."""
    token = csrf_field(client.get(page).get_data(as_text=True))
    return client.post(target, data={"csrf_token": token, **form})


def held_id(core: Core) -> int:
    with core.sessions() as session:
        return session.scalars(select(HeldMessage.id)).one()


def queued_to(core: Core, address: str, kind: str) -> list[bytes]:
    """The outbox messages of `kind` waiting for `address`."""
    with core.sessions() as session:
        return list(
            session.scalars(
                select(OutboxMessage.data)
                .join(OutboxRecipient, OutboxRecipient.message_id == OutboxMessage.id)
                .where(OutboxRecipient.address == address, OutboxMessage.kind == kind)
            )
        )


def test_an_owner_approves_a_held_post_and_the_members_get_it(app: Flask, core: Core) -> None:
    owner = browser(app, OWNER)
    page = owner.get(f"/lists/{LIST}/held").get_data(as_text=True)
    assert "Buy now" in page and OUTSIDER in page and "not a member" in page
    answer = post_form(
        owner, f"/lists/{LIST}/held", f"/lists/{LIST}/held/{held_id(core)}", action="approve"
    )
    assert answer.status_code == 302
    assert "approved" in owner.get(answer.location).get_data(as_text=True)
    assert queued_to(core, MEMBER, "post")
    with core.sessions() as session:
        assert session.scalar(select(HeldMessage.id)) is None


def test_a_moderator_rejects_with_a_reason_and_the_sender_is_told(app: Flask, core: Core) -> None:
    moderator = browser(app, MODERATOR)
    post_form(
        moderator,
        f"/lists/{LIST}/held",
        f"/lists/{LIST}/held/{held_id(core)}",
        action="reject",
        reason="No advertising here",
    )
    assert any(b"No advertising here" in data for data in queued_to(core, OUTSIDER, "notice"))
    assert not queued_to(core, MEMBER, "post")
    # Moderators decide on posts; the members and settings are the owners'.
    assert moderator.get(f"/lists/{LIST}/members").status_code == 404
    assert moderator.get(f"/lists/{LIST}/settings").status_code == 404


def test_strangers_find_no_management_pages(app: Flask, core: Core) -> None:
    stranger = browser(app, STRANGER)
    for page in ("held", "members", "settings"):
        assert stranger.get(f"/lists/{LIST}/{page}").status_code == 404
    token = csrf_field(stranger.get("/login").get_data(as_text=True))
    answer = stranger.post(
        f"/lists/{LIST}/held/{held_id(core)}", data={"csrf_token": token, "action": "discard"}
    )
    assert answer.status_code == 404
    answer = stranger.post(
        f"/lists/{LIST}/members/add", data={"csrf_token": token, "addresses": STRANGER}
    )
    assert answer.status_code == 404
    assert held_id(core)
    member = browser(app, MEMBER)
    assert member.get(f"/lists/{LIST}/held").status_code == 404
    assert browser(app, OWNER).get(f"/lists/nothing@{DOMAIN}/held").status_code == 404


def test_anonymous_visitors_are_sent_to_log_in(app: Flask) -> None:
    answer = app.test_client().get(f"/lists/{LIST}/members")
    assert answer.status_code == 302 and answer.location.startswith("/login?")
    assert app.test_client().get("/admin/").status_code == 302


def test_an_owner_adds_members_directly_or_invites_them(app: Flask, core: Core) -> None:
    owner = browser(app, OWNER)
    page = f"/lists/{LIST}/members"
    post_form(owner, page, f"{page}/add", addresses="a@example.org\nb@example.org", role="member")
    post_form(
        owner,
        page,
        f"{page}/add",
        addresses="c@example.org\r\nd@example.org\r\n",
        role="member",
        confirm="1",
    )
    with core.sessions() as session:
        members = set(session.scalars(select(Member.address).where(Member.role == "member")))
        pending = set(session.scalars(select(Pending.address)))
    assert {"a@example.org", "b@example.org"} <= members
    assert {"c@example.org", "d@example.org"}.isdisjoint(members)
    assert pending == {"c@example.org", "d@example.org"}
    shown = owner.get(page).get_data(as_text=True)
    assert "a@example.org" in shown and 'name="confirm" value="1" checked' in shown
    bad = post_form(owner, page, f"{page}/add", addresses="e@example.org", role="king")
    assert bad.status_code == 400


def test_an_owner_moderates_and_removes_a_member(app: Flask, core: Core) -> None:
    owner = browser(app, OWNER)
    page = f"/lists/{LIST}/members"
    post_form(owner, page, f"{page}/moderate", address=MEMBER, on="1")
    with core.sessions() as session:
        assert session.scalar(select(Member.moderated).where(Member.address == MEMBER))
    post_form(owner, page, f"{page}/moderate", address=MEMBER, on="0")
    with core.sessions() as session:
        assert not session.scalar(select(Member.moderated).where(Member.address == MEMBER))
    post_form(owner, page, f"{page}/remove", address=MEMBER)
    with core.sessions() as session:
        assert session.scalar(select(Member.id).where(Member.address == MEMBER)) is None


def test_bans_are_checked_listed_and_lifted(app: Flask, core: Core) -> None:
    owner = browser(app, OWNER)
    page = f"/lists/{LIST}/members"
    refused = post_form(owner, page, f"{page}/ban", pattern="^spam(")
    assert refused.status_code == 400
    assert "Not a pattern this service runs" in refused.get_data(as_text=True)
    # a back-reference could take exponential time: refused with the reason
    refused = post_form(owner, page, f"{page}/ban", pattern=r"^(a+)\1@")
    assert refused.status_code == 400
    assert "back-references" in refused.get_data(as_text=True)
    post_form(owner, page, f"{page}/ban", pattern="^.*@spam\\.example$")
    post_form(owner, page, f"{page}/ban", pattern="Troll@Example.org")
    with core.sessions() as session:
        bans = {ban.pattern: ban.id for ban in session.scalars(select(Ban))}
    assert set(bans) == {"^.*@spam\\.example$", "troll@example.org"}
    assert "troll@example.org" in owner.get(page).get_data(as_text=True)
    post_form(owner, page, f"{page}/unban", ban=str(bans["troll@example.org"]))
    with core.sessions() as session:
        assert set(session.scalars(select(Ban.pattern))) == {"^.*@spam\\.example$"}


def settings_form(**changes: str) -> dict[str, str]:
    form = {
        "description": "The board",
        "subscription": "closed",
        "posting": "members",
        "archive": "private",
        "nonmember_action": "hold",
        "reply_to": "list",
        "reply_to_address": "",
        "dmarc": "always",
        "subject_prefix": "[Board]",
        "footer": "Be kind.",
        "max_message_kb": "2048",
        "max_recipients": "5",
        "delivery": "bulk",
    }
    return {**form, **changes}


def test_settings_are_saved_and_bad_choices_refused(app: Flask, core: Core) -> None:
    owner = browser(app, OWNER)
    page = f"/lists/{LIST}/settings"
    assert "Who may join" in owner.get(page).get_data(as_text=True)
    saved = post_form(owner, page, page, **settings_form(emergency="1", trust_header_from="1"))
    assert saved.status_code == 302
    with core.sessions() as session:
        mlist = session.scalars(select(MailingList)).one()
        assert mlist.trust_header_from
        assert (mlist.subscription, mlist.reply_to, mlist.dmarc) == ("closed", "list", "always")
        assert (mlist.max_message_kb, mlist.max_recipients) == (2048, 5)
        assert mlist.emergency and not mlist.personalize
        assert (mlist.subject_prefix, mlist.footer, mlist.description) == (
            "[Board]",
            "Be kind.",
            "The board",
        )
    for bad in (
        {"posting": "everyone"},
        {"dmarc": "sometimes"},
        {"reply_to": "explicit"},
        {"max_recipients": "-1"},
    ):
        refused = post_form(owner, page, page, **settings_form(description="changed", **bad))
        assert refused.status_code == 400
        assert 'class="error"' in refused.get_data(as_text=True)
    with core.sessions() as session:
        assert session.scalars(select(MailingList.description)).one() == "The board"
    post_form(
        owner, page, page, **settings_form(reply_to="explicit", reply_to_address="Chair@x.org")
    )
    with core.sessions() as session:
        mlist = session.scalars(select(MailingList)).one()
        assert (mlist.reply_to, mlist.reply_to_address) == ("explicit", "chair@x.org")


def test_an_owner_chooses_the_lists_language_by_its_name(app: Flask, core: Core) -> None:
    owner = browser(app, OWNER)
    page = f"/lists/{LIST}/settings"
    form = html.unescape(owner.get(page).get_data(as_text=True))
    assert "Language of the list's mail" in form
    assert '<option value="default" selected>the service\'s default (English)</option>' in form
    assert '<option value="id">Bahasa Indonesia</option>' in form
    assert post_form(owner, page, page, **settings_form(language="id")).status_code == 302
    with core.sessions() as session:
        assert session.scalars(select(MailingList.language)).one() == "id"
    assert '<option value="id" selected>' in owner.get(page).get_data(as_text=True)
    assert post_form(owner, page, page, **settings_form(language="default")).status_code == 302
    with core.sessions() as session:
        assert session.scalars(select(MailingList.language)).one() is None
    refused = post_form(owner, page, page, **settings_form(language="fr"))
    assert refused.status_code == 400


def test_the_command_line_refuses_the_settings_the_page_refuses(app: Flask, core: Core) -> None:
    # Both check a list's settings with one schema now; `arsip lists set` used to save a
    # prefix of any length and a reply-to address with a space in it.
    long_prefix = "[" + "x" * 70 + "]"
    owner = browser(app, OWNER)
    page = f"/lists/{LIST}/settings"
    refused = post_form(owner, page, page, **settings_form(subject_prefix=long_prefix))
    assert refused.status_code == 400 and "at most 64 characters" in refused.text
    for option, says in (("--prefix", "at most 64 characters"), ("--reply-to", "replies")):
        value = long_prefix if option == "--prefix" else "chair @x.org"
        refused = arsip(core, "lists", "set", LIST, option, value)
        assert refused.returncode == 2, refused.stderr
        assert says in refused.stderr and len(refused.stderr.strip().splitlines()) == 1
    with core.sessions() as session:
        mlist = session.scalars(select(MailingList)).one()
        assert (mlist.subject_prefix, mlist.reply_to_address) == ("", "")


def test_banning_twice_leaves_one_ban_from_either_side(app: Flask, core: Core) -> None:
    # `arsip lists ban` used to add a second row for a pattern banned already.
    for _ in range(2):
        banned = arsip(core, "lists", "ban", LIST, "Troll@Example.org")
        assert banned.returncode == 0, banned.stderr
    page = f"/lists/{LIST}/members"
    post_form(browser(app, OWNER), page, f"{page}/ban", pattern="troll@example.org")
    with core.sessions() as session:
        assert list(session.scalars(select(Ban.pattern))) == ["troll@example.org"]
    assert arsip(core, "lists", "unban", LIST, "troll@example.org").returncode == 0
    assert arsip(core, "lists", "unban", LIST, "troll@example.org").returncode == 1


def test_the_admin_page_shows_figures_lists_and_accounts_to_admins_only(app: Flask) -> None:
    page = browser(app, ADMIN).get("/admin/").get_data(as_text=True)
    assert "Waiting to be archived" in page and "Waiting to be indexed" in page
    assert "spool_pending" not in page  # figures in words, not the names `arsip stats` prints
    assert LIST in page and f"/lists/{LIST}/held" in page and f"/lists/{LIST}/members" in page
    assert "5 accounts" in page and "/admin/accounts" in page
    assert STRANGER in browser(app, ADMIN).get("/admin/accounts").get_data(as_text=True)
    assert browser(app, OWNER).get("/admin/").status_code == 404
    assert browser(app, OWNER).get("/admin/accounts").status_code == 404


def test_an_admin_may_run_any_list(app: Flask, core: Core) -> None:
    admin = browser(app, ADMIN)
    for page in ("held", "members", "settings"):
        assert admin.get(f"/lists/{LIST}/{page}").status_code == 200
    post_form(admin, f"/lists/{LIST}/held", f"/lists/{LIST}/held/{held_id(core)}", action="discard")
    with core.sessions() as session:
        assert session.scalar(select(HeldMessage.id)) is None
    assert not queued_to(core, MEMBER, "post")


def test_every_form_needs_its_csrf_token(app: Flask, core: Core) -> None:
    owner = browser(app, OWNER)
    base = f"/lists/{LIST}"
    for action, form in (
        (f"{base}/held/{held_id(core)}", {"action": "approve"}),
        (f"{base}/members/add", {"addresses": "x@example.org", "confirm": ""}),
        (f"{base}/members/remove", {"address": MEMBER}),
        (f"{base}/members/moderate", {"address": MEMBER, "on": "1"}),
        (f"{base}/members/ban", {"pattern": "x@example.org"}),
        (f"{base}/members/unban", {"ban": "1"}),
        (f"{base}/settings", settings_form()),
    ):
        assert owner.post(action, data=form).status_code == 400, action
    assert held_id(core)
    with core.sessions() as session:
        assert session.scalar(select(Member.id).where(Member.address == MEMBER))
        assert session.scalar(select(Ban.id)) is None


def test_a_notice_shows_once_after_a_change_and_never_comes_from_a_link(app: Flask) -> None:
    owner = browser(app, OWNER)
    page = f"/lists/{LIST}/settings"
    saved = post_form(owner, page, page, **settings_form())
    assert saved.status_code == 302 and "notice" not in saved.location
    assert '<p class="notice" role="status">Saved.</p>' in owner.get(saved.location).text
    assert "Saved." not in owner.get(page).text
    # A crafted link cannot put words in the status box ("Your account is locked, call").
    for spoofed in (page, f"/lists/{LIST}/members", f"/lists/{LIST}/held", f"/lists/{LIST}/"):
        shown = owner.get(f"{spoofed}?notice=Call+555")
        assert shown.status_code == 200 and "Call 555" not in shown.text, spoofed
    assert "Call 555" not in owner.get("/account?notice=Call+555").text
