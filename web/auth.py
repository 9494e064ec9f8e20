"""Logging in and out, and who is looking: the helpers every other blueprint asks.

The session cookie holds the user's id, the account's session generation at login and
the time of login. The account is loaded again on each request, and the session counts
only while the account exists, is enabled, still has that generation (logging out,
changing the password and disabling the account move it on, ending every session of the
account) and the login is less than SESSION_LIFETIME old: an absolute limit that no
amount of activity extends.

Wrong passwords slow down the client that types them, never the account: per (account,
client address) pair with a backoff, so someone guessing from elsewhere cannot lock the
owner out, and per client address across all accounts, so one address cannot try a few
passwords on every account either. Unknown and existing accounts are counted alike, so
the answers tell nobody which accounts exist. Both counts are kept in the database so
that every web process shares them.
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable
from datetime import timedelta
from typing import TypeVar
from urllib.parse import urlencode, urlsplit

from flask import (
    Blueprint,
    Flask,
    abort,
    current_app,
    g,
    make_response,
    redirect,
    render_template,
    request,
    session,
)
from flask.typing import ResponseReturnValue
from flask_babel import gettext, lazy_gettext

from archiver.accounts import Role, User, authenticate, end_sessions, session_is_current, viewer_for
from archiver.audit import ANONYMOUS, record
from archiver.search.viewer import Viewer
from archiver.throttle import Backoff
from web.deps import get_core

bp = Blueprint("auth", __name__)

SESSION_KEY = "user_id"
GENERATION_KEY = "generation"
SINCE_KEY = "since"
# A login lasts a working day at most, counted from the login, however busy the session.
SESSION_LIFETIME = timedelta(hours=12)
WRONG = lazy_gettext("Wrong email or password.")
LATER = lazy_gettext("Too many failed logins from here: try again later.")
# One client on one account: a few typos are free, then each failure doubles the wait.
FREE_PER_ACCOUNT = 5
ACCOUNT_WINDOW = timedelta(hours=24)
# One client across all accounts: more room (offices share an address), a shorter memory.
FREE_PER_CLIENT = 20
CLIENT_WINDOW = timedelta(hours=1)
CLIENT_MAX_DELAY = timedelta(minutes=15)

View = TypeVar("View", bound=Callable[..., ResponseReturnValue])


def init_app(app: Flask) -> None:
    """Give `app` its session lifetime and login throttles, and make `current_user()`
    available to templates."""
    core = get_core(app)
    # The cookie's own expiry; the login time in the session is what ends it for sure.
    app.config["PERMANENT_SESSION_LIFETIME"] = SESSION_LIFETIME
    app.extensions["arsip_login_throttles"] = (
        Backoff(core.sessions, "login-account", FREE_PER_ACCOUNT, ACCOUNT_WINDOW),
        Backoff(core.sessions, "login", FREE_PER_CLIENT, CLIENT_WINDOW, max_delay=CLIENT_MAX_DELAY),
    )
    app.jinja_env.globals["current_user"] = current_user


def _throttles() -> tuple[Backoff, Backoff]:
    return current_app.extensions["arsip_login_throttles"]


def current_user() -> User | None:
    """The logged-in user of this request, or None (loaded once per request).

    A session that no longer counts (see the module's docstring) loses its login here, so
    the browser is shown as logged out from this request on.
    """
    if "arsip_user" not in g:
        user_id = session.get(SESSION_KEY)
        user = None
        if isinstance(user_id, int):
            with get_core().sessions() as db:
                user = db.get(User, user_id)
            since = session.get(SINCE_KEY)
            # No lower bound: web hosts' clocks may differ by a little.
            fresh = (
                isinstance(since, int) and time.time() - since < SESSION_LIFETIME.total_seconds()
            )
            if not (fresh and session_is_current(user, session.get(GENERATION_KEY))):
                user = None
                for key in (SESSION_KEY, GENERATION_KEY, SINCE_KEY):
                    session.pop(key, None)
        g.arsip_user = user
    return g.arsip_user


def current_viewer() -> Viewer:
    """What this request may see: its user's mail and the list archives they may read.

    Visitors who are not logged in see the public list archives and no one's mail.
    """
    if "arsip_viewer" not in g:
        user = current_user()
        with get_core().sessions() as db:
            g.arsip_viewer = viewer_for(db, user)
    return g.arsip_viewer


def login_required(view: View) -> View:
    """Send visitors who are not logged in to the login page, and back here afterwards."""

    @functools.wraps(view)
    def wrapped(*args: object, **kwargs: object) -> ResponseReturnValue:
        if current_user() is None:
            here = request.full_path if request.query_string else request.path
            return redirect("/login?" + urlencode({"next": here}))
        return view(*args, **kwargs)

    return wrapped  # type: ignore[return-value]


def admin_only(view: View) -> View:
    """`login_required`, and 404 for anyone but an administrator: the administrators'
    pages do not announce themselves."""

    @functools.wraps(view)
    def wrapped(*args: object, **kwargs: object) -> ResponseReturnValue:
        user = current_user()
        if user is not None and user.role != Role.ADMIN:
            abort(404)
        return view(*args, **kwargs)

    return login_required(wrapped)  # type: ignore[return-value]


def safe_next(target: str | None) -> str:
    """`target` if it is a path on this site, else `/`: the login page is no open redirect.

    Browsers read `//host` and `/\\host` as another site, and some drop tabs and line
    breaks, so only a single leading slash followed by printable text passes.
    """
    if not target or not target.startswith("/") or target.startswith(("//", "/\\")):
        return "/"
    if any(ord(c) < 0x21 or ord(c) == 0x7F for c in target):
        return "/"
    parts = urlsplit(target)
    if parts.scheme or parts.netloc:
        return "/"
    return target


def _form(error: str | None = None, status: int = 200) -> ResponseReturnValue:
    return (
        render_template(
            "login.html",
            title=gettext("Log in"),
            error=error,
            email=request.form.get("email", ""),
            next=safe_next(request.values.get("next")),
        ),
        status,
    )


@bp.get("/login")
def login() -> ResponseReturnValue:
    """The login form."""
    return _form()


@bp.post("/login")
def login_post() -> ResponseReturnValue:
    """Check the password; on success start a fresh session that lasts at most 12 hours.

    Every checked attempt is audited in the transaction that checks it; attempts the
    throttles turn away unchecked are not, so a flood of them cannot flood the audit log
    either. An unknown account and a wrong password get the same answers, throttled alike.
    """
    client = request.remote_addr or "unknown"
    email = request.form.get("email", "")
    password = request.form.get("password", "")
    per_account, per_client = _throttles()
    # Keyed by what was typed, so unknown accounts are slowed down exactly like real ones.
    pair = f"{client} {email.strip().lower()}"
    waits = [w for w in (per_account.wait(pair), per_client.wait(client)) if w is not None]
    if waits:
        answer = make_response(_form(f"{WRONG} {LATER}", 429))
        answer.headers["Retry-After"] = str(math.ceil(max(waits).total_seconds()))
        return answer
    user_id: int | None = None
    generation = 0
    with get_core().sessions.begin() as db:
        user = authenticate(db, email, password)
        if user is not None:
            user_id, generation = user.id, user.session_generation
            record(db, user.email, "login", user.email, {"ip": client})
        else:
            # Who typed it is unproved; what they typed is the target (never the password).
            why = {"ip": client, "reason": "rejected"}
            record(db, ANONYMOUS, "login.failed", email.strip().lower()[:320], why)
    if user_id is None:
        per_account.hit(pair)
        per_client.hit(client)
        return _form(str(WRONG), 401)
    per_account.forget(pair)
    start_session(user_id, generation)
    return redirect(safe_next(request.values.get("next")))


def start_session(user_id: int, generation: int) -> None:
    """Log this browser in as `user_id`, for SESSION_LIFETIME from now at most.

    A new session, so anything planted in the visitor's cookie before login is worthless.
    """
    session.clear()
    session[SESSION_KEY] = user_id
    session[GENERATION_KEY] = generation
    session[SINCE_KEY] = int(time.time())
    session.permanent = True


@bp.post("/logout")
def logout() -> ResponseReturnValue:
    """End every session of the account, this one and any other browser's (a POST with
    the CSRF token, so other sites cannot log you out): a session cookie copied from this
    browser is worthless afterwards."""
    user = current_user()
    if user is not None:
        with get_core().sessions.begin() as db:
            account = db.get(User, user.id)
            if account is not None:
                end_sessions(account)
            record(db, user.email, "logout", user.email, {"ip": request.remote_addr or "unknown"})
    session.clear()
    return redirect("/")
