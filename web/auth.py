"""Logging in and out, and who is looking: the helpers every other blueprint asks.

The session cookie holds only the user's id; the account is loaded again on each
request, so a deleted account is logged out at once. Wrong passwords are throttled twice:
per account (`archiver.accounts`) and per client address (`archiver.throttle`), both in
the database so that every web process shares them, and one address cannot try a few
passwords on every account either.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from datetime import timedelta
from typing import TYPE_CHECKING, TypeVar
from urllib.parse import urlencode, urlsplit

from flask import Blueprint, Flask, current_app, g, redirect, render_template, request, session
from flask.typing import ResponseReturnValue

from archiver.accounts import AccountLocked, User, authenticate, viewer_for
from archiver.audit import ANONYMOUS, record
from archiver.search.viewer import Viewer
from archiver.throttle import Throttle

if TYPE_CHECKING:
    from archiver.core import Core

bp = Blueprint("auth", __name__)

SESSION_KEY = "user_id"
WRONG = "Wrong email or password."
LATER = "Too many failed logins: try again later."
FAILURES_PER_CLIENT = 20
FAILURE_WINDOW = timedelta(minutes=15)

View = TypeVar("View", bound=Callable[..., ResponseReturnValue])


def init_app(app: Flask) -> None:
    """Give `app` its login throttle and make `current_user()` available to templates."""
    core: Core = app.extensions["arsip_core"]
    app.extensions["arsip_login_throttle"] = Throttle(
        core.sessions, "login", FAILURES_PER_CLIENT, FAILURE_WINDOW
    )
    app.jinja_env.globals["current_user"] = current_user


def _core() -> Core:
    return current_app.extensions["arsip_core"]


def _throttle() -> Throttle:
    return current_app.extensions["arsip_login_throttle"]


def current_user() -> User | None:
    """The logged-in user of this request, or None (loaded once per request)."""
    if "arsip_user" not in g:
        user_id = session.get(SESSION_KEY)
        user = None
        if isinstance(user_id, int):
            with _core().sessions() as db:
                user = db.get(User, user_id)
        g.arsip_user = user
    return g.arsip_user


def current_viewer() -> Viewer:
    """What this request may see: its user's mail and the list archives they may read.

    Visitors who are not logged in see the public list archives and no one's mail.
    """
    if "arsip_viewer" not in g:
        user = current_user()
        with _core().sessions() as db:
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
            title="Log in",
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
    per-client throttle turns away unchecked are not, so a flood of them cannot flood the
    audit log either.
    """
    client = request.remote_addr or "unknown"
    throttle = _throttle()
    if throttle.blocked(client):
        return _form(f"{WRONG} {LATER}", 429)
    email = request.form.get("email", "")
    password = request.form.get("password", "")
    user_id: int | None = None
    locked = False
    with _core().sessions.begin() as db:
        try:
            user = authenticate(db, email, password)
        except AccountLocked:
            user, locked = None, True
        if user is not None:
            user_id = user.id
            record(db, user.email, "login", user.email, {"ip": client})
        else:
            # Who typed it is unproved; what they typed is the target (never the password).
            why = {"ip": client, "reason": "locked" if locked else "rejected"}
            record(db, ANONYMOUS, "login.failed", email.strip().lower()[:320], why)
    if locked:
        throttle.hit(client)
        return _form(f"{WRONG} {LATER}", 429)
    if user_id is None:
        throttle.hit(client)
        return _form(WRONG, 401)
    # A new session, so an id planted in the visitor's cookie before login is worthless.
    session.clear()
    session[SESSION_KEY] = user_id
    session.permanent = True
    return redirect(safe_next(request.values.get("next")))


@bp.post("/logout")
def logout() -> ResponseReturnValue:
    """End the session (a POST with the CSRF token, so other sites cannot log you out)."""
    user = current_user()
    if user is not None:
        with _core().sessions.begin() as db:
            record(db, user.email, "logout", user.email, {"ip": request.remote_addr or "unknown"})
    session.clear()
    return redirect("/")
