"""A user's own account page: proving addresses by mail, and choosing how lists deliver.

An address counts for what a user sees only once it is verified, so adding one sends a
link to it. The link is a signed, expiring token rather than a stored row: it names the
user and the address, and only that user, logged in, can use it. A link forwarded to
someone else therefore attaches nothing to their account. As everywhere in the web UI,
opening a link only shows a button; the change happens on POST.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import threading
import time
from collections import defaultdict, deque
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import TYPE_CHECKING

from flask import Blueprint, abort, current_app, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from sqlalchemy import select
from sqlalchemy.orm import Session

from archiver.accounts import User, UserAddress, add_address, verified_addresses
from lists.models import Delivery, MailingList, Member, Role
from lists.outbox import send_notice
from web.auth import current_user, login_required

if TYPE_CHECKING:
    from archiver.service import Core

bp = Blueprint("account", __name__, url_prefix="/account")

TOKEN_LIFETIME = 3 * 24 * 60 * 60
MAILS_PER_HOUR = 3
SIGNATURE_BYTES = 24
ADDRESS = re.compile(r"^[^@\s]+@[^@\s.]+(\.[^@\s.]+)+$")

TAKEN = "That address belongs to another account."
LATER = "Too many confirmation mails: try again later."
DELIVERY_LABELS = {
    Delivery.REGULAR: "each post",
    Delivery.PLAIN_DIGEST: "plain digest",
    Delivery.MIME_DIGEST: "MIME digest",
    Delivery.NOMAIL: "no mail",
}


class MailThrottle:
    """Confirmation mails per user within a sliding window, kept in memory.

    It only has to stop one account from using Arsip to mail strangers in bulk; a restart
    forgetting the count allows a few more mails, nothing worse.
    """

    def __init__(self, limit: int = MAILS_PER_HOUR, window: float = 60 * 60) -> None:
        self.limit = limit
        self.window = window
        self._sent: dict[int, deque[float]] = defaultdict(deque)
        self._lock = threading.Lock()

    def allow(self, user_id: int, now: float | None = None) -> bool:
        """Count one mail for `user_id` if the window has room for it; else False."""
        now = time.monotonic() if now is None else now
        with self._lock:
            sent = self._sent[user_id]
            while sent and sent[0] <= now - self.window:
                sent.popleft()
            if len(sent) >= self.limit:
                return False
            sent.append(now)
            return True


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _signature(secret_key: str, payload: bytes) -> bytes:
    return hmac.new(secret_key.encode(), payload, hashlib.sha256).digest()[:SIGNATURE_BYTES]


def make_token(secret_key: str, user_id: int, address: str, expires: int) -> str:
    """A link token saying `user_id` may verify `address` until `expires` (Unix time).

    Signed rather than stored, so pending verifications need no table and cost nothing
    when they are never used.
    """
    payload = f"{user_id}:{address}:{expires}".encode()
    return f"{_b64(payload)}.{_b64(_signature(secret_key, payload))}"


def read_token(secret_key: str, token: str, now: float | None = None) -> tuple[int, str] | None:
    """The (user id, address) a token made by `make_token` names, or None when it was
    changed, was signed with another key, or has expired."""
    if not token.isascii() or token.count(".") != 1:
        return None
    encoded, sent = token.split(".")
    try:
        payload = _unb64(encoded)
        signature = _unb64(sent)
    except (binascii.Error, ValueError):
        return None
    # Decoding skips stray characters; only the canonical spelling of a token is accepted.
    if _b64(payload) != encoded or _b64(signature) != sent:
        return None
    if not hmac.compare_digest(signature, _signature(secret_key, payload)):
        return None
    try:
        user_part, rest = payload.decode().split(":", 1)
        address, expires_part = rest.rsplit(":", 1)
        user_id, expires = int(user_part), int(expires_part)
    except ValueError:
        return None
    if expires <= (time.time() if now is None else now):
        return None
    return user_id, address


def _core() -> Core:
    return current_app.extensions["arsip_core"]


def _throttle() -> MailThrottle:
    # dict.setdefault is atomic, so concurrent first requests share one throttle.
    return current_app.extensions.setdefault("arsip_address_mail_throttle", MailThrottle())


def _user() -> User:
    user = current_user()
    assert user is not None  # login_required
    return user


def _confirmation_mail(address: str, link: str) -> EmailMessage:
    hostname = _core().settings.hostname
    mail = EmailMessage()
    mail["From"] = f"noreply@{hostname}"
    mail["To"] = address
    mail["Subject"] = "Confirm your address for Arsip"
    mail["Date"] = formatdate(localtime=False)
    mail["Message-ID"] = make_msgid(domain=hostname)
    mail["Auto-Submitted"] = "auto-generated"
    body = (
        f"Someone, probably you, asked to add {address} to an Arsip account.\n\n"
        f"To confirm, open this link while logged in to that account and press the button:\n\n"
        f"    {link}\n\n"
        "The link works for three days. If you did not ask for this, ignore this message:\n"
        "nothing changes without the button.\n"
    )
    # Unencoded, so the link stays whole on one line for every reader (well below the
    # 998-character line limit: the address is at most 320 characters).
    mail.set_content(body, cte="7bit" if body.isascii() else "8bit")
    return mail


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
    with _core().sessions() as db:
        addresses = list(
            db.scalars(
                select(UserAddress)
                .where(UserAddress.user_id == user.id)
                .order_by(UserAddress.address)
            )
        )
        memberships = _my_memberships(db, verified_addresses(db, user))
        return (
            render_template(
                "account.html",
                title="Your account",
                addresses=addresses,
                memberships=memberships,
                deliveries=DELIVERY_LABELS,
                notice=request.args.get("notice", ""),
                error=error,
                entered=entered,
            ),
            status,
        )


def _unknown_link() -> ResponseReturnValue:
    return (
        render_template(
            "message.html",
            title="Unknown or expired link",
            text=(
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
        return _page(f"{entered!r} is not an email address.", 400, entered)
    core = _core()
    with core.sessions.begin() as db:
        row = db.scalar(select(UserAddress).where(UserAddress.address == address))
        if row is not None and row.user_id != user.id:
            return _page(TAKEN, 400, entered)
        if row is not None and row.verified:
            return redirect(url_for(".account", notice=f"{address} is verified already."))
        if not _throttle().allow(user.id):
            return _page(LATER, 429, entered)
        add_address(db, db.get(User, user.id) or user, address)
        settings = core.settings
        expires = int(time.time()) + TOKEN_LIFETIME
        token = make_token(settings.secret_key, user.id, address, expires)
        link = f"{settings.public_url}/account/verify/{token}"
        send_notice(db, _confirmation_mail(address, link), "", None)
    notice = f"We sent a link to {address}. Open it to confirm the address is yours."
    return redirect(url_for(".account", notice=notice))


@bp.get("/verify/<token>")
@login_required
def verify_page(token: str) -> ResponseReturnValue:
    """Say which address the link would verify, with the button that does it."""
    named = read_token(_core().settings.secret_key, token)
    if named is None or named[0] != _user().id:
        return _unknown_link()
    return render_template("account_verify.html", title=f"Confirm that {named[1]} is yours")


@bp.post("/verify/<token>")
@login_required
def verify(token: str) -> ResponseReturnValue:
    """Mark the address verified, for the user the link names and nobody else."""
    user = _user()
    named = read_token(_core().settings.secret_key, token)
    if named is None or named[0] != user.id:
        return _unknown_link()
    address = named[1]
    with _core().sessions.begin() as db:
        row = db.scalar(select(UserAddress).where(UserAddress.address == address))
        if row is not None and row.user_id != user.id:
            return render_template("message.html", title="Not verified", text=TAKEN), 409
        if row is None:
            owner = db.get(User, user.id)
            if owner is None:
                return _unknown_link()
            add_address(db, owner, address, verified=True)
        else:
            row.verified = True
    text = f"{address} is verified: you now see its mail and can manage its list settings."
    return render_template("message.html", title="Address verified", text=text)


@bp.post("/lists/<int:member_id>")
@login_required
def delivery(member_id: int) -> ResponseReturnValue:
    """Change how one of the user's own memberships delivers posts."""
    wanted = request.form.get("delivery", "")
    if wanted not in set(Delivery):
        abort(400, "Unknown delivery mode.")
    user = _user()
    with _core().sessions.begin() as db:
        member = db.get(Member, member_id)
        if (
            member is None
            or member.role != Role.MEMBER
            or member.address not in verified_addresses(db, user)
        ):
            abort(404)
        member.delivery = wanted
        # Delivery the member stopped themselves resumes with "each post"; delivery the
        # bounce processor stopped stays stopped until the address works again.
        if wanted == Delivery.REGULAR and member.disabled_reason == "user":
            member.disabled_reason = None
        list_address = db.get(MailingList, member.list_id)
        where = list_address.address if list_address is not None else "the list"
        notice = f"{where} now sends {member.address}: {DELIVERY_LABELS[Delivery(wanted)]}."
    return redirect(url_for(".account", notice=notice))
