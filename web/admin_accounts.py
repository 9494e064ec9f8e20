"""Accounts run by administrators: `arsip users` in the browser.

Make an account (its owner sets the password through a reset link, mailed or handed
over), change its role, disable or enable it, make a new reset link, revoke its API
tokens, delete it. Every change goes through `archiver.accounts`, which refuses, as on the
command line, to leave the service without an enabled administrator; and every change
is audited in its own transaction.
"""

from __future__ import annotations

from collections.abc import Callable

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_babel import gettext, lazy_gettext
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from archiver.accounts import (
    AccountExists,
    ApiToken,
    BadEmail,
    LastAdministrator,
    Role,
    User,
    add_user,
    change_role,
    delete_user,
    require_another_administrator,
    set_disabled,
    tokens_of,
    verified_addresses,
)
from archiver.password_reset import LIFETIME_SECONDS, reset_link
from web.account import revoke_token_of
from web.audit_hooks import audit_change, web_actor
from web.auth import admin_only, current_user
from web.deps import get_core
from web.password_reset import mail_reset_link

bp = Blueprint("accounts", __name__, url_prefix="/accounts")

ROLES = {
    Role.ADMIN: lazy_gettext("administrator"),
    Role.AUDITOR: lazy_gettext("auditor"),
    Role.USER: lazy_gettext("user"),
}
ROLE_HINTS = {
    Role.ADMIN: lazy_gettext("runs the service, its lists and accounts; sees all mail"),
    Role.AUDITOR: lazy_gettext("sees all mail, the audit log, retention and holds"),
    Role.USER: lazy_gettext("sees the mail of their own addresses and their lists"),
}


def _account(session: Session, user_id: int) -> User:
    user = session.get(User, user_id)
    if user is None:
        abort(404)
    return user


def _index(
    error: str = "", status: int = 200, form: dict[str, str] | None = None
) -> ResponseReturnValue:
    with get_core().sessions() as session:
        users = list(session.scalars(select(User).order_by(User.email)))
        tokens = dict(
            session.execute(select(ApiToken.user_id, func.count()).group_by(ApiToken.user_id)).all()
        )
        page = render_template(
            "admin_accounts.html",
            title=gettext("Accounts"),
            users=users,
            tokens=tokens,
            roles=ROLES,
            role_hints=ROLE_HINTS,
            form=form or {"role": Role.USER, "mail": "1"},
            error=error,
        )
    return page, status


@bp.get("")
@admin_only
def index() -> ResponseReturnValue:
    """Every account with its role and state, and the form for a new one."""
    return _index()


@bp.post("")
@admin_only
def create() -> ResponseReturnValue:
    """Make an account without a password; its owner sets one through a reset link,
    mailed now or shown here to hand over."""
    form = {key: request.form.get(key, "") for key in ("email", "role", "mail")}
    if form["role"] not in ROLES:
        return _index(gettext("Choose a role."), 400, form)
    mail = bool(form["mail"])
    try:
        with get_core().sessions.begin() as session:
            user = add_user(session, form["email"], form["role"])
            audit_change(session, "user.add", user.email, {"role": form["role"], "password": False})
            link = _reset_link(session, user, mail)
            user_id, email = user.id, user.email
    except BadEmail:
        return _index(gettext("Give the email address the account logs in with."), 400, form)
    except AccountExists:
        return _index(gettext("An account for that address exists already."), 400, form)
    flash(gettext("Made the account %(email)s.", email=email))
    return _detail(user_id, link=link, mailed=mail)


def _reset_link(session: Session, user: User, mail: bool) -> str:
    """Mail `user` a reset link, or make one to show: audited either way."""
    details = {"hours": LIFETIME_SECONDS // 3600, "mailed": mail}
    audit_change(session, "user.reset-link", user.email, details)
    if mail:
        mail_reset_link(session, user)
        return ""
    settings = get_core().settings
    return reset_link(settings.public_url, settings.signing_key(), user)


def _detail(
    user_id: int, error: str = "", status: int = 200, link: str = "", mailed: bool = False
) -> ResponseReturnValue:
    with get_core().sessions() as session:
        user = _account(session, user_id)
        tokens = tokens_of(session, user)
        page = render_template(
            "admin_account.html",
            title=user.email,
            account=user,
            addresses=verified_addresses(session, user),
            tokens=tokens,
            token_actions={
                t.id: url_for(".revoke", user_id=user.id, token_id=t.id) for t in tokens
            },
            roles=ROLES,
            role_hints=ROLE_HINTS,
            is_me=_is_me(user),
            link=link,
            mailed=mailed,
            hours=LIFETIME_SECONDS // 3600,
            error=error,
        )
    return page, status


def _is_me(user: User) -> bool:
    me = current_user()
    return me is not None and me.id == user.id


@bp.get("/<int:user_id>")
@admin_only
def detail(user_id: int) -> ResponseReturnValue:
    """One account: its role, state, addresses and API tokens, with what can be done."""
    return _detail(user_id)


LAST_ADMINISTRATOR = lazy_gettext(
    "This is the last enabled administrator: make another account administrator first."
)
NOT_YOURSELF = lazy_gettext("Ask another administrator to do this to your own account.")


def _change(
    user_id: int, notice: str, action: Callable[[Session, User], None], *, others_only: bool = False
) -> ResponseReturnValue:
    """Carry out `action(session, user)` on the account, and come back to its page with
    `notice`. The last enabled administrator is refused (status 400, nothing changed), as
    is, with `others_only`, the administrator's own account: they would lock themselves
    out of the page they are on."""
    try:
        with get_core().sessions.begin() as session:
            user = _account(session, user_id)
            if others_only and _is_me(user):
                return _detail(user_id, str(NOT_YOURSELF), 400)
            action(session, user)
            still_admin = not _is_me(user) or user.role == Role.ADMIN
    except LastAdministrator:
        return _detail(user_id, str(LAST_ADMINISTRATOR), 400)
    flash(notice)
    if not still_admin:  # an administrator who made themselves something else
        return redirect(url_for("account.account"))
    return redirect(url_for(".detail", user_id=user_id))


@bp.post("/<int:user_id>/role")
@admin_only
def role(user_id: int) -> ResponseReturnValue:
    """Give the account another role; the last enabled administrator stays one."""
    new = request.form.get("role", "")
    if new not in ROLES:
        abort(400, gettext("Choose a role."))

    def act(session: Session, user: User) -> None:
        change_role(session, user, new, web_actor())

    return _change(user_id, gettext("The role is now %(role)s.", role=ROLES[Role(new)]), act)


@bp.post("/<int:user_id>/disable")
@admin_only
def disable(user_id: int) -> ResponseReturnValue:
    """Disable the account: its sessions end, logins and API tokens are refused. The
    last enabled administrator cannot be disabled (nobody could undo it from here)."""

    def act(session: Session, user: User) -> None:
        require_another_administrator(session, user)
        if set_disabled(user, True):
            audit_change(session, "user.disable", user.email)

    return _change(user_id, gettext("The account is disabled."), act, others_only=True)


@bp.post("/<int:user_id>/enable")
@admin_only
def enable(user_id: int) -> ResponseReturnValue:
    """Let a disabled account log in and use its API tokens again."""

    def act(session: Session, user: User) -> None:
        if set_disabled(user, False):
            audit_change(session, "user.enable", user.email)

    return _change(user_id, gettext("The account is enabled."), act)


@bp.post("/<int:user_id>/reset-link")
@admin_only
def make_reset_link(user_id: int) -> ResponseReturnValue:
    """A new link with which the account's owner sets a password: mailed to them, or
    shown here to hand over."""
    mail = bool(request.form.get("mail"))
    with get_core().sessions.begin() as session:
        user = _account(session, user_id)
        if user.disabled_at is not None:
            return _detail(user_id, gettext("Enable the account first."), 400)
        link = _reset_link(session, user, mail)
        email = user.email
    if mail:
        flash(gettext("Mailed a link to %(email)s.", email=email))
    return _detail(user_id, link=link, mailed=mail)


@bp.post("/<int:user_id>/tokens/<int:token_id>/revoke")
@admin_only
def revoke(user_id: int, token_id: int) -> ResponseReturnValue:
    """Revoke one of the account's API tokens: it stops working at once."""
    with get_core().sessions() as session:
        email = _account(session, user_id).email
    revoke_token_of(user_id, email, token_id)
    return redirect(url_for(".detail", user_id=user_id) + "#tokens")


@bp.get("/<int:user_id>/delete")
@admin_only
def confirm_delete(user_id: int) -> ResponseReturnValue:
    """What deleting the account takes with it, with the button that does it."""
    with get_core().sessions() as session:
        user = _account(session, user_id)
        return render_template(
            "admin_account_delete.html",
            title=gettext("Delete the account %(email)s", email=user.email),
            account=user,
            addresses=verified_addresses(session, user),
            tokens=len(tokens_of(session, user)),
        )


@bp.post("/<int:user_id>/delete")
@admin_only
def delete(user_id: int) -> ResponseReturnValue:
    """Delete the account with its addresses, tokens and sessions (never the last
    enabled administrator); the audit log keeps what it did."""
    with get_core().sessions() as session:
        if _is_me(_account(session, user_id)):
            return _detail(user_id, str(NOT_YOURSELF), 400)
    try:
        with get_core().sessions.begin() as session:
            user = _account(session, user_id)
            email = user.email
            delete_user(session, user, web_actor())
    except LastAdministrator:
        return _detail(user_id, str(LAST_ADMINISTRATOR), 400)
    flash(gettext("Deleted the account %(email)s.", email=email))
    return redirect(url_for(".index"))
