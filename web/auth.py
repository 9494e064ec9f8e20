"""Logging in and out, and who is looking: the helpers every other blueprint asks.

The session cookie holds only the user's id; the account is loaded again on each
request, so a deleted account is logged out at once. Wrong passwords are throttled twice:
per account (in the database, `archiver.accounts`) and per client address (here, in
memory), so one address cannot try a few passwords on every account either.
"""

from __future__ import annotations

import functools
import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar
from urllib.parse import urlencode, urlsplit

from flask import Blueprint, Flask, current_app, g, redirect, render_template, request, session
from flask.typing import ResponseReturnValue

from archiver.accounts import AccountLocked, User, authenticate, viewer_for
from archiver.search.viewer import Viewer
from lists.access import readable_list_ids

if TYPE_CHECKING:
    from archiver.service import Core

bp = Blueprint("auth", __name__)

SESSION_KEY = "user_id"
WRONG = "Wrong email or password."
LATER = "Too many failed logins: try again later."

View = TypeVar("View", bound=Callable[..., ResponseReturnValue])


class LoginThrottle:
    """Failed logins per client address within a sliding window, kept in memory.

    Memory is enough: it only has to slow guessing down, and a restart forgetting the
    count does little for an attacker while the per-account lock-out lives in the database.
    """

    def __init__(self, limit: int = 20, window: float = 15 * 60) -> None:
        self.limit = limit
        self.window = window
        self._failures: dict[str, deque[float]] = defaultdict(deque)
        self._lock = threading.Lock()

    def blocked(self, client: str, now: float | None = None) -> bool:
        """Whether `client` has failed `limit` times within the window."""
        now = time.monotonic() if now is None else now
        with self._lock:
            failures = self._failures.get(client)
            if failures is None:
                return False
            while failures and failures[0] <= now - self.window:
                failures.popleft()
            if not failures:
                del self._failures[client]
                return False
            return len(failures) >= self.limit

    def failed(self, client: str, now: float | None = None) -> None:
        """Count one failed login from `client`."""
        with self._lock:
            self._failures[client].append(time.monotonic() if now is None else now)


def init_app(app: Flask) -> None:
    """Give `app` its login throttle and make `current_user()` available to templates."""
    app.extensions["arsip_login_throttle"] = LoginThrottle()
    app.jinja_env.globals["current_user"] = current_user


def _core() -> Core:
    return current_app.extensions["arsip_core"]


def _throttle() -> LoginThrottle:
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
            if user is None:
                viewer = Viewer.person(lists=readable_list_ids(db, ()))
            else:
                viewer = viewer_for(db, user)
                if not viewer.sees_all:
                    addresses = sorted(viewer.addresses)
                    viewer = Viewer.person(*addresses, lists=readable_list_ids(db, addresses))
        g.arsip_viewer = viewer
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
    """Check the password; on success start a fresh session that lasts at most 12 hours."""
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
    if locked:
        throttle.failed(client)
        return _form(f"{WRONG} {LATER}", 429)
    if user_id is None:
        throttle.failed(client)
        return _form(WRONG, 401)
    # A new session, so an id planted in the visitor's cookie before login is worthless.
    session.clear()
    session[SESSION_KEY] = user_id
    session.permanent = True
    return redirect(safe_next(request.values.get("next")))


@bp.post("/logout")
def logout() -> ResponseReturnValue:
    """End the session (a POST with the CSRF token, so other sites cannot log you out)."""
    session.clear()
    return redirect("/")
