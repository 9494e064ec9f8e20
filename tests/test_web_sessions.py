"""Sessions, logins and API tokens against a real `arsip serve`, from several loopback
client addresses: what ends a session, how long one lasts, what guessing passwords costs
and whom, and how an operator sees and ends API tokens."""

from __future__ import annotations

import json
import time

from flask import Flask
from flask.sessions import SecureCookieSessionInterface
from sqlalchemy import update

from archiver.accounts import ApiToken, utcnow
from tests.support import RunningService, run_arsip
from tests.web_client import Visitor
from web import auth

PASSWORD = "correct horse battery staple"
ANN = "ann@example.com"


def add_ann(service: RunningService, role: str = "user") -> None:
    added = run_arsip(service.settings, "users", "add", ANN, "--role", role, "--password-stdin",
                      stdin=PASSWORD + "\n")  # fmt: skip
    assert added.returncode == 0, added.stderr


def cli(service: RunningService, *args: str, stdin: str = "") -> str:
    done = run_arsip(service.settings, *args, stdin=stdin)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_logging_out_a_new_password_and_disabling_each_end_every_session(
    service: RunningService,
) -> None:
    add_ann(service)
    port = service.settings.web_port
    here, there = Visitor(port, "127.0.0.1"), Visitor(port, "127.0.0.2")
    for browser in (here, there):
        assert browser.log_in(ANN, PASSWORD) == 302
        assert browser.logged_in()
    stolen = Visitor(port, "127.0.0.3")
    stolen.cookies = dict(here.cookies)  # a copy of the cookie, taken before logout
    assert stolen.logged_in()

    assert here.post_form("/account", "/logout", {}).status == 302
    assert not here.logged_in()
    assert not there.logged_in()  # the other browser's session ended too
    assert not stolen.logged_in()

    for browser in (here, there):
        assert browser.log_in(ANN, PASSWORD) == 302
    cli(service, "users", "password", ANN, stdin="a new passphrase\n")
    assert not here.logged_in() and not there.logged_in()
    assert here.log_in(ANN, PASSWORD) == 401
    assert here.log_in(ANN, "a new passphrase") == 302

    assert "is now disabled" in cli(service, "users", "disable", ANN)
    assert not here.logged_in()
    refused = here.post_form("/login", "/login", {"email": ANN, "password": "a new passphrase"})
    assert refused.status == 401 and "Wrong email or password" in refused.body
    assert "(disabled)" in cli(service, "users", "list")
    assert "is now enabled" in cli(service, "users", "enable", ANN)
    assert here.log_in(ANN, "a new passphrase") == 302 and here.logged_in()


def test_a_login_ends_twelve_hours_after_it_began_however_busy_the_session(
    make_service,
) -> None:
    service = make_service()
    add_ann(service)
    browser = Visitor(service.settings.web_port)
    assert browser.log_in(ANN, PASSWORD) == 302
    # The cookie as a browser holds it after a request a minute ago refreshed it: signed
    # just now, for a login that began earlier.
    signer = Flask(__name__)
    signer.secret_key = service.settings.signing_key()
    serializer = SecureCookieSessionInterface().get_signing_serializer(signer)
    assert serializer is not None
    session = serializer.loads(browser.cookies["session"])
    for hours in (11, 13):
        session[auth.SINCE_KEY] = int(time.time()) - hours * 3600
        browser.cookies["session"] = serializer.dumps(session)
        assert browser.logged_in() == (hours < 12)


def test_api_tokens_are_listed_expire_are_revoked_and_die_with_their_account(
    service: RunningService,
) -> None:
    add_ann(service)
    port = service.settings.web_port
    api = Visitor(port)

    def status(token: str) -> int:
        return api.get("/api/v1/lists", headers={"Authorization": f"Bearer {token}"}).status

    lasting = cli(service, "users", "token", ANN).strip()
    brief = cli(service, "users", "token", ANN, "--expires", "30d").strip()
    listed = json.loads(cli(service, "users", "tokens", ANN, "--json"))
    assert [row["last_used_at"] for row in listed] == [None, None]
    assert listed[0]["expires_at"] is None and listed[1]["expires_at"].startswith("20")
    assert status(lasting) == status(brief) == 200
    listed = json.loads(cli(service, "users", "tokens", ANN, "--json"))
    assert all(row["last_used_at"] for row in listed)
    assert "made" in cli(service, "users", "tokens", ANN)

    # Thirty days on, as far as the token's expiry is concerned.
    with service.core().sessions.begin() as db:
        db.execute(
            update(ApiToken).where(ApiToken.id == listed[1]["id"]).values(expires_at=utcnow())
        )
    assert status(brief) == 401 and status(lasting) == 200

    cli(service, "users", "disable", ANN)
    assert status(lasting) == 401
    cli(service, "users", "enable", ANN)
    assert status(lasting) == 200

    assert f"revoked token {listed[0]['id']}" in cli(
        service, "users", "revoke-token", str(listed[0]["id"])
    )
    assert status(lasting) == 401
    assert [row["id"] for row in json.loads(cli(service, "users", "tokens", ANN, "--json"))] == [
        listed[1]["id"]
    ]
    again = run_arsip(service.settings, "users", "revoke-token", str(listed[0]["id"]))
    assert again.returncode == 1 and "no API token" in again.stderr
    bad = run_arsip(service.settings, "users", "token", ANN, "--expires", "soon")
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    audit = cli(service, "audit", "list", "--json")
    assert "user.token.revoke" in audit and "user.disable" in audit


def test_guessing_tells_nobody_which_accounts_exist_and_locks_no_owner_out(
    service: RunningService,
) -> None:
    add_ann(service, "admin")
    port = service.settings.web_port
    stranger = Visitor(port, "127.0.0.2")
    tries = {
        email: [stranger.log_in(email, "guess") for _ in range(6)]
        for email in (ANN, "nobody@example.com")
    }
    assert tries[ANN] == tries["nobody@example.com"] == [401] * 5 + [429]
    assert stranger.log_in(ANN, PASSWORD) == 429  # even the right password waits its turn

    owner = Visitor(port, "127.0.0.3")
    assert owner.log_in(ANN, PASSWORD) == 302 and owner.logged_in()
