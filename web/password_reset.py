"""Forgotten passwords: a form that mails a one-time link, and the page the link opens.

The link is `archiver.password_reset`'s (the one `arsip users reset-link` prints): signed,
good for 24 hours, and spent once the password changes. An account an administrator has
just made has no password yet; its owner sets the first one the same way.

The form answers in the same words whether or not an account has the address (and mails
nothing to unknown or disabled accounts), so it tells nobody which accounts exist.
Requests are limited per address and per client address, counted in the database so that
every web process shares the counts: the form cannot be used to flood a mailbox.
"""

from __future__ import annotations

from datetime import timedelta

from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_babel import force_locale, gettext, lazy_gettext
from sqlalchemy.orm import Session

from archiver.accounts import AccountError, BadEmail, User, find_user, normalise_email
from archiver.audit import ANONYMOUS, record
from archiver.password_reset import LIFETIME_SECONDS, reset_link, reset_password, user_for_reset
from archiver.throttle import Throttle
from web.audit_hooks import client_ip
from web.deps import get_core
from web.i18n import language_for
from web.notice_mail import notice_mail, queue_notice

bp = Blueprint("password_reset", __name__)

MAILS_PER_ADDRESS = 3  # an hour
REQUESTS_PER_CLIENT = 10  # an hour, across all addresses
LATER = lazy_gettext("Too many requests from here: try again in an hour.")


def mail_reset_link(session: Session, user: User) -> None:
    """Queue the mail with a fresh reset link to `user`, in the language they chose for
    the pages (or this request's), in the caller's transaction."""
    settings = get_core().settings
    link = reset_link(settings.public_url, settings.signing_key(), user)
    with force_locale(language_for(user.language)):
        subject = gettext("Set your password for Arsip")
        body = gettext(
            "Someone, probably you or an administrator, asked for a link to set the "
            "password of the Arsip account %(email)s.\n\n"
            "Open this link to choose a new password:\n\n    %(link)s\n\n"
            "The link works once, for %(hours)s hours. If you did not ask for it, ignore "
            "this message: your password stays as it is.\n",
            email=user.email,
            link=link,
            hours=LIFETIME_SECONDS // 3600,
        )
    queue_notice(session, notice_mail(user.email, subject, body))


def _throttles() -> tuple[Throttle, Throttle]:
    sessions = get_core().sessions
    hour = timedelta(hours=1)
    return (
        Throttle(sessions, "reset-address", MAILS_PER_ADDRESS, hour),
        Throttle(sessions, "reset-client", REQUESTS_PER_CLIENT, hour),
    )


def _form(error: str = "", status: int = 200, email: str = "") -> ResponseReturnValue:
    page = render_template(
        "forgot.html", title=gettext("Forgot your password?"), error=error, email=email
    )
    return page, status


@bp.get("/forgot-password")
def forgot() -> ResponseReturnValue:
    """The form that asks for the account's email."""
    return _form()


@bp.post("/forgot-password")
def forgot_post() -> ResponseReturnValue:
    """Mail a reset link if an enabled account has the address; say the same either way."""
    entered = request.form.get("email", "").strip()
    try:
        email = normalise_email(entered)
    except BadEmail:
        return _form(gettext("%(entered)r is not an email address.", entered=entered), 400, entered)
    per_address, per_client = _throttles()
    client = client_ip()
    if not per_client.allow(client):
        return _form(str(LATER), 429, entered)
    # Counted for unknown addresses too, and never said: the answer stays the same.
    if per_address.allow(email):
        with get_core().sessions.begin() as session:
            user = find_user(session, email)
            if user is not None and user.disabled_at is None:
                mail_reset_link(session, user)
                details = {"via": "forgot-password", "ip": client}
                record(session, ANONYMOUS, "user.reset-link", user.email, details)
    text = gettext(
        "If an account uses %(email)s, we have mailed it a link to set a new password. "
        "The link works for %(hours)s hours. Nothing arrived? Look in the spam folder, or "
        "ask an administrator.",
        email=email,
        hours=LIFETIME_SECONDS // 3600,
    )
    return render_template("message.html", title=gettext("Look in your mail"), text=text)


def _unknown_link() -> ResponseReturnValue:
    text = gettext(
        "This link is unknown, has expired, or has been used already (it works once). "
        "Nothing was changed. Ask for a new link."
    )
    page = render_template("reset.html", title=gettext("Unknown or expired link"), text=text)
    return page, 404


def _reset_form(email: str, error: str = "", status: int = 200) -> ResponseReturnValue:
    title = gettext("Set a new password for %(email)s", email=email)
    return render_template("reset.html", title=title, email=email, error=error), status


@bp.get("/reset-password/<token>")
def reset(token: str) -> ResponseReturnValue:
    """The form for a new password, while the link holds (opening it changes nothing)."""
    with get_core().sessions() as session:
        user = user_for_reset(session, get_core().settings.signing_key(), token)
        if user is None:
            return _unknown_link()
        return _reset_form(user.email)


@bp.post("/reset-password/<token>")
def reset_post(token: str) -> ResponseReturnValue:
    """Set the password (the rules of `arsip users password`), ending every session of
    the account and the link with them; then to the login page."""
    password = request.form.get("password", "")
    core = get_core()
    with core.sessions.begin() as session:
        user = user_for_reset(session, core.settings.signing_key(), token)
        if user is None:
            return _unknown_link()
        email = user.email
        if password != request.form.get("repeat", ""):
            return _reset_form(email, gettext("The two passwords differ."), 400)
        try:
            changed = reset_password(session, core.settings.signing_key(), token, password)
        except AccountError:
            return _reset_form(email, gettext("Choose a password."), 400)
        if changed is not None:
            record(session, email, "user.password", email, {"via": "reset-link", "ip": client_ip()})
    flash(gettext("Your password is set. Log in with it."))
    return redirect(url_for("auth.login"))
