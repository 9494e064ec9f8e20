"""The pages that links in list mail lead to: confirming a request, and unsubscribing.

Neither acts on GET. Mail scanners and link prefetchers open every link in a message, so
opening a link only shows what its button would do; the change happens on POST. The one
exception to the session's CSRF token is the one-click unsubscribe POST (RFC 8058): mail
providers send it without cookies, and the link's signature is the authorisation.
"""

from __future__ import annotations

from flask import Blueprint, render_template, request
from flask.typing import ResponseReturnValue
from flask_babel import gettext

from lists.admin import find_list
from lists.models import MailingList
from lists.tokens import signature_matches
from web.csrf import csrf_exempt
from web.deps import get_core, get_membership
from web.i18n import say

bp = Blueprint("lists", __name__, url_prefix="/lists")

MEMBERSHIP_ACTIONS = ("subscribe", "unsubscribe")


def _confirmable(action: str) -> bool:
    """Requests the link confirms: joining, leaving and mailed settings (an owner's
    approval needs the owner's reply)."""
    return action in MEMBERSHIP_ACTIONS or action.startswith("set ")


def _title(address: str, action: str, list_address: str) -> str:
    # Whole sentences, so that each language can order the words its own way.
    named = {"address": address, "list": list_address}
    if action == "subscribe":
        return gettext("Confirm that %(address)s joins %(list)s", **named)
    if action == "unsubscribe":
        return gettext("Confirm that %(address)s leaves %(list)s", **named)
    return gettext(
        "Confirm that %(address)s changes its delivery from %(list)s (%(action)s)",
        action=action,
        **named,
    )


def _message(title: str, text: str, status: int = 200) -> ResponseReturnValue:
    return render_template("message.html", title=title, text=text), status


def _unknown_confirmation() -> ResponseReturnValue:
    return _message(
        gettext("Unknown or expired link"),
        gettext(
            "This confirmation link is unknown, has already been used, or has expired. "
            "Nothing was changed. If you still want to join or leave the list, ask again and "
            "use the link in the new confirmation message."
        ),
        404,
    )


def _bad_unsubscribe_link(status: int) -> ResponseReturnValue:
    return _message(
        gettext("This unsubscribe link is not valid"),
        gettext(
            "The link is incomplete or was changed on the way, so nothing was changed. Open "
            "the whole link from a recent message of the list, or write to the list's leave "
            "address (for the list dev@example.org that is dev-leave@example.org)."
        ),
        status,
    )


def _no_such_list() -> ResponseReturnValue:
    return _message(
        gettext("No such list"),
        gettext("There is no mailing list at this address (any more), so it sends no mail."),
        404,
    )


@bp.get("/confirm/<token>")
def confirm_page(token: str) -> ResponseReturnValue:
    """Say what the confirmation would do, with the button that does it."""
    with get_core().sessions() as session:
        pending = get_membership().pending_for(session, token)
        if pending is None or not _confirmable(pending.action):
            return _unknown_confirmation()
        mlist = session.get(MailingList, pending.list_id)
        if mlist is None:
            return _unknown_confirmation()
        title = _title(pending.address, pending.action, mlist.address)
    return render_template("confirm.html", title=title)


@bp.post("/confirm/<token>")
def confirm(token: str) -> ResponseReturnValue:
    """Act on the confirmation (once: the token is gone afterwards)."""
    membership = get_membership()
    with get_core().sessions.begin() as session:
        pending = membership.pending_for(session, token)
        if pending is None or not _confirmable(pending.action):
            return _unknown_confirmation()
        outcome = membership.confirm_link(session, token)
    return _message(gettext("Confirmed"), say(outcome))


@bp.get("/<path:list_address>/unsubscribe")
def unsubscribe_page(list_address: str) -> ResponseReturnValue:
    """Show the one button that unsubscribes the signed address (nothing happens on GET)."""
    address = _signed_address(list_address)
    if address is None:
        return _bad_unsubscribe_link(400)
    with get_core().sessions() as session:
        mlist = find_list(session, list_address)
    if mlist is None:
        return _no_such_list()
    return render_template(
        "unsubscribe.html",
        title=gettext("Unsubscribe from %(list)s", list=mlist.address),
        address=address,
        list_address=mlist.address,
    )


@bp.post("/<path:list_address>/unsubscribe")
@csrf_exempt
def unsubscribe(list_address: str) -> ResponseReturnValue:
    """RFC 8058 one-click unsubscription, authorised by the link's signature alone.

    The answer is the same whether or not the address was a member, so the link tells
    nobody more than its holder already knows.
    """
    address = _signed_address(list_address)
    if address is None:
        return _bad_unsubscribe_link(403)
    with get_core().sessions.begin() as session:
        mlist = find_list(session, list_address)
        if mlist is None:
            return _no_such_list()
        get_membership().unsubscribe_now(session, mlist, address)
    text = gettext(
        "%(address)s will get no more mail from %(list)s.", address=address, list=mlist.address
    )
    return _message(gettext("Unsubscribed"), text)


def _signed_address(list_address: str) -> str | None:
    """The address the link is for, if its signature is the list engine's own."""
    address = request.args.get("address", "").strip().lower()
    signature = request.args.get("sig", "")
    # The signature is URL-safe base64; anything else cannot match (and compare_digest
    # would refuse a str beyond ASCII).
    if not address or not signature or not signature.isascii():
        return None
    secret_key = get_core().settings.signing_key()
    if not signature_matches(secret_key, list_address, address, signature):
        return None
    return address
