"""The web pages behind the links in list mail: confirmations and one-click unsubscription.

Links in mail are opened by scanners and prefetchers, so a GET must never change anything;
only the POST behind a page's button does, guarded by the session's CSRF token, except the
RFC 8058 one-click POST that mail providers send without cookies and that the link's
signature alone authorises.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from datetime import timedelta
from urllib.parse import quote

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from archiver.core import Core
from lists.membership import Membership, has_role
from lists.models import MailingList, Member, Pending, utcnow
from lists.tokens import unsubscribe_signature
from web import create_app

LIST = "dev@lists.example.com"


@pytest.fixture
def app(core: Core) -> Flask:
    """The web UI over a list `dev` whose only member is bob@example.net."""
    with core.sessions.begin() as session:
        mlist = MailingList(name="dev", domain="lists.example.com", display_name="dev")
        session.add(mlist)
        session.flush()
        session.add(Member(list_id=mlist.id, address="bob@example.net", role="member"))
    return create_app(core)


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    """A browser: it keeps the session cookie between requests."""
    return app.test_client()


def request_token(core: Core, address: str, action: str) -> str:
    """Ask as the list engine does, and read the token the confirmation mail carries."""
    with core.sessions.begin() as session:
        mlist = session.scalars(select(MailingList).where(MailingList.name == "dev")).one()
        Membership(core.settings.public_url).request(session, mlist, address, action)
        return session.scalars(
            select(Pending.token).where(Pending.address == address, Pending.action == action)
        ).one()


def is_member(core: Core, address: str) -> bool:
    """Whether `address` is a member of dev@lists.example.com now."""
    with core.sessions() as session:
        mlist = session.scalars(select(MailingList).where(MailingList.name == "dev")).one()
        return has_role(session, mlist, address, "member")


def csrf_field(page: str) -> str:
    """The CSRF token a page's form carries."""
    found = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert found, "the page has no CSRF field"
    return found.group(1)


def unsubscribe_url(address: str, signature: str, list_address: str = LIST) -> str:
    """The link as `lists/delivery.py` writes it into each member's copy."""
    return f"/lists/{quote(list_address)}/unsubscribe?address={quote(address)}&sig={signature}"


def test_a_confirmation_link_asks_before_it_acts(core: Core, client: FlaskClient) -> None:
    token = request_token(core, "ann@example.org", "subscribe")
    url = f"/lists/confirm/{token}"

    page = client.get(url)
    assert page.status_code == 200
    assert "Confirm that ann@example.org joins dev@lists.example.com" in page.text
    assert not is_member(core, "ann@example.org"), "opening the link must change nothing"

    done = client.post(url, data={"csrf_token": csrf_field(page.text)})
    assert done.status_code == 200
    assert "ann@example.org is now a member of dev@lists.example.com" in done.text
    assert is_member(core, "ann@example.org")

    again = client.post(url, data={"csrf_token": csrf_field(page.text)})
    assert again.status_code == 404
    assert "unknown" in again.text


def test_leaving_by_link_is_confirmed_the_same_way(core: Core, client: FlaskClient) -> None:
    url = f"/lists/confirm/{request_token(core, 'bob@example.net', 'unsubscribe')}"

    page = client.get(url)
    assert "Confirm that bob@example.net leaves dev@lists.example.com" in page.text
    assert is_member(core, "bob@example.net")

    done = client.post(url, data={"csrf_token": csrf_field(page.text)})
    assert "bob@example.net has left dev@lists.example.com" in done.text
    assert not is_member(core, "bob@example.net")


def test_a_post_without_the_csrf_token_is_refused(core: Core, client: FlaskClient) -> None:
    url = f"/lists/confirm/{request_token(core, 'ann@example.org', 'subscribe')}"
    client.get(url)  # the visitor has a session, but the forging site cannot read its token

    for data in ({}, {"csrf_token": "forged"}, {"csrf_token": "f\u00f6rged"}):
        refused = client.post(url, data=data)
        assert refused.status_code == 400
        assert "This form has expired" in refused.text
    assert not is_member(core, "ann@example.org")


def test_one_click_unsubscribe_works_without_cookies_or_csrf(core: Core, app: Flask) -> None:
    provider = app.test_client(use_cookies=False)
    signature = unsubscribe_signature(core.settings.signing_key(), LIST, "bob@example.net")
    url = unsubscribe_url("bob@example.net", signature)

    page = provider.get(url)
    assert page.status_code == 200
    assert "Unsubscribe bob@example.net from dev@lists.example.com" in page.text
    assert is_member(core, "bob@example.net"), "opening the link must change nothing"

    done = provider.post(url, data={"List-Unsubscribe": "One-Click"})
    assert done.status_code == 200
    assert "bob@example.net will get no more mail from dev@lists.example.com" in done.text
    assert not is_member(core, "bob@example.net")

    repeated = provider.post(url, data={"List-Unsubscribe": "One-Click"})
    assert (repeated.status_code, repeated.text) == (done.status_code, done.text)


def old_unsubscribe_signature(secret_key: str, list_address: str, address: str) -> str:
    """The signature one-click links carried before tokens were signed with itsdangerous."""
    message = f"unsubscribe\0{list_address.lower()}\0{address.lower()}".encode()
    digest = hmac.new(secret_key.encode(), message, hashlib.sha256).digest()[:18]
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def test_one_click_links_mailed_before_the_upgrade_still_unsubscribe(
    core: Core, app: Flask
) -> None:
    # What the earlier releases wrote into mail, for a key fixed here.
    made_then = "W01wMSySZ-zPp0mg2tS1EB2t"
    assert old_unsubscribe_signature("fixed test key", LIST, "bob@example.net") == made_then
    assert unsubscribe_signature("fixed test key", LIST, "bob@example.net") != made_then

    provider = app.test_client(use_cookies=False)
    signature = old_unsubscribe_signature(core.settings.signing_key(), LIST, "bob@example.net")
    done = provider.post(
        unsubscribe_url("bob@example.net", signature), data={"List-Unsubscribe": "One-Click"}
    )
    assert done.status_code == 200
    assert "bob@example.net will get no more mail from dev@lists.example.com" in done.text
    assert not is_member(core, "bob@example.net")


def test_a_forged_unsubscribe_link_changes_nothing(core: Core, client: FlaskClient) -> None:
    someone_elses = unsubscribe_signature(core.settings.signing_key(), LIST, "carl@example.net")
    for signature in (someone_elses, "", "%C3%BC"):
        url = unsubscribe_url("bob@example.net", signature)
        refused = client.post(url, data={"List-Unsubscribe": "One-Click"})
        assert refused.status_code == 403
        assert "not valid" in refused.text
        assert client.get(url).status_code == 400
    assert is_member(core, "bob@example.net")


def test_unknown_list_or_token_gives_a_friendly_page(core: Core, client: FlaskClient) -> None:
    unknown = client.get("/lists/confirm/no-such-token")
    assert unknown.status_code == 404
    assert "Unknown or expired link" in unknown.text

    # An owner's approval is answered by an owner's reply, never by a link.
    with core.sessions.begin() as session:
        mlist = session.scalars(select(MailingList).where(MailingList.name == "dev")).one()
        session.add(
            Pending(
                token="approve-token",
                list_id=mlist.id,
                address="ann@example.org",
                action="approve",
                expires_at=utcnow() + timedelta(days=1),
            )
        )
    approval = client.get("/lists/confirm/approve-token")
    assert approval.status_code == 404
    form = client.get(f"/lists/confirm/{request_token(core, 'ann@example.org', 'subscribe')}")
    posted = client.post("/lists/confirm/approve-token", data={"csrf_token": csrf_field(form.text)})
    assert posted.status_code == 404
    assert not is_member(core, "ann@example.org")

    gone = "old@lists.example.com"
    signature = unsubscribe_signature(core.settings.signing_key(), gone, "bob@example.net")
    no_list = client.get(unsubscribe_url("bob@example.net", signature, gone))
    assert no_list.status_code == 404
    assert "No such list" in no_list.text

    missing = client.get(f"/lists/{LIST}/unsubscribe")
    assert missing.status_code == 400
    for response in (unknown, approval, no_list, missing):
        assert "Traceback" not in response.text
        assert response.mimetype == "text/html"
