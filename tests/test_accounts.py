"""Local accounts: logging in and out of the web UI, slowing down guessing, API tokens, and
what each account may see of the archive."""

from __future__ import annotations

import hashlib
import re
import subprocess
from datetime import timedelta

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from archiver.accounts import (
    AccountExists,
    ApiToken,
    LoginAddress,
    User,
    UserAddress,
    add_address,
    add_user,
    authenticate,
    end_sessions,
    find_user,
    remove_address,
    user_for_token,
    utcnow,
    viewer_for,
)
from archiver.core import Core
from archiver.throttle import Backoff
from lists.models import ArchivePolicy, MailingList, Member
from tests.support import run_arsip
from web import auth, create_app

PASSWORD = "correct horse battery staple"


@pytest.fixture
def app(core: Core) -> Flask:
    """The web UI over an archive with one user, ann@example.org, and a page behind a login."""
    with core.sessions.begin() as session:
        add_user(session, "Ann@Example.org", "user", PASSWORD)
    app = create_app(core)

    @app.get("/private")
    @auth.login_required
    def private() -> str:
        user = auth.current_user()
        return f"hello {user.email if user else '?'}"

    return app


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    """A browser: it keeps the session cookie between requests."""
    return app.test_client()


def csrf_field(page: str) -> str:
    """The CSRF token a page's form carries."""
    found = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert found, "the page has no CSRF field"
    return found.group(1)


def log_in(client: FlaskClient, email: str, password: str, next_: str | None = None):
    """Open the login form and send it, as a browser does."""
    token = csrf_field(client.get("/login").get_data(as_text=True))
    form = {"csrf_token": token, "email": email, "password": password}
    if next_ is not None:
        form["next"] = next_
    return client.post("/login", data=form)


def arsip(core: Core, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    """Run the `arsip` command against the test's database and data directory."""
    return run_arsip(core.settings, *args, stdin=stdin)


def test_a_user_logs_in_reaches_a_private_page_and_logs_out(client: FlaskClient) -> None:
    bounced = client.get("/private?page=2")
    assert bounced.status_code == 302
    assert bounced.headers["Location"] == "/login?next=%2Fprivate%3Fpage%3D2"

    answer = log_in(client, "ann@example.org", PASSWORD, next_="/private?page=2")
    assert answer.status_code == 302
    assert answer.headers["Location"] == "/private?page=2"
    assert client.get("/private").get_data(as_text=True) == "hello ann@example.org"
    with client.session_transaction() as session:
        assert session.permanent

    page = client.get("/login").get_data(as_text=True)
    assert client.post("/logout", data={"csrf_token": csrf_field(page)}).status_code == 302
    assert client.get("/private").status_code == 302


def test_logging_in_starts_a_new_session(client: FlaskClient) -> None:
    with client.session_transaction() as session:
        session["planted"] = "by an attacker"
    log_in(client, "ann@example.org", PASSWORD)
    with client.session_transaction() as session:
        assert "planted" not in session


def test_a_wrong_password_reads_like_an_unknown_email(client: FlaskClient) -> None:
    wrong = log_in(client, "ann@example.org", "guess")
    unknown = log_in(client, "nobody@example.org", "guess")
    assert wrong.status_code == unknown.status_code == 401
    assert "Wrong email or password" in wrong.get_data(as_text=True)
    assert "Wrong email or password" in unknown.get_data(as_text=True)
    assert client.get("/private").status_code == 302


def test_five_failures_slow_that_client_down_even_for_the_right_password(
    client: FlaskClient,
) -> None:
    for _ in range(5):
        assert log_in(client, "ann@example.org", "guess").status_code == 401
    slowed = log_in(client, "ann@example.org", PASSWORD)
    assert slowed.status_code == 429
    assert "try again later" in slowed.get_data(as_text=True)
    assert int(slowed.headers["Retry-After"]) > 0
    assert client.get("/private").status_code == 302


def test_an_unknown_account_is_slowed_down_exactly_like_a_real_one(app: Flask) -> None:
    real, unknown = app.test_client(), app.test_client()
    answers = {
        email: [log_in(browser, email, "guess").status_code for _ in range(6)]
        for browser, email in ((real, "ann@example.org"), (unknown, "nobody@example.org"))
    }
    assert answers["ann@example.org"] == answers["nobody@example.org"] == [401] * 5 + [429]


def test_guessing_from_one_address_leaves_the_owner_at_another_alone(app: Flask) -> None:
    stranger, owner = app.test_client(), app.test_client()
    stranger.environ_base["REMOTE_ADDR"] = "127.0.0.2"
    owner.environ_base["REMOTE_ADDR"] = "127.0.0.3"
    for _ in range(5):
        assert log_in(stranger, "ann@example.org", "guess").status_code == 401
    assert log_in(stranger, "ann@example.org", PASSWORD).status_code == 429
    assert log_in(owner, "ann@example.org", PASSWORD).status_code == 302


def test_each_further_failure_doubles_the_wait_and_old_ones_are_forgotten(core: Core) -> None:
    backoff = Backoff(core.sessions, "test", 2, timedelta(hours=24))
    start = utcnow()
    for minute in (0, 1):
        backoff.hit("key", now=start + timedelta(minutes=minute))
    assert backoff.wait("key", now=start + timedelta(minutes=1)) == timedelta(minutes=1)
    assert backoff.wait("key", now=start + timedelta(minutes=2)) is None
    backoff.hit("key", now=start + timedelta(minutes=2))
    assert backoff.wait("key", now=start + timedelta(minutes=3)) == timedelta(minutes=1)
    assert backoff.wait("key", now=start + timedelta(minutes=4)) is None
    for hour in range(1, 20):
        backoff.hit("key", now=start + timedelta(hours=hour))
    assert backoff.wait("key", now=start + timedelta(hours=19)) == timedelta(hours=1)  # the cap
    assert backoff.wait("other", now=start + timedelta(hours=19)) is None
    assert backoff.wait("key", now=start + timedelta(hours=44)) is None  # past the window
    backoff.forget("key")
    assert backoff.wait("key", now=start + timedelta(hours=19)) is None


def test_a_disabled_account_or_one_without_a_password_never_logs_in(core: Core) -> None:
    with core.sessions.begin() as session:
        add_user(session, "bob@example.org", "user", "pw")
        add_user(session, "cid@example.org", "user")
        assert authenticate(session, "bob@example.org", "pw") is not None
        bob = find_user(session, "bob@example.org")
        assert bob is not None
        bob.disabled_at = utcnow()
        assert authenticate(session, "bob@example.org", "pw") is None
        assert authenticate(session, "cid@example.org", "") is None


def test_ending_sessions_logs_every_browser_out(app: Flask, core: Core) -> None:
    browsers = [app.test_client(), app.test_client()]
    for browser in browsers:
        assert log_in(browser, "ann@example.org", PASSWORD).status_code == 302
        assert browser.get("/private").status_code == 200
    with core.sessions.begin() as session:
        ann = find_user(session, "ann@example.org")
        assert ann is not None
        end_sessions(ann)
    assert [browser.get("/private").status_code for browser in browsers] == [302, 302]
    assert log_in(browsers[0], "ann@example.org", PASSWORD).status_code == 302
    assert browsers[0].get("/private").status_code == 200


def test_one_client_guessing_across_accounts_is_slowed_down(client: FlaskClient) -> None:
    for number in range(20):
        assert log_in(client, f"user{number}@example.org", "guess").status_code == 401
    assert log_in(client, "ann@example.org", PASSWORD).status_code == 429


def test_every_web_process_shares_the_client_count(app: Flask, core: Core) -> None:
    """Each app stands for one web process; guesses spread over them add up."""
    other = create_app(core)
    other.config["TESTING"] = app.config["TESTING"]
    clients = [app.test_client(), other.test_client()]
    for number in range(20):
        answer = log_in(clients[number % 2], f"user{number}@example.org", "guess")
        assert answer.status_code == 401
    for client in clients:
        assert log_in(client, "ann@example.org", PASSWORD).status_code == 429


@pytest.mark.parametrize(
    "target",
    ["//evil.example", "https://evil.example", "/\\evil.example", "javascript:alert(1)", "/\t/x"],
)
def test_the_login_page_never_redirects_to_another_site(client: FlaskClient, target: str) -> None:
    answer = log_in(client, "ann@example.org", PASSWORD, next_=target)
    assert answer.status_code == 302
    assert answer.headers["Location"] == "/"


def test_a_login_without_the_csrf_token_is_refused(client: FlaskClient) -> None:
    client.get("/login")
    answer = client.post("/login", data={"email": "ann@example.org", "password": PASSWORD})
    assert answer.status_code == 400
    assert client.get("/private").status_code == 302


def test_an_account_added_on_the_command_line_can_log_in(core: Core) -> None:
    added = arsip(core, "users", "add", "Cat@Example.org", "--role", "auditor", "--password-stdin",
                  stdin="s3cret pass\n")  # fmt: skip
    assert added.returncode == 0, added.stderr
    client = create_app(core).test_client()
    assert log_in(client, "cat@example.org", "s3cret pass").status_code == 302

    listed = arsip(core, "users", "list", "--json")
    assert '"email": "cat@example.org", "role": "auditor"' in listed.stdout


def test_the_command_line_explains_mistakes_in_one_line(core: Core) -> None:
    assert arsip(core, "users", "add", "dan@example.org").returncode == 0
    again = arsip(core, "users", "add", "DAN@example.org")
    assert again.returncode == 1
    assert "exists already" in again.stderr
    assert arsip(core, "users", "add", "not-an-address").returncode == 2
    assert arsip(core, "users", "add", "eve@example.org", "--role", "boss").returncode == 2
    unknown = arsip(core, "users", "token", "nobody@example.org")
    assert unknown.returncode == 1
    assert unknown.stderr.strip().count("\n") == 0


def test_an_api_token_is_shown_once_and_stored_only_as_its_hash(core: Core) -> None:
    with core.sessions.begin() as session:
        add_user(session, "ann@example.org", "user")
    made = arsip(core, "users", "token", "ann@example.org")
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip()
    with core.sessions.begin() as session:
        user = user_for_token(session, token)
        assert user is not None and user.email == "ann@example.org"
        stored = session.scalars(select(ApiToken.token_hash)).one()
        assert stored == hashlib.sha256(token.encode()).hexdigest()
        assert token not in stored
        assert user_for_token(session, token + "x") is None


def test_a_user_sees_their_addresses_and_an_auditor_sees_all(core: Core) -> None:
    with core.sessions.begin() as session:
        ann = add_user(session, "ann@example.org", "user")
        add_address(session, ann, "ann@old-job.example")
        add_address(session, ann, "Ann.Home@example.net", verified=True)
        auditor = add_user(session, "audit@example.org", "auditor")
        mine = viewer_for(session, ann)
        everything = viewer_for(session, auditor)
    assert not mine.sees_all
    assert mine.addresses == {"ann@example.org", "ann.home@example.net"}
    assert everything.sees_all


def test_an_address_vouched_for_on_the_command_line_counts(core: Core) -> None:
    with core.sessions.begin() as session:
        add_user(session, "ann@example.org", "user")
    assert arsip(core, "users", "add-address", "ann@example.org", "a@b.example").returncode == 0
    with core.sessions() as session:
        user = find_user(session, "ann@example.org")
        assert user is not None
        assert "a@b.example" in viewer_for(session, user).addresses


def test_the_web_viewer_adds_the_list_archives_a_user_may_read(core: Core, app: Flask) -> None:
    with core.sessions.begin() as session:
        open_list = MailingList(name="dev", domain="lists.example.com", display_name="dev")
        closed = MailingList(
            name="board",
            domain="lists.example.com",
            display_name="board",
            archive=ArchivePolicy.PRIVATE,
        )
        session.add_all([open_list, closed])
        session.flush()
        session.add(Member(list_id=closed.id, address="ann@example.org", role="member"))

    with app.test_request_context("/"):
        assert auth.current_viewer().readable_lists == {"dev.lists.example.com"}
        assert not auth.current_viewer().addresses

    with core.sessions() as session:
        ann = find_user(session, "ann@example.org")
        assert ann is not None
    with app.test_request_context("/"):
        auth.start_session(ann.id, ann.session_generation)
        viewer = auth.current_viewer()
    assert viewer.addresses == {"ann@example.org"}
    assert viewer.readable_lists == {"dev.lists.example.com", "board.lists.example.com"}


def claimants(session, address: str) -> list[tuple[str, bool]]:
    """The accounts claiming `address` and whether each has verified it."""
    rows = session.execute(
        select(User.email, UserAddress.verified)
        .join(User, User.id == UserAddress.user_id)
        .where(UserAddress.address == address)
        .order_by(User.email)
    )
    return [(email, verified) for email, verified in rows]


def test_several_accounts_may_claim_an_address_but_only_one_verify_it(core: Core) -> None:
    with core.sessions.begin() as session:
        ann = add_user(session, "ann@example.org", "user")
        bob = add_user(session, "bob@example.org", "user")
        add_address(session, ann, "shared@example.com")
        add_address(session, bob, "Shared@Example.com")
        assert claimants(session, "shared@example.com") == [
            ("ann@example.org", False),
            ("bob@example.org", False),
        ]
        add_address(session, bob, "shared@example.com", verified=True)
        assert claimants(session, "shared@example.com") == [("bob@example.org", True)]
        for verified in (False, True):
            with pytest.raises(AccountExists):
                add_address(session, ann, "shared@example.com", verified=verified)
        assert "shared@example.com" not in viewer_for(session, ann).addresses
        assert "shared@example.com" in viewer_for(session, bob).addresses


def test_the_database_keeps_a_verified_address_to_one_account(core: Core) -> None:
    with core.sessions.begin() as session:
        ann = add_user(session, "ann@example.org", "user")
        bob = add_user(session, "bob@example.org", "user")
        ann_id, bob_id = ann.id, bob.id
        session.add_all(
            [
                UserAddress(user_id=ann_id, address="x@example.com", verified=False),
                UserAddress(user_id=bob_id, address="x@example.com", verified=False),
                UserAddress(user_id=ann_id, address="y@example.com", verified=True),
            ]
        )
    # Below the application's checks, as two verifications racing would reach it.
    with pytest.raises(IntegrityError), core.sessions.begin() as session:
        session.add(UserAddress(user_id=bob_id, address="y@example.com", verified=True))
    with pytest.raises(IntegrityError), core.sessions.begin() as session:
        session.add(UserAddress(user_id=ann_id, address="x@example.com", verified=False))
    with core.sessions() as session:
        assert claimants(session, "y@example.com") == [("ann@example.org", True)]


def test_an_address_comes_off_an_account_but_never_its_login_address(core: Core) -> None:
    with core.sessions.begin() as session:
        ann = add_user(session, "ann@example.org", "user")
        add_address(session, ann, "ann.home@example.net", verified=True)
        assert remove_address(session, ann, "Ann.Home@example.net")
        assert not remove_address(session, ann, "ann.home@example.net")
        with pytest.raises(LoginAddress):
            remove_address(session, ann, "ann@example.org")
        assert viewer_for(session, ann).addresses == {"ann@example.org"}


def test_a_new_account_takes_its_login_address_from_unverified_claims(core: Core) -> None:
    with core.sessions.begin() as session:
        ann = add_user(session, "ann@example.org", "user")
        add_address(session, ann, "cat@example.org")
        add_user(session, "cat@example.org", "user")
        assert claimants(session, "cat@example.org") == [("cat@example.org", True)]
        with pytest.raises(AccountExists):
            add_address(session, ann, "cat@example.org")


def test_vouching_on_the_command_line_respects_verified_claims_only(core: Core) -> None:
    with core.sessions.begin() as session:
        ann = add_user(session, "ann@example.org", "user")
        add_user(session, "bob@example.org", "user")
        add_address(session, ann, "shared@example.com")
    vouched = arsip(core, "users", "add-address", "bob@example.org", "shared@example.com")
    assert vouched.returncode == 0, vouched.stderr
    refused = arsip(core, "users", "add-address", "ann@example.org", "shared@example.com")
    assert refused.returncode == 1
    assert "belongs to another account" in refused.stderr
    with core.sessions() as session:
        assert claimants(session, "shared@example.com") == [("bob@example.org", True)]
