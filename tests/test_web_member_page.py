"""A member's own settings page without an account: asking for the signed link on the
list's page, choosing a digest or no mail through it, and leaving.

The request form must not tell who is subscribed, must not let anyone flood a mailbox,
and a link that was changed, forged, is for another list or has expired opens nothing.
"""

from __future__ import annotations

import base64
import re
import time
from email import message_from_bytes
from email.policy import default

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from archiver.core import Core
from lists.membership import Membership, has_role
from lists.models import (
    ArchivePolicy,
    Delivery,
    MailingList,
    Member,
    OutboxMessage,
    OutboxRecipient,
    Pending,
)
from lists.tokens import member_token, read_member_token, sign, unsign
from tests.test_accounts import csrf_field
from web import create_app
from web.account import make_token, read_token

LIST = "dev@lists.example.com"
BOB = "bob@example.net"


@pytest.fixture
def app(core: Core) -> Flask:
    """The web UI over a public list dev@ whose member is bob@example.net, and a list
    board@ with a private archive whose member is carl@example.net."""
    with core.sessions.begin() as session:
        dev = MailingList(name="dev", domain="lists.example.com", display_name="dev")
        board = MailingList(name="board", domain="lists.example.com", archive=ArchivePolicy.PRIVATE)
        session.add_all([dev, board])
        session.flush()
        session.add(Member(list_id=dev.id, address=BOB, role="member"))
        session.add(Member(list_id=board.id, address="carl@example.net", role="member"))
    return create_app(core)


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    """A browser without an account: it keeps the session cookie between requests."""
    return app.test_client()


def ask_for_link(
    client: FlaskClient, address: str, list_address: str = LIST, remote: str = "127.0.0.1"
):
    """Fill in the list page's "manage your subscription" form, as a browser at `remote` does."""
    page = client.get(f"/lists/{list_address}/member").get_data(as_text=True)
    return client.post(
        f"/lists/{list_address}/member",
        data={"csrf_token": csrf_field(page), "email": address},
        environ_base={"REMOTE_ADDR": remote},
    )


def mails_to(core: Core, address: str) -> list[bytes]:
    """Every message queued to `address`, oldest first."""
    with core.sessions() as session:
        return list(
            session.scalars(
                select(OutboxMessage.data)
                .join(OutboxRecipient, OutboxRecipient.message_id == OutboxMessage.id)
                .where(OutboxRecipient.address == address)
                .order_by(OutboxMessage.id)
            )
        )


def settings_links(core: Core, address: str) -> list[str]:
    """The paths of the settings links mailed to `address`."""
    found = []
    for data in mails_to(core, address):
        match = re.search(rb"https?://[^/\s]+(/lists/[^/\s]+/member/[A-Za-z0-9_\-.]+)", data)
        if match:
            found.append(match.group(1).decode())
    return found


def member(core: Core, address: str = BOB) -> Member | None:
    with core.sessions() as session:
        return session.scalar(select(Member).where(Member.address == address))


def test_a_member_without_an_account_changes_delivery_and_leaves(
    core: Core, client: FlaskClient
) -> None:
    list_page = client.get(f"/lists/{LIST}/").get_data(as_text=True)
    assert "Manage your subscription" in list_page
    assert f'action="/lists/{LIST}/member"' in list_page
    answer = client.post(
        f"/lists/{LIST}/member",
        data={"csrf_token": csrf_field(list_page), "email": "Bob@Example.net"},
    )
    assert answer.status_code == 200
    assert "Check your mail" in answer.text

    [data] = mails_to(core, BOB)
    mail = message_from_bytes(data, policy=default)
    assert mail["Subject"] == f"Your settings on {LIST}"
    assert mail["Auto-Submitted"] == "auto-replied"
    assert mail["Content-Transfer-Encoding"] == "7bit"  # the link stays whole on its line
    [link] = settings_links(core, BOB)
    assert link.startswith(f"/lists/{LIST}/member/")

    page = client.get(link)
    assert page.status_code == 200
    assert page.headers["Cache-Control"] == "no-store"
    assert f"Your settings on {LIST}" in page.text
    assert 'value="regular" checked' in page.text
    assert "Unsubscribe bob@example.net from dev@lists.example.com" in page.text
    found = member(core)
    assert found is not None and found.delivery == Delivery.REGULAR  # opening changes nothing

    token = csrf_field(page.text)
    saved = client.post(
        link, data={"csrf_token": token, "delivery": "plain_digest", "display_name": " Bob  B. "}
    )
    assert saved.status_code == 303
    found = member(core)
    assert found is not None
    assert (found.delivery, found.display_name) == (Delivery.PLAIN_DIGEST, "Bob B.")
    shown = client.get(saved.headers["Location"]).text
    assert "Saved" in shown and 'value="plain_digest" checked' in shown

    client.post(link, data={"csrf_token": token, "delivery": "nomail"})
    found = member(core)
    assert found is not None and found.delivery == Delivery.NOMAIL

    left = client.post(f"{link}/leave", data={"csrf_token": token})
    assert left.status_code == 200
    assert "bob@example.net has left dev@lists.example.com" in left.text
    assert member(core) is None
    assert b"You have left" in mails_to(core, BOB)[-1]  # the usual goodbye notice

    gone = client.get(link)
    assert gone.status_code == 404
    assert "Not a member" in gone.text


def test_the_answer_is_the_same_for_members_strangers_and_unknown_lists(
    core: Core, client: FlaskClient
) -> None:
    for_member = ask_for_link(client, BOB)
    for_stranger = ask_for_link(client, "eve@example.net")
    unknown_list = ask_for_link(client, BOB, "nothing@lists.example.com")
    assert for_member.status_code == for_stranger.status_code == unknown_list.status_code == 200
    assert for_member.text == for_stranger.text.replace("eve@example.net", BOB)
    assert for_member.text == unknown_list.text.replace("nothing@lists.example.com", LIST)
    assert mails_to(core, "eve@example.net") == []
    assert len(mails_to(core, BOB)) == 1


def test_members_of_a_list_with_a_private_archive_get_a_link_too(
    core: Core, client: FlaskClient
) -> None:
    assert client.get("/lists/board@lists.example.com/").status_code == 404
    assert ask_for_link(client, "carl@example.net", "board@lists.example.com").status_code == 200
    [link] = settings_links(core, "carl@example.net")
    assert client.get(link).status_code == 200


def test_a_changed_forged_or_expired_link_opens_nothing(core: Core, client: FlaskClient) -> None:
    ask_for_link(client, BOB)
    [link] = settings_links(core, BOB)
    key = core.settings.signing_key()
    later = int(time.time()) + 3600
    base = f"/lists/{LIST}/member"
    tampered = link[:-3] + ("AAA" if not link.endswith("AAA") else "BBB")
    expired = f"{base}/{member_token(key, LIST, BOB, int(time.time()) - 1)}"
    forged = f"{base}/{member_token('not the key', LIST, BOB, later)}"
    other_list = f"{base}/{member_token(key, 'board@lists.example.com', BOB, later)}"
    other_kind = f"{base}/{make_token(key, 1, BOB, later)}"  # an account's verification link
    csrf = csrf_field(client.get(link).text)
    for path in (tampered, expired, forged, other_list, other_kind, f"{base}/garbage", base + "/é"):
        page = client.get(path)
        assert page.status_code == 404, path
        assert "Unknown or expired link" in page.text
        assert "Traceback" not in page.text
        posted = client.post(path, data={"csrf_token": csrf, "delivery": "nomail"})
        assert posted.status_code == 404, path
        assert client.post(f"{path}/leave", data={"csrf_token": csrf}).status_code == 404
    found = member(core)
    assert found is not None and found.delivery == Delivery.REGULAR


def test_a_link_for_a_list_that_is_gone_says_so(core: Core, client: FlaskClient) -> None:
    ask_for_link(client, BOB)
    [link] = settings_links(core, BOB)
    with core.sessions.begin() as session:
        mlist = session.scalars(select(MailingList).where(MailingList.name == "dev")).one()
        session.delete(mlist)
    page = client.get(link)
    assert page.status_code == 404
    assert "No such list" in page.text


def test_asking_too_often_mails_no_more_and_a_busy_client_is_slowed_down(
    core: Core, client: FlaskClient
) -> None:
    # Another web process (another app over the same database) shares the counts.
    elsewhere = create_app(core).test_client()
    answers = [ask_for_link(browser, BOB) for browser in (client, client, elsewhere, elsewhere)]
    assert all(answer.status_code == 200 for answer in answers)
    assert answers[3].text == answers[0].text  # the limit tells nobody anything either
    assert len(mails_to(core, BOB)) == 3

    busy = "192.0.2.7"
    for number in range(10):
        assert ask_for_link(client, f"someone{number}@example.net", remote=busy).status_code == 200
    refused = ask_for_link(client, "carl@example.net", "board@lists.example.com", busy)
    assert refused.status_code == 429
    assert "try again later" in refused.text
    assert mails_to(core, "carl@example.net") == []


def test_the_forms_need_the_csrf_token_and_valid_values(core: Core, client: FlaskClient) -> None:
    assert client.post(f"/lists/{LIST}/member", data={"email": BOB}).status_code == 400
    assert mails_to(core, BOB) == []
    bad = ask_for_link(client, "not an address")
    assert bad.status_code == 400
    assert "Give exactly one address" in bad.text

    ask_for_link(client, BOB)
    [link] = settings_links(core, BOB)
    page = client.get(link).text
    assert client.post(link, data={"delivery": "nomail"}).status_code == 400
    assert client.post(f"{link}/leave").status_code == 400
    unknown = client.post(link, data={"csrf_token": csrf_field(page), "delivery": "weekly"})
    assert unknown.status_code == 400
    assert "Unknown delivery mode" in unknown.text
    long_name = client.post(
        link, data={"csrf_token": csrf_field(page), "delivery": "nomail", "display_name": "x" * 300}
    )
    assert long_name.status_code == 400
    found = member(core)
    assert found is not None and (found.delivery, found.display_name) == (Delivery.REGULAR, "")
    assert has_role_now(core, BOB)


def has_role_now(core: Core, address: str) -> bool:
    with core.sessions() as session:
        mlist = session.scalars(select(MailingList).where(MailingList.name == "dev")).one()
        return has_role(session, mlist, address, "member")


def test_the_welcome_mail_names_the_page_that_sends_the_link(core: Core, app: Flask) -> None:
    membership = Membership(core.settings.public_url)
    with core.sessions.begin() as session:
        mlist = session.scalars(select(MailingList).where(MailingList.name == "dev")).one()
        membership.request(session, mlist, "new@example.net", "subscribe")
        token = session.scalars(select(Pending.token)).one()
        membership.confirm_link(session, token)
    welcome = mails_to(core, "new@example.net")[-1]
    assert b"Welcome to dev@lists.example.com" in welcome
    page = f"{core.settings.public_url}/lists/{LIST}/member".encode()
    assert page + b"\n" in welcome.replace(b"\r\n", b"\n")
    assert settings_links(core, "new@example.net") == []  # no long-lived signed link
    assert app.test_client().get(f"/lists/{LIST}/member").status_code == 200


# Made by the hand-written signing code of earlier releases, with the key "fixed test key",
# valid until 1_800_000_000 (2027-01-15): links of this kind are in mailboxes today.
OLD_MEMBER_TOKEN = (
    "WyJkZXZAbGlzdHMuZXhhbXBsZS5jb20iLCJib2JAZXhhbXBsZS5uZXQiLDE4MDAwMDAwMDBd"
    ".iJvTZkrr3maPH8iFFt5cBNAuK8bYhsyr"
)
OLD_VERIFY_TOKEN = (
    "WyI0MiIsImFubkBleGFtcGxlLm9yZyIsMTgwMDAwMDAwMF0.qzIJ5TjcrrU_QGdC0HiKAi8jFWDlQI60"
)


def test_links_mailed_before_the_upgrade_open_until_they_expire() -> None:
    before = 1_799_999_000
    assert read_member_token("fixed test key", OLD_MEMBER_TOKEN, now=before) == (LIST, BOB)
    assert read_token("fixed test key", OLD_VERIFY_TOKEN, now=before) == (42, "ann@example.org")

    assert read_member_token("fixed test key", OLD_MEMBER_TOKEN, now=1_800_000_000) is None
    assert read_member_token("another key", OLD_MEMBER_TOKEN, now=before) is None
    assert unsign("fixed test key", "verify-address", OLD_MEMBER_TOKEN, now=before) is None
    later = base64.urlsafe_b64encode(f'["{LIST}","{BOB}",1900000000]'.encode()).rstrip(b"=")
    changed = f"{later.decode()}.{OLD_MEMBER_TOKEN.split('.')[1]}"  # its expiry moved on
    assert read_member_token("fixed test key", changed, now=1_850_000_000) is None


def test_signed_tokens_carry_their_fields_for_one_purpose_only() -> None:
    token = sign("key", "one", ("a:b", "c@d"), int(time.time()) + 60)
    assert unsign("key", "one", token) == ("a:b", "c@d")
    assert unsign("key", "two", token) is None
    assert unsign("other", "one", token) is None
    assert unsign("key", "one", token, now=time.time() + 120) is None
    assert read_member_token("key", member_token("key", "L@x.org", "M@y.org", 2**40)) == (
        "l@x.org",
        "m@y.org",
    )
