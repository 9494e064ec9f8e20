"""A user's account page: proving an address by the link mailed to it, and choosing how
their own list memberships deliver."""

from __future__ import annotations

import re
import time

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import delete, select

from archiver.accounts import (
    User,
    UserAddress,
    add_address,
    add_user,
    find_user,
    verified_addresses,
)
from archiver.core import Core
from lists.models import Delivery, MailingList, Member, OutboxMessage, OutboxRecipient
from tests.test_accounts import PASSWORD, csrf_field, log_in
from web import create_app
from web.account import make_token

ANN = "ann@example.org"
BOB = "bob@example.org"


@pytest.fixture
def app(core: Core) -> Flask:
    """The web UI with two users, Ann and Bob, each a member of the list dev@example.org."""
    with core.sessions.begin() as session:
        add_user(session, ANN, "user", PASSWORD)
        add_user(session, BOB, "user", PASSWORD)
        mlist = MailingList(name="dev", domain="example.org")
        session.add(mlist)
        session.flush()
        for address in (ANN, BOB):
            session.add(Member(list_id=mlist.id, address=address, role="member"))
    return create_app(core)


@pytest.fixture
def ann(app: Flask) -> FlaskClient:
    """Ann's browser, logged in."""
    client = app.test_client()
    assert log_in(client, ANN, PASSWORD).status_code == 302
    return client


@pytest.fixture
def bob(app: Flask) -> FlaskClient:
    """Bob's browser, logged in."""
    client = app.test_client()
    assert log_in(client, BOB, PASSWORD).status_code == 302
    return client


def add(client: FlaskClient, address: str):
    """Send the account page's add-an-address form."""
    token = csrf_field(client.get("/account").get_data(as_text=True))
    return client.post("/account/addresses", data={"csrf_token": token, "address": address})


def mailed_link(core: Core, address: str) -> str:
    """The path of the verification link in the newest mail queued to `address`."""
    with core.sessions() as session:
        data = session.scalar(
            select(OutboxMessage.data)
            .join(OutboxRecipient, OutboxRecipient.message_id == OutboxMessage.id)
            .where(OutboxRecipient.address == address)
            .order_by(OutboxMessage.id.desc())
        )
    assert data is not None, f"no mail queued to {address}"
    found = re.search(rb"https?://[^/\s]+(/account/verify/[A-Za-z0-9_\-.]+)", data)
    assert found, data
    return found.group(1).decode()


def press(client: FlaskClient, path: str):
    """Open a page and press its button, as a browser does."""
    page = client.get(path)
    assert page.status_code == 200
    return client.post(path, data={"csrf_token": csrf_field(page.get_data(as_text=True))})


def verified(core: Core, email: str) -> tuple[str, ...]:
    with core.sessions() as session:
        user = find_user(session, email)
        assert user is not None
        return verified_addresses(session, user)


def test_adding_an_address_mails_a_link_that_verifies_it(core: Core, ann: FlaskClient) -> None:
    answer = add(ann, "Ann.Work@Example.com")
    assert answer.status_code == 302
    assert "We sent a link" in ann.get(answer.headers["Location"]).get_data(as_text=True)
    with core.sessions() as session:
        row = session.scalar(
            select(UserAddress).where(UserAddress.address == "ann.work@example.com")
        )
        assert row is not None and not row.verified
        message = session.scalar(
            select(OutboxMessage)
            .join(OutboxRecipient, OutboxRecipient.message_id == OutboxMessage.id)
            .where(OutboxRecipient.address == "ann.work@example.com")
        )
        assert message is not None and message.sender == ""
        assert b"Auto-Submitted: auto-generated" in message.data
        assert b"Subject: Confirm your address for Arsip" in message.data
    link = mailed_link(core, "ann.work@example.com")

    page = ann.get(link)
    assert page.status_code == 200
    assert "Confirm that ann.work@example.com is yours" in page.get_data(as_text=True)
    assert "ann.work@example.com" not in verified(core, ANN)  # opening the link does nothing

    done = ann.post(link, data={"csrf_token": csrf_field(page.get_data(as_text=True))})
    assert done.status_code == 200
    assert "is verified" in done.get_data(as_text=True)
    assert "ann.work@example.com" in verified(core, ANN)


def test_a_forwarded_link_attaches_nothing_to_another_account(
    core: Core, ann: FlaskClient, bob: FlaskClient
) -> None:
    add(ann, "ann.work@example.com")
    link = mailed_link(core, "ann.work@example.com")
    assert bob.get(link).status_code == 404
    token = csrf_field(bob.get("/account").get_data(as_text=True))
    answer = bob.post(link, data={"csrf_token": token})
    assert answer.status_code == 404
    assert "Unknown or expired link" in answer.get_data(as_text=True)
    assert "ann.work@example.com" not in verified(core, BOB)
    assert "ann.work@example.com" not in verified(core, ANN)


def test_a_changed_or_expired_link_is_unknown(core: Core, ann: FlaskClient) -> None:
    add(ann, "ann.work@example.com")
    link = mailed_link(core, "ann.work@example.com")
    with core.sessions() as session:
        user = find_user(session, ANN)
        assert user is not None
        ann_id = user.id
    key = core.settings.signing_key()
    expired = make_token(key, ann_id, "ann.work@example.com", int(time.time()) - 1)
    forged = make_token("not the key", ann_id, "ann.work@example.com", int(time.time()) + 60)
    tampered = link[:-3] + ("AAA" if not link.endswith("AAA") else "BBB")
    token = csrf_field(ann.get("/account").get_data(as_text=True))
    for path in (tampered, f"/account/verify/{expired}", f"/account/verify/{forged}"):
        page = ann.get(path)
        assert page.status_code == 404, path
        assert "Unknown or expired link" in page.get_data(as_text=True)
        assert ann.post(path, data={"csrf_token": token}).status_code == 404
    assert "ann.work@example.com" not in verified(core, ANN)


def test_another_accounts_address_is_refused(core: Core, ann: FlaskClient) -> None:
    answer = add(ann, BOB)
    assert answer.status_code == 400
    assert "belongs to another account" in answer.get_data(as_text=True)
    with core.sessions() as session:
        assert session.scalar(select(OutboxRecipient).where(OutboxRecipient.address == BOB)) is None


def test_an_address_verified_elsewhere_meanwhile_is_refused(core: Core, ann: FlaskClient) -> None:
    add(ann, "shared@example.com")
    link = mailed_link(core, "shared@example.com")
    with core.sessions.begin() as session:
        session.execute(delete(UserAddress).where(UserAddress.address == "shared@example.com"))
        bob_user = find_user(session, BOB)
        assert bob_user is not None
        add_address(session, bob_user, "shared@example.com", verified=True)
    answer = press(ann, link)
    assert answer.status_code == 409
    assert "belongs to another account" in answer.get_data(as_text=True)
    assert "shared@example.com" not in verified(core, ANN)
    assert "shared@example.com" in verified(core, BOB)


def test_a_fourth_confirmation_mail_within_the_hour_waits(core: Core, ann: FlaskClient) -> None:
    for n in range(3):
        assert add(ann, f"ann{n}@example.com").status_code == 302
    answer = add(ann, "ann3@example.com")
    assert answer.status_code == 429
    assert "try again later" in answer.get_data(as_text=True)
    with core.sessions() as session:
        mailed = session.scalars(select(OutboxRecipient.address)).all()
    assert sorted(mailed) == ["ann0@example.com", "ann1@example.com", "ann2@example.com"]


def test_a_bad_address_is_refused(ann: FlaskClient) -> None:
    for address in ("no-at-sign", "ann@localhost", "a@b@c.org", "x" * 320 + "@example.org"):
        assert add(ann, address).status_code == 400, address


def member_id(core: Core, address: str) -> int:
    with core.sessions() as session:
        found = session.scalar(select(Member.id).where(Member.address == address))
        assert found is not None
        return found


def delivery_of(core: Core, address: str) -> tuple[str, str | None]:
    with core.sessions() as session:
        member = session.scalar(select(Member).where(Member.address == address))
        assert member is not None
        return member.delivery, member.disabled_reason


def test_a_member_switches_to_a_plain_digest(core: Core, ann: FlaskClient) -> None:
    page = ann.get("/account").get_data(as_text=True)
    assert "dev@example.org" in page
    target = f"/account/lists/{member_id(core, ANN)}"
    assert target in page
    answer = ann.post(target, data={"csrf_token": csrf_field(page), "delivery": "plain_digest"})
    assert answer.status_code == 302
    assert delivery_of(core, ANN) == (Delivery.PLAIN_DIGEST, None)
    assert delivery_of(core, BOB) == (Delivery.REGULAR, None)


def test_back_to_each_post_lifts_only_the_members_own_pause(core: Core, ann: FlaskClient) -> None:
    target = f"/account/lists/{member_id(core, ANN)}"
    for reason, left in (("bounce", "bounce"), ("user", None)):
        with core.sessions.begin() as session:
            member = session.scalar(select(Member).where(Member.address == ANN))
            assert member is not None
            member.delivery, member.disabled_reason = Delivery.NOMAIL, reason
        token = csrf_field(ann.get("/account").get_data(as_text=True))
        ann.post(target, data={"csrf_token": token, "delivery": "regular"})
        assert delivery_of(core, ANN) == (Delivery.REGULAR, left)


def test_someone_elses_membership_is_not_found(core: Core, ann: FlaskClient) -> None:
    token = csrf_field(ann.get("/account").get_data(as_text=True))
    answer = ann.post(
        f"/account/lists/{member_id(core, BOB)}", data={"csrf_token": token, "delivery": "nomail"}
    )
    assert answer.status_code == 404
    assert (
        ann.post(
            "/account/lists/999999", data={"csrf_token": token, "delivery": "nomail"}
        ).status_code
        == 404
    )
    assert delivery_of(core, BOB) == (Delivery.REGULAR, None)


def test_an_unverified_address_does_not_reach_its_membership(core: Core, ann: FlaskClient) -> None:
    with core.sessions.begin() as session:
        mlist = session.scalar(select(MailingList))
        assert mlist is not None
        session.add(Member(list_id=mlist.id, address="ann.work@example.com", role="member"))
    add(ann, "ann.work@example.com")
    assert "/account/lists/" + str(member_id(core, "ann.work@example.com")) not in ann.get(
        "/account"
    ).get_data(as_text=True)
    token = csrf_field(ann.get("/account").get_data(as_text=True))
    answer = ann.post(
        f"/account/lists/{member_id(core, 'ann.work@example.com')}",
        data={"csrf_token": token, "delivery": "nomail"},
    )
    assert answer.status_code == 404


def test_forms_without_the_csrf_token_are_refused(core: Core, ann: FlaskClient) -> None:
    assert ann.post("/account/addresses", data={"address": "x@example.com"}).status_code == 400
    target = f"/account/lists/{member_id(core, ANN)}"
    assert ann.post(target, data={"delivery": "nomail"}).status_code == 400
    add(ann, "ann.work@example.com")
    assert ann.post(mailed_link(core, "ann.work@example.com")).status_code == 400
    assert "ann.work@example.com" not in verified(core, ANN)
    assert delivery_of(core, ANN) == (Delivery.REGULAR, None)


def test_visitors_are_sent_to_log_in(app: Flask) -> None:
    answer = app.test_client().get("/account")
    assert answer.status_code == 302
    assert answer.headers["Location"].startswith("/login?next=")


def claims(core: Core, address: str) -> list[tuple[str, bool]]:
    """Which accounts claim `address`, and whether they have verified it."""
    with core.sessions() as session:
        rows = session.execute(
            select(User.email, UserAddress.verified)
            .join(User, User.id == UserAddress.user_id)
            .where(UserAddress.address == address)
            .order_by(User.email)
        )
        return [(email, verified) for email, verified in rows]


def test_two_accounts_claim_one_address_and_the_first_to_verify_keeps_it(
    core: Core, ann: FlaskClient, bob: FlaskClient
) -> None:
    asked = add(ann, "shared@example.com")
    assert asked.status_code == 302
    assert "We sent a link" in ann.get(asked.location).text  # the notice is shown, and gone
    ann_link = mailed_link(core, "shared@example.com")
    assert add(bob, "shared@example.com").status_code == 302  # not blocked by Ann's claim
    bob_link = mailed_link(core, "shared@example.com")
    assert claims(core, "shared@example.com") == [(ANN, False), (BOB, False)]

    assert press(bob, bob_link).status_code == 200
    assert claims(core, "shared@example.com") == [(BOB, True)]  # Ann's claim is dropped
    assert "shared@example.com" not in ann.get("/account").get_data(as_text=True)

    late = press(ann, ann_link)
    assert late.status_code == 409
    assert "belongs to another account" in late.get_data(as_text=True)
    assert claims(core, "shared@example.com") == [(BOB, True)]
    assert add(ann, "shared@example.com").status_code == 400


def test_removing_an_address_takes_it_off_the_account(core: Core, ann: FlaskClient) -> None:
    add(ann, "ann.work@example.com")
    press(ann, mailed_link(core, "ann.work@example.com"))
    add(ann, "ann.old@example.com")
    assert verified(core, ANN) == ("ann.work@example.com", ANN)

    page = ann.get("/account").get_data(as_text=True)
    assert 'name="address" value="ann.work@example.com"' in page
    assert f'name="address" value="{ANN}"' not in page  # no button for the login address
    for address in ("ann.work@example.com", "Ann.Old@example.com"):
        answer = ann.post(
            "/account/addresses/remove", data={"csrf_token": csrf_field(page), "address": address}
        )
        assert answer.status_code == 302
        notice = ann.get(answer.headers["Location"]).get_data(as_text=True)
        assert f"{address.lower()} was removed from your account" in notice
    assert claims(core, "ann.work@example.com") == claims(core, "ann.old@example.com") == []
    assert verified(core, ANN) == (ANN,)
    assert delivery_of(core, ANN) == (Delivery.REGULAR, None)  # memberships stay


def test_the_login_address_and_other_peoples_addresses_cannot_be_removed(
    core: Core, ann: FlaskClient
) -> None:
    token = csrf_field(ann.get("/account").get_data(as_text=True))
    login = ann.post("/account/addresses/remove", data={"csrf_token": token, "address": ANN})
    assert login.status_code == 400
    assert "address you log in with" in login.get_data(as_text=True)
    other = ann.post("/account/addresses/remove", data={"csrf_token": token, "address": BOB})
    assert other.status_code == 404
    assert ann.post("/account/addresses/remove", data={"address": ANN}).status_code == 400
    assert verified(core, ANN) == (ANN,)
    assert verified(core, BOB) == (BOB,)


def test_the_link_for_a_removed_address_verifies_nothing(core: Core, ann: FlaskClient) -> None:
    add(ann, "ann.work@example.com")
    link = mailed_link(core, "ann.work@example.com")
    token = csrf_field(ann.get("/account").get_data(as_text=True))
    ann.post(
        "/account/addresses/remove",
        data={"csrf_token": token, "address": "ann.work@example.com"},
    )
    answer = press(ann, link)
    assert answer.status_code == 404
    assert "no longer on your account" in answer.get_data(as_text=True)
    assert claims(core, "ann.work@example.com") == []
