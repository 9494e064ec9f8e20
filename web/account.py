"""A user's own account page: proving addresses by mail, removing them, choosing how
lists deliver, and the language of the pages.

An address counts for what a user sees only once it is verified, so adding one sends a
link to it. The link is a signed, expiring token rather than a stored row: it names the
user and the address, and only that user, logged in, can use it. A link forwarded to
someone else therefore attaches nothing to their account. As everywhere in the web UI,
opening a link only shows a button; the change happens on POST.
"""

from __future__ import annotations

import re
import time
from datetime import timedelta
from email.message import EmailMessage

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_babel import force_locale, gettext, lazy_gettext
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from archiver.accounts import (
    AccountExists,
    ApiToken,
    LoginAddress,
    User,
    UserAddress,
    add_address,
    claim,
    remove_address,
    revoke_token,
    tokens_of,
    verified_addresses,
    verified_owner,
)
from archiver.languages import LANGUAGES
from archiver.throttle import Throttle
from lists.admin import AdminError, MemberSettings
from lists.models import MailingList, Member, Role
from lists.tokens import sign, unsign
from web.audit_hooks import audit_change
from web.auth import current_user, login_required
from web.deps import get_core
from web.i18n import language_for, say
from web.member_settings import DELIVERY_LABELS, delivery_label
from web.notice_mail import notice_mail, queue_notice
from web.password_reset import bp as password_reset_bp

bp = Blueprint("account", __name__, url_prefix="/account")
bp.register_blueprint(password_reset_bp)  # /account/forgot-password, /account/reset-password

TOKEN_LIFETIME = 3 * 24 * 60 * 60
MAILS_PER_HOUR = 3
VERIFY_ADDRESS = "verify-address"
ADDRESS = re.compile(r"^[^@\s]+@[^@\s.]+(\.[^@\s.]+)+$")

TAKEN = lazy_gettext("That address belongs to another account.")
LATER = lazy_gettext("Too many confirmation mails: try again later.")


def make_token(secret_key: str, user_id: int, address: str, expires: int) -> str:
    """A link token saying `user_id` may verify `address` until `expires` (Unix time).

    Signed rather than stored (`lists.tokens.sign`), so pending verifications need no
    table and cost nothing when they are never used.
    """
    return sign(secret_key, VERIFY_ADDRESS, (str(user_id), address), expires)


def read_token(secret_key: str, token: str, now: float | None = None) -> tuple[int, str] | None:
    """The (user id, address) a token made by `make_token` names, or None when it was
    changed, was signed with another key, or has expired."""
    fields = unsign(secret_key, VERIFY_ADDRESS, token, now)
    if fields is None or len(fields) != 2 or not fields[0].isdigit():
        return None
    return int(fields[0]), fields[1]


def _throttle() -> Throttle:
    # Counted in the database, so one account gets the same few mails an hour however
    # many web processes serve it.
    return Throttle(get_core().sessions, "address-mail", MAILS_PER_HOUR, timedelta(hours=1))


def _user() -> User:
    user = current_user()
    assert user is not None  # login_required
    return user


def _confirmation_mail(address: str, link: str) -> EmailMessage:
    """The mail that asks `address` to confirm it, in the language of the page that asked
    (the account's)."""
    body = gettext(
        "Someone, probably you, asked to add %(address)s to an Arsip account.\n\n"
        "To confirm, open this link while logged in to that account and press the button:\n\n"
        "    %(link)s\n\n"
        "The link works for three days. If you did not ask for this, ignore this message:\n"
        "nothing changes without the button.\n",
        address=address,
        link=link,
    )
    return notice_mail(address, gettext("Confirm your address for Arsip"), body)


def _my_memberships(db: Session, addresses: tuple[str, ...]) -> list[tuple[Member, str]]:
    if not addresses:
        return []
    rows = db.execute(
        select(Member, MailingList)
        .join(MailingList, Member.list_id == MailingList.id)
        .where(Member.address.in_(addresses), Member.role == Role.MEMBER)
        .order_by(MailingList.domain, MailingList.name, Member.address)
    )
    return [(member, mlist.address) for member, mlist in rows]


def _page(error: str | None = None, status: int = 200, entered: str = "") -> ResponseReturnValue:
    user = _user()
    with get_core().sessions() as db:
        addresses = list(
            db.scalars(
                select(UserAddress)
                .where(UserAddress.user_id == user.id)
                .order_by(UserAddress.address)
            )
        )
        memberships = _my_memberships(db, verified_addresses(db, user))
        tokens = tokens_of(db, user)
        return (
            render_template(
                "account.html",
                title=gettext("Your account"),
                addresses=addresses,
                login_address=user.email,
                memberships=memberships,
                tokens=tokens,
                token_actions={t.id: url_for(".revoke", token_id=t.id) for t in tokens},
                deliveries=DELIVERY_LABELS,
                chosen_language=user.language,
                error=error,
                entered=entered,
            ),
            status,
        )


def _unknown_link() -> ResponseReturnValue:
    return (
        render_template(
            "message.html",
            title=gettext("Unknown or expired link"),
            text=gettext(
                "This link is unknown or has expired, or it is for another account. Nothing "
                "was changed. Log in to the account that asked, add the address again, and "
                "use the link in the new message."
            ),
        ),
        404,
    )


@bp.get("")
@login_required
def account() -> ResponseReturnValue:
    """The user's addresses and their lists' delivery settings."""
    return _page()


@bp.post("/addresses")
@login_required
def add() -> ResponseReturnValue:
    """Claim an address (unverified) and mail it a link that proves it is the user's."""
    user = _user()
    entered = request.form.get("address", "").strip()
    address = entered.lower()
    if len(address) > 320 or not ADDRESS.match(address):
        return _page(gettext("%(entered)r is not an email address.", entered=entered), 400, entered)
    core = get_core()
    with core.sessions.begin() as db:
        owner = verified_owner(db, address)
        if owner is not None and owner != user.id:
            return _page(str(TAKEN), 400, entered)
        if owner == user.id:
            flash(gettext("%(address)s is verified already.", address=address))
            return redirect(url_for(".account"))
        if not _throttle().allow(str(user.id)):
            return _page(str(LATER), 429, entered)
        add_address(db, db.get(User, user.id) or user, address)
        audit_change(db, "user.address.add", user.email, {"address": address, "verified": False})
        settings = core.settings
        expires = int(time.time()) + TOKEN_LIFETIME
        token = make_token(settings.signing_key(), user.id, address, expires)
        link = f"{settings.public_url}/account/verify/{token}"
        queue_notice(db, _confirmation_mail(address, link))
    notice = gettext(
        "We sent a link to %(address)s. Open it to confirm the address is yours.", address=address
    )
    flash(notice)
    return redirect(url_for(".account"))


@bp.get("/verify/<token>")
@login_required
def verify_page(token: str) -> ResponseReturnValue:
    """Say which address the link would verify, with the button that does it."""
    named = read_token(get_core().settings.signing_key(), token)
    if named is None or named[0] != _user().id:
        return _unknown_link()
    title = gettext("Confirm that %(address)s is yours", address=named[1])
    return render_template("account_verify.html", title=title)


@bp.post("/verify/<token>")
@login_required
def verify(token: str) -> ResponseReturnValue:
    """Mark the address verified, for the user the link names and nobody else."""
    user = _user()
    named = read_token(get_core().settings.signing_key(), token)
    if named is None or named[0] != user.id:
        return _unknown_link()
    address = named[1]
    try:
        with get_core().sessions.begin() as db:
            owner = db.get(User, user.id)
            if owner is None:
                return _unknown_link()
            if claim(db, owner, address) is None and verified_owner(db, address) is None:
                return _removed_meanwhile(address)
            # Verifying drops other accounts' unproved claims on the address.
            add_address(db, owner, address, verified=True)
            audit_change(db, "user.address.verify", user.email, {"address": address})
    except (AccountExists, IntegrityError):
        # Verified by another account first, perhaps at this very moment (the database's
        # unique index decides a race).
        return render_template("message.html", title=gettext("Not verified"), text=TAKEN), 409
    text = gettext(
        "%(address)s is verified: you now see its mail and can manage its list settings.",
        address=address,
    )
    return render_template("message.html", title=gettext("Address verified"), text=text)


def _removed_meanwhile(address: str) -> ResponseReturnValue:
    return (
        render_template(
            "message.html",
            title=gettext("Address not on your account"),
            text=gettext(
                "%(address)s is no longer on your account (it was removed after this link "
                "was sent), so nothing was changed. To add it again, add it on your account "
                "page and use the link in the new message.",
                address=address,
            ),
        ),
        404,
    )


@bp.post("/addresses/remove")
@login_required
def remove() -> ResponseReturnValue:
    """Take one of the user's addresses off the account (never the login address)."""
    user = _user()
    address = request.form.get("address", "").strip().lower()
    try:
        with get_core().sessions.begin() as db:
            removed = remove_address(db, user, address)
            if removed:
                audit_change(db, "user.address.remove", user.email, {"address": address})
    except LoginAddress:
        text = gettext(
            "%(address)s is the address you log in with; it cannot be removed.", address=address
        )
        return _page(text, 400)
    if not removed:
        return _page(gettext("%(address)s is not one of your addresses.", address=address), 404)
    notice = gettext(
        "%(address)s was removed from your account: you no longer see its mail here or "
        "manage its lists from this page. Its list memberships are unchanged.",
        address=address,
    )
    flash(notice)
    return redirect(url_for(".account"))


@bp.post("/lists/<int:member_id>")
@login_required
def delivery(member_id: int) -> ResponseReturnValue:
    """Change how one of the user's own memberships delivers posts."""
    user = _user()
    with get_core().sessions.begin() as db:
        member = db.get(Member, member_id)
        if (
            member is None
            or member.role != Role.MEMBER
            or member.address not in verified_addresses(db, user)
        ):
            abort(404)
        try:
            MemberSettings.from_form(request.form).apply(member)
        except AdminError as error:
            abort(400, say(error.text))
        list_address = db.get(MailingList, member.list_id)
        where = list_address.address if list_address is not None else gettext("the list")
        notice = gettext(
            "%(list)s now sends %(address)s: %(delivery)s.",
            list=where,
            address=member.address,
            delivery=delivery_label(member),
        )
    flash(notice)
    return redirect(url_for(".account"))


@bp.post("/language")
@login_required
def language() -> ResponseReturnValue:
    """Choose the pages' language for the account (empty: follow the browser's)."""
    chosen = request.form.get("language", "").strip().lower() or None
    if chosen is not None and chosen not in LANGUAGES:
        abort(400, gettext("Choose one of the languages offered."))
    user = _user()
    with get_core().sessions.begin() as db:
        account = db.get(User, user.id)
        if account is not None:
            account.language = chosen
    # Said in the language chosen, which the next page is in too.
    with force_locale(language_for(chosen)):
        if chosen is None:
            notice = gettext("The pages now follow your browser's language.")
        else:
            notice = gettext("The pages are now in %(language)s.", language=LANGUAGES[chosen])
    flash(notice)
    return redirect(url_for(".account"))


@bp.post("/tokens/<int:token_id>/revoke")
@login_required
def revoke(token_id: int) -> ResponseReturnValue:
    """Revoke one of the user's own API tokens: it stops working at once."""
    user = _user()
    revoke_token_of(user.id, user.email, token_id)
    return redirect(url_for(".account") + "#tokens")


def revoke_token_of(user_id: int, email: str, token_id: int) -> None:
    """Revoke the API token `token_id` of the account `user_id` (404 when it is not one
    of theirs), audited under the account's `email`, and say so on the next page; for
    the account's own page and the administrators' alike."""
    with get_core().sessions.begin() as db:
        row = db.get(ApiToken, token_id)
        if row is None or row.user_id != user_id:
            abort(404)
        revoke_token(db, token_id)
        audit_change(db, "user.token.revoke", email, {"id": token_id})
    flash(gettext("Token %(id)s is revoked: it no longer works.", id=token_id))
