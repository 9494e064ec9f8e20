"""Joining and leaving, always with the address's own confirmation or an owner's action.

Invariant 8: nobody becomes a member by email or web without confirming from the address
itself (or an owner adding them). Tokens are random, single-use (the pending row is
deleted when used) and expire. Every reply goes to the address concerned, never to the
person who asked, so nobody learns whether someone else is a member. Confirmation mail to
one address is rate limited, so a list cannot be used to bomb someone's mailbox.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import delete, func, insert, select
from sqlalchemy.orm import Session

from archiver.languages import Text, TextError
from archiver.locks import transaction_lock
from lists import notices, patterns
from lists.models import Ban, Delivery, MailingList, Member, Pending, Role, Subscription, utcnow
from lists.outbox import send_notice
from lists.tokens import member_token, new_token
from lists.wording import LISTS

CONFIRM_DAYS = 3
SETTINGS_LINK_DAYS = 7
CONFIRMATIONS_PER_HOUR = 3  # to one address, over all lists
# One plain address: a dot-atom local part (RFC 5322 atext, or any character beyond
# ASCII, RFC 6531) and a domain of at least two labels. No display name, no comments, no
# quoted local part: nothing a second address or a header line could hide in.
_WIDE = r"\u0080-\U0010ffff"
_ATEXT = rf"[A-Za-z0-9!#$%&'*+/=?^_`{{|}}~\-{_WIDE}]"
_LABEL = rf"[A-Za-z0-9{_WIDE}](?:[A-Za-z0-9{_WIDE}-]{{0,61}}[A-Za-z0-9{_WIDE}])?"
ADDRESS = re.compile(rf"^{_ATEXT}+(?:\.{_ATEXT}+)*@{_LABEL}(?:\.{_LABEL})+$")
MAX_ADDRESS = 254  # RFC 5321's path limit, less the angle brackets
UNKNOWN_CONFIRMATION = LISTS.lazy_gettext("That confirmation is unknown or has expired.")


class BadAddress(TextError):
    """Text that is not exactly one plain email address; the text says why."""


def one_address(text: str) -> str:
    """`text` as exactly one plain address, lower-cased; raises `BadAddress` with the reason.

    Every way an address comes in to be subscribed, unsubscribed or sent a link (web
    forms, mailed commands, an owner's bulk add) goes through here, so a field holding
    `victim@example.com, me@example.net` can neither mail a stranger past the per-address
    limit nor make a member of the whole string.
    """
    address = text.strip()
    if not address:
        raise BadAddress(LISTS.lazy_gettext("no address was given"))
    if not address.isprintable():  # line breaks (CR, LF, U+2028...), controls, odd spaces
        raise BadAddress(LISTS.lazy_gettext("an address is one line, without control characters"))
    if address.count("@") != 1 or any(char in address for char in ",; "):
        raise BadAddress(LISTS.lazy_gettext("give exactly one address, such as ann@example.org"))
    if len(address) > MAX_ADDRESS or len(address.partition("@")[0]) > 64:
        raise BadAddress(LISTS.lazy_gettext("that address is longer than an address may be"))
    if not ADDRESS.match(address):
        raise BadAddress(
            LISTS.lazy_gettext(
                "%(address)s is not a plain email address (such as ann@example.org)",
                address=repr(address),
            )
        )
    return address.lower()


@dataclass(frozen=True)
class AddResult:
    """What `add_members` did."""

    added: int
    invited: int
    already: int
    invalid: list[str]


class Membership:
    """Subscription requests and confirmations for lists; `public_url` starts web links."""

    def __init__(self, public_url: str) -> None:
        self.public_url = public_url

    def request(self, session: Session, mlist: MailingList, address: str, action: str) -> Text:
        """Someone asked (by mail or on the web) to subscribe or unsubscribe `address`, or
        (by mail) to change its delivery (`action` is then `set OPTION VALUE`).

        Sends the address a confirmation unless it is banned, the list is closed to
        joining, or the address had too many confirmations lately. The answer for the
        asker is the same whatever the address's membership. Raises `BadAddress` (and
        sends nothing) unless `address` is exactly one plain address.
        """
        address = one_address(address)
        sent = LISTS.lazy_gettext(
            "A confirmation has been sent to the address, if it may receive one."
        )
        if action == "subscribe" and (
            mlist.subscription == Subscription.CLOSED or is_banned(session, mlist, address)
        ):
            return sent
        # Written before counting, so that requests for one address racing in several
        # processes (web workers, the spool worker) cannot all see room for one more.
        _lock_address(session, address)
        token = self._pending(session, mlist, address, action)
        session.flush()
        if self._too_many_confirmations(session, address):
            session.execute(delete(Pending).where(Pending.token == token))
            return sent
        url = f"{self.public_url}/lists/confirm/{token}"
        send_notice(
            session,
            notices.confirm_request(mlist, address, token, action, url),
            mlist.address_for("bounces"),
            mlist.id,
        )
        return sent

    def confirm(self, session: Session, token: str, confirmer: str) -> Text:
        """Act on a confirmation token, if `confirmer` is the address it was sent to (or,
        for an owner's approval, an owner of the list); the outcome, to be said in the
        language of whoever reads it (a reply mail, a page)."""
        pending = self.pending_for(session, token)
        mlist = None if pending is None else session.get(MailingList, pending.list_id)
        if pending is None or mlist is None:
            return UNKNOWN_CONFIRMATION
        _ = LISTS.lazy_gettext
        names = {"address": pending.address, "list": mlist.address}
        confirmer = confirmer.lower()
        if pending.action == "approve":
            if not has_role(session, mlist, confirmer, Role.OWNER):
                return _("Only an owner of the list can approve that request.")
        elif confirmer != pending.address:
            return _("A confirmation must come from the address it was sent to.")
        # used once: of two confirmations racing, only the one that deletes the row acts
        used = session.execute(delete(Pending).where(Pending.id == pending.id))
        if used.rowcount != 1:
            return UNKNOWN_CONFIRMATION
        if pending.action == "unsubscribe":
            self._remove(session, mlist, pending.address)
            return _("%(address)s has left %(list)s.", **names)
        if pending.action.startswith("set "):
            return _apply_setting(session, mlist, pending.address, pending.action)
        if pending.action == "subscribe" and mlist.subscription == Subscription.MODERATE:
            self._ask_owners(session, mlist, pending.address)
            return _("Confirmed; an owner of the list will now look at the request.")
        self._add(session, mlist, pending.address, pending.display_name)
        return _("%(address)s is now a member of %(list)s.", **names)

    def pending_for(self, session: Session, token: str) -> Pending | None:
        """The unexpired request behind a token (for the web page that confirms it)."""
        pending = session.scalar(select(Pending).where(Pending.token == token))
        if pending is None or pending.expires_at < utcnow():
            return None
        return pending

    def confirm_link(self, session: Session, token: str) -> Text:
        """A confirmation through the link in the mail: having the token shows that the
        address received it (owners' approvals still need an owner's reply)."""
        pending = self.pending_for(session, token)
        if pending is None or pending.action == "approve":
            return UNKNOWN_CONFIRMATION
        return self.confirm(session, token, pending.address)

    def unsubscribe_now(self, session: Session, mlist: MailingList, address: str) -> bool:
        """A signed one-click unsubscription (RFC 8058): no further confirmation; the
        caller has checked the signature. Returns whether the address was a member."""
        address = address.lower()
        if not has_role(session, mlist, address, Role.MEMBER):
            return False
        self._remove(session, mlist, address)
        return True

    def settings_page(self, mlist: MailingList) -> str:
        """The web page where a member asks for a link to their own settings."""
        return mlist.page(self.public_url, "member")

    def mail_settings_link(
        self,
        session: Session,
        mlist: MailingList,
        address: str,
        secret_key: str,
        now: float | None = None,
    ) -> bool:
        """Mail `address` a signed link to its settings page on `mlist`, if it is a member.

        The link carries the list, the address and an expiry under the secret key's HMAC,
        so it needs no stored state and works only for SETTINGS_LINK_DAYS days. Returns
        whether a mail was queued; the caller must not tell the asker, so that nobody
        learns who is a member.
        """
        address = address.lower()
        if not has_role(session, mlist, address, Role.MEMBER):
            return False
        expires = int(time.time() if now is None else now) + SETTINGS_LINK_DAYS * 86400
        token = member_token(secret_key, mlist.address, address, expires)
        url = f"{self.settings_page(mlist)}/{token}"
        send_notice(
            session,
            notices.settings_link(mlist, address, url, SETTINGS_LINK_DAYS),
            mlist.address_for("bounces"),
            mlist.id,
        )
        return True

    def reject_request(self, session: Session, token: str, owner: str) -> Text:
        """An owner refuses a subscription waiting for approval."""
        pending = session.scalar(select(Pending).where(Pending.token == token))
        mlist = None if pending is None else session.get(MailingList, pending.list_id)
        if pending is None or pending.action != "approve" or mlist is None:
            return LISTS.lazy_gettext("That request is unknown or has expired.")
        if not has_role(session, mlist, owner.lower(), Role.OWNER):
            return LISTS.lazy_gettext("Only an owner of the list can refuse that request.")
        session.delete(pending)
        return LISTS.lazy_gettext(
            "The request of %(address)s was refused.", address=pending.address
        )

    def add_members(
        self,
        session: Session,
        mlist: MailingList,
        addresses: Iterable[str],
        role: str = Role.MEMBER,
        confirm: bool = True,
    ) -> AddResult:
        """An owner's bulk add: members directly (`confirm=False`) or invited to confirm;
        owners and moderators are always added directly (it is the owner's decision)."""
        wanted: dict[str, None] = {}
        invalid: list[str] = []
        for raw in addresses:
            address = raw.strip().lower()
            if not address or address.startswith("#"):
                continue
            try:
                wanted[one_address(address)] = None
            except BadAddress:
                invalid.append(raw.strip())
        existing = set(
            session.scalars(
                select(Member.address).where(Member.list_id == mlist.id, Member.role == role)
            )
        )
        new = [address for address in wanted if address not in existing]
        if role == Role.MEMBER and confirm:
            for address in new:
                self.request(session, mlist, address, "subscribe")
            return AddResult(0, len(new), len(wanted) - len(new), invalid)
        if new:
            now = utcnow()
            session.execute(
                insert(Member),
                [
                    {
                        "list_id": mlist.id,
                        "address": address,
                        "display_name": "",
                        "role": role,
                        "delivery": Delivery.REGULAR,
                        "moderated": False,
                        "bounce_score": 0.0,
                        "subscribed_at": now,
                    }
                    for address in new
                ],
            )
        return AddResult(len(new), 0, len(wanted) - len(new), invalid)

    def remove_members(self, session: Session, mlist: MailingList, addresses: Iterable[str]) -> int:
        """An owner removes addresses (in every role); returns how many rows went."""
        lowered = [address.strip().lower() for address in addresses if address.strip()]
        result = session.execute(
            delete(Member).where(Member.list_id == mlist.id, Member.address.in_(lowered))
        )
        return result.rowcount or 0

    def _pending(self, session: Session, mlist: MailingList, address: str, action: str) -> str:
        token = new_token()
        session.add(
            Pending(
                token=token,
                list_id=mlist.id,
                address=address,
                action=action,
                created_at=utcnow(),
                expires_at=utcnow() + timedelta(days=CONFIRM_DAYS),
            )
        )
        return token

    def _too_many_confirmations(self, session: Session, address: str) -> bool:
        """Whether the requests of the past hour, the one just written included, are
        more than an address may be sent."""
        since = utcnow() - timedelta(hours=1)
        count = session.scalar(
            select(func.count())
            .select_from(Pending)
            .where(Pending.address == address, Pending.created_at >= since)
        )
        return (count or 0) > CONFIRMATIONS_PER_HOUR

    def _ask_owners(self, session: Session, mlist: MailingList, address: str) -> None:
        token = self._pending(session, mlist, address, "approve")
        for owner in members_with_role(session, mlist, Role.OWNER):
            send_notice(
                session,
                notices.approval_request(mlist, owner, address, token),
                mlist.address_for("bounces"),
                mlist.id,
            )
        send_notice(
            session,
            notices.awaiting_approval(mlist, address),
            mlist.address_for("bounces"),
            mlist.id,
        )

    def _add(self, session: Session, mlist: MailingList, address: str, name: str) -> None:
        if has_role(session, mlist, address, Role.MEMBER):
            return
        session.add(Member(list_id=mlist.id, address=address, display_name=name))
        session.flush()
        send_notice(
            session,
            notices.welcome(mlist, address, self.settings_page(mlist)),
            mlist.address_for("bounces"),
            mlist.id,
        )

    def _remove(self, session: Session, mlist: MailingList, address: str) -> None:
        session.execute(
            delete(Member).where(
                Member.list_id == mlist.id, Member.address == address, Member.role == Role.MEMBER
            )
        )
        send_notice(
            session, notices.goodbye(mlist, address), mlist.address_for("bounces"), mlist.id
        )


def _lock_address(session: Session, address: str) -> None:
    """Serialise confirmation requests for one address until the transaction ends."""
    transaction_lock(session, f"confirm:{address}")


def has_role(session: Session, mlist: MailingList, address: str, *roles: str) -> bool:
    """Whether `address` is in the list in one of `roles` (any role when none given)."""
    query = select(Member.id).where(Member.list_id == mlist.id, Member.address == address)
    if roles:
        query = query.where(Member.role.in_(roles))
    return session.scalar(query.limit(1)) is not None


def members_with_role(session: Session, mlist: MailingList, role: str) -> list[str]:
    """The addresses of the list's owners, moderators or members."""
    return list(
        session.scalars(
            select(Member.address)
            .where(Member.list_id == mlist.id, Member.role == role)
            .order_by(Member.address)
        )
    )


def is_banned(session: Session, mlist: MailingList, address: str) -> bool:
    """Whether the list's or the global ban list names `address` (exact or `^regex`,
    run in linear time by `lists.patterns`)."""
    stored = session.scalars(
        select(Ban.pattern).where((Ban.list_id == mlist.id) | (Ban.list_id.is_(None)))
    )
    for pattern in stored:
        if pattern.startswith("^"):
            if patterns.match(pattern, address):
                return True
        elif pattern.lower() == address:
            return True
    return False


# What a mailed `set OPTION VALUE` asks for; the confirmation's pending row keeps the
# words ("set nomail on"), which fit its action column.
_DELIVERIES = {
    ("digest", "plain"): Delivery.PLAIN_DIGEST,
    ("digest", "on"): Delivery.PLAIN_DIGEST,
    ("digest", "mime"): Delivery.MIME_DIGEST,
    ("digest", "off"): Delivery.REGULAR,
    ("nomail", "on"): Delivery.NOMAIL,
    ("nomail", "off"): Delivery.REGULAR,
}


def delivery_for(option: str, value: str) -> Delivery | None:
    """The delivery `set OPTION VALUE` chooses, or None when it is no setting."""
    return _DELIVERIES.get((option, value))


def _apply_setting(session: Session, mlist: MailingList, address: str, action: str) -> Text:
    """Carry out a confirmed `set OPTION VALUE` for `address`."""
    _, option, value = action.split(" ", 2)
    delivery = delivery_for(option, value)
    member = session.scalar(
        select(Member).where(
            Member.list_id == mlist.id, Member.address == address, Member.role == Role.MEMBER
        )
    )
    if member is None or delivery is None:
        return not_a_member(mlist, address)
    member.delivery = delivery
    if (option, value) == ("nomail", "off"):  # the member says the address works again
        member.disabled_reason = None
        member.bounce_score = 0.0
    return LISTS.lazy_gettext(
        "Delivery for %(address)s is now: %(delivery)s.",
        address=address,
        delivery=str(member.delivery),
    )


def not_a_member(mlist: MailingList, address: str) -> Text:
    """The answer to a member's request from an address that is no member."""
    return LISTS.lazy_gettext(
        "%(address)s is not a member of %(list)s.", address=address, list=mlist.address
    )
