"""Cross-site request forgery protection for the web UI's forms.

Every form that changes something carries a random token that also lives in the
visitor's signed session cookie; another site can make a browser post to Arsip, but it
cannot read the token, so its post is refused. The few views that are authorised some
other way (a signed link that mail providers post to without cookies) are marked
`csrf_exempt`.
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Callable
from typing import TypeVar

from flask import Flask, current_app, render_template, request, session
from flask.typing import ResponseReturnValue
from flask_babel import gettext

FIELD = "csrf_token"
HEADER = "X-CSRF-Token"
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})

View = TypeVar("View", bound=Callable[..., ResponseReturnValue])


def init_app(app: Flask) -> None:
    """Check every state-changing request of `app` and give templates `csrf_token()`."""
    app.jinja_env.globals["csrf_token"] = csrf_token
    app.before_request(_check)


def csrf_token() -> str:
    """This visitor's token, made on first use (for a hidden `csrf_token` form field)."""
    token = session.get(FIELD)
    if not isinstance(token, str):
        token = secrets.token_urlsafe(32)
        session[FIELD] = token
    return token


def csrf_exempt(view: View) -> View:
    """Mark a view that authorises its posts by other means than the session's token."""
    view.csrf_exempt = True  # type: ignore[attr-defined]
    return view


def _check() -> ResponseReturnValue | None:
    if request.method not in UNSAFE_METHODS or request.endpoint is None:
        return None  # safe methods, and requests no view will answer (404, 405)
    view = current_app.view_functions.get(request.endpoint)
    if getattr(view, "csrf_exempt", False):
        return None
    expected = session.get(FIELD)
    sent = request.form.get(FIELD) or request.headers.get(HEADER)
    # Compared as bytes: compare_digest refuses str with characters beyond ASCII.
    if isinstance(expected, str) and sent and hmac.compare_digest(sent.encode(), expected.encode()):
        return None
    return (
        render_template(
            "message.html",
            title=gettext("This form has expired"),
            text=gettext(
                "The form could not be checked, perhaps because it was open for a long "
                "time or cookies are blocked. Go back, reload the page and try again."
            ),
        ),
        400,
    )
