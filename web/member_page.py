"""A member's own settings page, reached without an account through a signed link.

Most people on a list have no Arsip account. Anyone may ask, on a list's page, for a link
to an address's settings; the link goes to that address only, and the answer is the same
whether or not the address is a member (or the list exists), so the form tells nobody who
is subscribed to what. Mail is throttled per address and per client (counted in the
database, so every web process shares the limits), so the form cannot flood a mailbox.

The link is a signed token (`lists.tokens.member_token`) naming the list, the address and
an expiry: holding it shows that the mailbox received it, as with confirmation links, so
it needs no stored state. Opening it only shows the settings; saving and leaving happen on
POST with the session's CSRF token, like every other form, and leaving goes through the
list engine's membership code so the goodbye notice is the same as on every other path.
"""

from __future__ import annotations

from datetime import timedelta

from flask import (
    Blueprint,
    Response,
    flash,
    redirect,
    render_template,
    request,
    url_for,
)
from flask.typing import ResponseReturnValue
from flask_babel import gettext, ngettext
from sqlalchemy import select
from sqlalchemy.orm import Session

from archiver.throttle import Throttle
from lists.admin import AdminError, MemberSettings, find_list
from lists.membership import SETTINGS_LINK_DAYS, BadAddress, one_address
from lists.models import MailingList, Member, Role
from lists.tokens import read_member_token
from web.deps import get_core, get_membership
from web.i18n import say
from web.member_settings import DELIVERY_LABELS, delivery_label

bp = Blueprint("member_page", __name__, url_prefix="/lists")

LINKS_PER_ADDRESS = 3  # to one address, over all lists
REQUESTS_PER_CLIENT = 10  # from one client address
THROTTLE_WINDOW = timedelta(hours=1)


class LinkRefused(Exception):
    """The link cannot open a settings page; carries the page that says why."""

    def __init__(self, title: str, text: str, status: int) -> None:
        super().__init__(title)
        self.title = title
        self.text = text
        self.status = status


def _throttles() -> tuple[Throttle, Throttle]:
    """Counts in the database, so every web process shares them."""
    sessions = get_core().sessions
    return (
        Throttle(sessions, "member-link-address", LINKS_PER_ADDRESS, THROTTLE_WINDOW),
        Throttle(sessions, "member-link-client", REQUESTS_PER_CLIENT, THROTTLE_WINDOW),
    )


def _message(title: str, text: str, status: int = 200) -> ResponseReturnValue:
    return render_template("message.html", title=title, text=text), status


@bp.after_request
def _private(response: Response) -> Response:
    """The token in the URL is a key: no caching, and no Referer carrying it elsewhere."""
    response.headers["Cache-Control"] = "no-store"
    response.headers["Referrer-Policy"] = "no-referrer"
    return response


@bp.errorhandler(LinkRefused)
def _refused(error: LinkRefused) -> ResponseReturnValue:
    return _message(error.title, error.text, error.status)


def _request_page(
    list_address: str, error: str | None = None, entered: str = "", status: int = 200
) -> ResponseReturnValue:
    return (
        render_template(
            "member_request.html",
            title=gettext("Your subscription to %(list)s", list=list_address.lower()),
            list_address=list_address.lower(),
            days=SETTINGS_LINK_DAYS,
            error=error,
            entered=entered,
        ),
        status,
    )


@bp.get("/<list_address>/member")
def request_form(list_address: str) -> ResponseReturnValue:
    """The form that mails a member a link to their settings (the same for every list, so
    it does not tell which lists exist)."""
    if "@" not in list_address:
        text = gettext("A list's address has the form name@domain.")
        return _message(gettext("No such list"), text, 404)
    return _request_page(list_address)


@bp.post("/<list_address>/member")
def request_link(list_address: str) -> ResponseReturnValue:
    """Mail the address a signed link to its settings, if it is a member of the list.

    The answer is the same for members, non-members and unknown lists, and whether or not
    the address had too many links lately; only a client asking too often is told so.
    """
    entered = request.form.get("email", "").strip()
    try:
        address = one_address(entered)
    except BadAddress as error:
        why = say(error.text)
        return _request_page(list_address, f"{why[:1].upper()}{why[1:]}.", entered, 400)
    per_address, per_client = _throttles()
    if not per_client.allow(request.remote_addr or "unknown"):
        return _message(
            gettext("Too many requests"),
            gettext("This network asked for many settings links within the hour: try again later."),
            429,
        )
    # Counted whether or not the address is a member, so the limit tells nothing either.
    if per_address.allow(address):
        core = get_core()
        with core.sessions.begin() as session:
            mlist = find_list(session, list_address)
            if mlist is not None:
                get_membership().mail_settings_link(
                    session, mlist, address, core.settings.signing_key()
                )
    return _message(
        gettext("Check your mail"),
        ngettext(
            "If %(address)s is a member of %(list)s, a link to its settings is on its way "
            "there. The link works for %(num)s day. If nothing arrives, check the spelling "
            "of the address and your spam folder, or ask again later.",
            "If %(address)s is a member of %(list)s, a link to its settings is on its way "
            "there. The link works for %(num)s days. If nothing arrives, check the spelling "
            "of the address and your spam folder, or ask again later.",
            SETTINGS_LINK_DAYS,
            address=address,
            list=list_address.lower(),
        ),
    )


def _bad_link(list_address: str) -> LinkRefused:
    return LinkRefused(
        gettext("Unknown or expired link"),
        gettext(
            "This settings link is incomplete, was changed on the way, or has expired, so "
            "nothing was changed. Ask for a new link on %(page)s.",
            page=_membership_page(list_address),
        ),
        404,
    )


def _membership_page(list_address: str) -> str:
    return f"{get_core().settings.public_url}/lists/{list_address.lower()}/member"


def _member(session: Session, list_address: str, token: str) -> tuple[MailingList, Member]:
    """The list and the membership a settings link names; `LinkRefused` if there is none."""
    named = read_member_token(get_core().settings.signing_key(), token)
    if named is None or named[0] != list_address.lower():
        raise _bad_link(list_address)
    mlist = find_list(session, named[0])
    if mlist is None:
        raise LinkRefused(
            gettext("No such list"),
            gettext(
                "There is no mailing list at this address (any more), so it sends no mail and "
                "has no settings to change."
            ),
            404,
        )
    member = session.scalar(
        select(Member).where(
            Member.list_id == mlist.id, Member.address == named[1], Member.role == Role.MEMBER
        )
    )
    if member is None:
        raise LinkRefused(
            gettext("Not a member"),
            gettext(
                "%(address)s is not a member of %(list)s (any more), so there are no "
                "settings to change and the list sends it no mail. To join again, use the "
                "subscribe form on the list's page.",
                address=named[1],
                list=mlist.address,
            ),
            404,
        )
    return mlist, member


def _settings(
    mlist: MailingList,
    member: Member,
    token: str,
    error: str | None = None,
    status: int = 200,
) -> ResponseReturnValue:
    return (
        render_template(
            "member_settings.html",
            title=gettext("Your settings on %(list)s", list=mlist.address),
            mlist=mlist,
            member=member,
            token=token,
            deliveries=DELIVERY_LABELS,
            days=SETTINGS_LINK_DAYS,
            error=error,
        ),
        status,
    )


@bp.get("/<list_address>/member/<token>")
def settings_page(list_address: str, token: str) -> ResponseReturnValue:
    """Show the member's settings with the buttons that change them (GET changes nothing)."""
    with get_core().sessions() as session:
        mlist, member = _member(session, list_address, token)
        session.expunge_all()
    return _settings(mlist, member, token)


@bp.post("/<list_address>/member/<token>")
def save(list_address: str, token: str) -> ResponseReturnValue:
    """Save the delivery and name the member chose."""
    with get_core().sessions.begin() as session:
        mlist, member = _member(session, list_address, token)
        try:
            MemberSettings.from_form(request.form).apply(member)
        except AdminError as error:  # nothing was changed
            return _settings(mlist, member, token, str(error), 400)
        notice = gettext(
            "Saved: %(list)s now sends %(address)s: %(delivery)s.",
            list=mlist.address,
            address=member.address,
            delivery=delivery_label(member),
        )
        target = url_for(".settings_page", list_address=mlist.address, token=token)
    flash(notice)
    return redirect(target, 303)


@bp.post("/<list_address>/member/<token>/leave")
def leave(list_address: str, token: str) -> ResponseReturnValue:
    """Unsubscribe the member at once: the link, mailed to the address, is its consent."""
    with get_core().sessions.begin() as session:
        mlist, member = _member(session, list_address, token)
        address = member.address
        get_membership().unsubscribe_now(session, mlist, address)
    return _message(
        gettext("Unsubscribed"),
        gettext(
            "%(address)s has left %(list)s and will get no more mail from it. To join "
            "again, use the subscribe form on the list's page.",
            address=address,
            list=mlist.address,
        ),
    )
