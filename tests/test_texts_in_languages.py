"""What the core and the list engine say, a page says in its reader's language: a query's
syntax error, what a retention policy covers, a refused list setting, a confirmation's
outcome and why a post is held. The command line says the same in English, and a list's
mail stays in the list's language."""

from __future__ import annotations

import html
import json
from collections.abc import Iterator

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

import web.search
from archiver.accounts import add_user
from archiver.core import Core
from archiver.languages import CORE, Text
from lists.membership import Membership
from lists.models import HeldMessage, MailingList, Member, OutboxMessage, Pending
from lists.posting import hold, parse
from lists.rules import Post, decide
from lists.wording import LISTS
from tests.support import simple_message
from tests.test_accounts import PASSWORD, arsip, csrf_field, log_in
from web import create_app

DOMAIN = "lists.example.com"
LIST = f"board@{DOMAIN}"
OWNER = "olga@example.org"
ADMIN = "root@example.org"
OUTSIDER = "outsider@example.net"
JOINER = "ann@example.org"
INDONESIAN = {"Accept-Language": "id-ID,id;q=0.9,en;q=0.5"}
OLD_REASON = "the sender is not a member of the list (held before reasons were kept as texts)"


@pytest.fixture
def app(core: Core) -> Iterator[Flask]:
    """The web UI over an English list board@ with its owner, a post the list's rules held
    and one held the old way (its reason in English only), and an administrator."""
    with core.sessions.begin() as session:
        mlist = MailingList(name="board", domain=DOMAIN, archive="private", language="en")
        session.add(mlist)
        session.flush()
        session.add(Member(list_id=mlist.id, address=OWNER, role="owner"))
        data = simple_message("held1@x", subject="Buy now", sender=OUTSIDER, to=LIST)
        message = parse(data)
        post = Post(mlist, message, len(data), OUTSIDER, frozenset(), False, False)
        hold(session, mlist, data, message, OUTSIDER, decide(post).reason)
        old = HeldMessage(
            token="old", list_id=mlist.id, sender=OUTSIDER, reason=OLD_REASON, data=data
        )
        session.add(old)
        add_user(session, OWNER, "user", PASSWORD)
        add_user(session, ADMIN, "admin", PASSWORD)
    app = create_app(core)
    yield app
    app.extensions[web.search.BACKEND_KEY].close()


def indonesian(app: Flask, email: str | None = None) -> FlaskClient:
    """A browser asking for Bahasa Indonesia, logged in as `email` if given."""
    client = app.test_client()
    client.environ_base["HTTP_ACCEPT_LANGUAGE"] = INDONESIAN["Accept-Language"]
    if email:
        assert log_in(client, email, PASSWORD).status_code == 302
    return client


def text(answer) -> str:
    return html.unescape(answer.get_data(as_text=True))


def send_form(client: FlaskClient, page: str, target: str, **form: str):
    """Open `page` and send one of its forms to `target`, as a browser does."""
    token = csrf_field(client.get(page).get_data(as_text=True))
    return client.post(target, data={"csrf_token": token, **form})


def test_a_text_keeps_its_values_apart_until_it_is_said_in_a_language() -> None:
    covers = CORE.lazy_ngettext(
        "It covers %(count)s message now.", "It covers %(count)s messages now.", 1234
    )
    assert str(covers) == "It covers 1,234 messages now."
    assert covers.say("id") == "Saat ini mencakup 1.234 pesan."
    # A held post's reason goes through a JSON column and comes back whole, nested too.
    refused = LISTS.lazy_gettext(
        "%(value)s is not a choice for %(label)s.",
        value="'x'",
        label=LISTS.lazy_gettext("posting"),
    )
    stored = Text.from_json(LISTS, json.loads(json.dumps(refused.as_json())))
    assert stored == refused
    assert stored.say("id") == "'x' bukan pilihan untuk pengiriman."


def test_a_query_syntax_error_is_explained_in_indonesian(app: Flask, core: Core) -> None:
    page = indonesian(app).get("/?q=budget has:pdf")
    assert page.status_code == 400
    shown = text(page)
    assert "'has:' hanya mengenal 'attachment' atau 'virus', bukan 'pdf' pada posisi 12." in shown
    assert "only understands" not in shown
    unknown = text(indonesian(app).get("/?q=subjects:plan"))
    assert "'subjects:' bukan kolom pencarian (maksud Anda 'subject:'?)" in unknown
    assert "kolom yang ada: from:, to:, cc:, subject:" in unknown  # the fields as they are
    printed = arsip(core, "search", "budget has:pdf")
    assert printed.returncode == 2
    assert "'has:' only understands 'attachment' or 'virus', not 'pdf' at position 12" in (
        printed.stderr
    )


def test_a_saved_policys_coverage_and_warnings_are_in_indonesian(app: Flask, core: Core) -> None:
    admin = indonesian(app, ADMIN)
    form = {"name": "typo", "keep": "7y", "scope": "list:nobody@lists.example.com"}
    saved = send_form(admin, "/admin/retention", "/admin/retention/policies", **form)
    assert saved.status_code == 302
    page = text(admin.get(saved.location))
    assert "Kebijakan typo: simpan list:nobody@lists.example.com selama 7y." in page
    assert "Saat ini mencakup 0 pesan." in page
    assert "Peringatan: Cakupannya saat ini tidak cocok dengan pesan apa pun" in page
    assert "Warning" not in page and "matches no message" not in page
    refused = send_form(admin, "/admin/retention", "/admin/retention/policies", **form)
    assert refused.status_code == 400 and "kebijakan bernama 'typo' sudah ada" in text(refused)
    printed = arsip(core, "retention", "add", "--name", "other", "--keep", "1y", "--scope", "xy:z")
    assert printed.returncode == 1
    assert "scope 'xy:z': 'xy:' is not a search field" in printed.stderr
    printed = arsip(core, "retention", "add", "--name", "ok", "--keep", "1y", "--scope", "nobody")
    assert "It covers 0 messages now." in printed.stdout
    assert "warning: Its scope matches no message now" in printed.stderr


def test_a_refused_list_setting_is_explained_in_indonesian(app: Flask, core: Core) -> None:
    owner = indonesian(app, OWNER)
    page = f"/lists/{LIST}/settings"
    choices = {"subscription": "open", "posting": "members", "archive": "private"}
    limits = {"max_message_kb": "0", "max_recipients": "0"}
    scores = {"spam_hold_score": "20", "spam_discard_score": "10.5", **limits}
    refusals = [
        ({**choices, "posting": "everyone"}, "'everyone' bukan pilihan untuk pengiriman."),
        (
            {**choices, "nonmember_action": "hold", "dmarc": "auto", "reply_to": "none", **scores},
            "Skor spam untuk menahan (20) tidak boleh di atas skor untuk membuang (10,5).",
        ),
    ]
    for form, says in refusals:
        refused = send_form(owner, page, page, **form)
        assert refused.status_code == 400
        assert says in text(refused)
    printed = arsip(core, "lists", "set", LIST, "--spam-hold", "20", "--spam-discard", "10.5")
    assert printed.returncode == 2
    assert "The spam hold score (20) must not be above the discard score (10.5)." in printed.stderr


def test_a_confirmation_page_says_the_outcome_in_the_pages_language(app: Flask, core: Core) -> None:
    with core.sessions.begin() as session:
        mlist = session.scalars(select(MailingList)).one()
        Membership(core.settings.public_url).request(session, mlist, JOINER, "subscribe")
        token = session.scalars(select(Pending.token)).one()
    visitor, link = indonesian(app), f"/lists/confirm/{token}"
    form = {"csrf_token": csrf_field(visitor.get(link).get_data(as_text=True))}
    confirmed = visitor.post(link, data=form)
    assert confirmed.status_code == 200
    assert f"{JOINER} kini menjadi anggota {LIST}." in text(confirmed)
    # The list writes in English: its welcome is English whatever the page's language.
    with core.sessions() as session:
        mails = session.scalars(select(OutboxMessage.data)).all()
    assert any(b"Welcome to board@" in mail for mail in mails)
    used = visitor.post(link, data=form)
    assert used.status_code == 404 and "Tautan tidak dikenal" in text(used)  # it works once


def test_why_a_post_is_held_is_shown_in_the_moderators_language(app: Flask, core: Core) -> None:
    page = text(indonesian(app, OWNER).get(f"/lists/{LIST}/held"))
    assert '<span class="badge warn">pengirim bukan anggota milis</span>' in page
    # held before: its English, as it was stored
    assert f'<span class="badge warn">{OLD_REASON}</span>' in page
    with core.sessions() as session:
        held = session.scalars(select(HeldMessage).order_by(HeldMessage.id)).first()
        assert held is not None and held.reason == "the sender is not a member of the list"
        held_id = held.id
    owner = indonesian(app, OWNER)
    held_page = f"/lists/{LIST}/held"
    decided = send_form(owner, held_page, f"{held_page}/{held_id}", action="discard")
    assert f"Kiriman dari {OUTSIDER} dibuang." in text(owner.get(decided.location))
    printed = arsip(core, "lists", "held", LIST)
    assert f"({OLD_REASON})" in printed.stdout
