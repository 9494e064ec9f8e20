"""List administration: the one home of what owners and moderators do to a list, for
`arsip lists ...` and the owners' web pages alike.

Each form (a web form, or a command's options put in the same words) is read by one
small schema: a dataclass whose `from_form(mapping)` checks every field and raises
`AdminError` with a sentence an owner can act on. The command line prints that sentence
and exits with status 2; the web shows it above the form with status 400. The actions
below take a checked schema, change the list in the caller's transaction and record the
change in the audit log in that same transaction, under the actor the caller names (an
account's email on the web, `cli:USER` on the command line), so both ways of running a
list accept, refuse and record the same things.

What is not there (a list, a held post another moderator decided first, a member, a ban)
is an answer, not an error: the actions return None, False or 0, and each caller says it
in its own words (a notice on the web, exit status 1 on the command line).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.orm import Session

from archiver.audit import capped, changes, record
from archiver.languages import LANGUAGES, Text, TextError
from archiver.models import Message, MessageAddress
from lists.membership import AddResult, Membership
from lists.models import (
    Action,
    ArchivePolicy,
    Ban,
    Delivery,
    HeldMessage,
    MailingList,
    Member,
    Pending,
    Posting,
    Role,
    Subscription,
    UncheckedPosts,
)
from lists.patterns import MAX_PATTERN, PatternError, check_pattern
from lists.rules.content_check import score_problem
from lists.wording import LISTS

if TYPE_CHECKING:
    from archiver.core import Core
    from archiver.retention.purge import PurgeReport
    from lists.posting import Poster  # the moderation step; it loads the whole pipeline

MODERATION = ("approve", "reject", "discard")
DEFAULT_LANGUAGE = "default"  # a list's language setting: ARSIP_DEFAULT_LANGUAGE
DELIVERY = ("personalize", "bulk")
# What each choice of a list's settings accepts, by the settings form's field name.
CHOICES: dict[str, list[str]] = {
    "subscription": [str(choice) for choice in Subscription],
    "posting": [str(choice) for choice in Posting],
    "archive": [str(choice) for choice in ArchivePolicy],
    "nonmember_action": [str(choice) for choice in Action],
    "dmarc": ["auto", "always", "never"],
    "reply_to": ["none", "list", "explicit"],
    "unchecked_posts": [str(choice) for choice in UncheckedPosts],
    "language": [DEFAULT_LANGUAGE, *LANGUAGES],
}
# Each choice as its refusal names it.
LABELS = {
    "subscription": LISTS.lazy_gettext("subscription"),
    "posting": LISTS.lazy_gettext("posting"),
    "archive": LISTS.lazy_gettext("archive"),
    "nonmember_action": LISTS.lazy_gettext("nonmember action"),
    "dmarc": LISTS.lazy_gettext("DMARC"),
    "reply_to": LISTS.lazy_gettext("reply-to"),
    "unchecked_posts": LISTS.lazy_gettext("posts nobody could check"),
    "language": LISTS.lazy_gettext("language"),
}
PREFIX_MAX = 64
ADDRESS_MAX = 320
NAME_LENGTH = 255  # of a member's display name
LIST_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
HEADER_NAME = re.compile(r"^[A-Za-z0-9-]{1,76}$")
RESERVED_SUFFIXES = ("-request", "-join", "-leave", "-owner", "-bounces", "-confirm")


class AdminError(TextError):
    """A form or command that cannot be carried out as sent; the text says why in one
    sentence (in the reader's language on a page), and nothing was changed."""


def _one_of(value: str, field: str) -> str:
    """`value`, if it is one of the choices of the settings form's `field`."""
    if value not in CHOICES[field]:
        raise AdminError(
            LISTS.lazy_gettext(
                "%(value)s is not a choice for %(label)s.", value=repr(value), label=LABELS[field]
            )
        )
    return value


def _check_scores(hold: float, discard: float) -> None:
    problem = score_problem(hold, discard)
    if problem is not None:
        raise AdminError(problem)


def _runnable(pattern: str) -> str:
    """`pattern`, if RE2 can run it; `AdminError` with RE2's reason otherwise."""
    try:
        check_pattern(pattern)
    except PatternError as error:
        raise AdminError(error.text) from None
    return pattern


def _score(text: str, which: str) -> float:
    """The spam score typed into the field for `which` ("hold" or "discard")."""
    try:
        return float(text.strip())
    except ValueError:
        if which == "hold":
            refusal = LISTS.lazy_gettext(
                "The spam hold score takes a number above 0, not %(text)s.", text=repr(text)
            )
        else:
            refusal = LISTS.lazy_gettext(
                "The spam discard score takes a number above 0, not %(text)s.", text=repr(text)
            )
        raise AdminError(refusal) from None


def find_list(session: Session, address: str) -> MailingList | None:
    """The list at `address` (any case), if there is one; no access check."""
    name, _, domain = address.lower().rpartition("@")
    return session.scalar(
        select(MailingList).where(MailingList.name == name, MailingList.domain == domain)
    )


def member_counts(session: Session, *list_ids: int) -> dict[int, int]:
    """Members (in the member role: owners and moderators are not counted) by list id,
    of `list_ids` or of every list; a list without members is absent."""
    query = select(Member.list_id, func.count()).where(Member.role == Role.MEMBER)
    if list_ids:
        query = query.where(Member.list_id.in_(list_ids))
    return {list_id: count for list_id, count in session.execute(query.group_by(Member.list_id))}


def describe(mlist: MailingList, members: int) -> dict[str, Any]:
    """A list's settings and member count, as `arsip lists show` prints them and the
    audit log records a new list."""
    return {
        "address": mlist.address,
        "list_id": mlist.list_id,
        "display_name": mlist.display_name,
        "description": mlist.description,
        "subscription": mlist.subscription,
        "posting": mlist.posting,
        "archive": mlist.archive,
        "nonmember_action": mlist.nonmember_action,
        "personalize": mlist.personalize,
        "subject_prefix": mlist.prefix,
        "reply_to": mlist.reply_to_address or mlist.reply_to,
        "dmarc": mlist.dmarc,
        "emergency": mlist.emergency,
        "max_message_kb": mlist.max_message_kb,
        "max_recipients": mlist.max_recipients,
        "spam_hold_score": mlist.spam_hold_score,
        "spam_discard_score": mlist.spam_discard_score,
        "unchecked_posts": mlist.unchecked_posts,
        "trust_header_from": mlist.trust_header_from,
        "header_rules": mlist.header_matches or [],
        "language": mlist.language or DEFAULT_LANGUAGE,
        "members": members,
    }


@dataclass(frozen=True)
class ListSettings:
    """The settings form of a list, checked: each field the new value, or None to keep
    the list's own.

    The owners' web form sends every field (`every_field`: an unticked box is off, an
    empty text empty); `arsip lists set` sends only the options given. The spam scores
    and what to do with unchecked posts are kept when a form lacks them altogether (a
    form from before they existed).
    """

    subscription: str | None = None
    posting: str | None = None
    archive: str | None = None
    nonmember_action: str | None = None
    dmarc: str | None = None
    reply_to: str | None = None
    reply_to_address: str | None = None
    max_message_kb: int | None = None
    max_recipients: int | None = None
    spam_hold_score: float | None = None
    spam_discard_score: float | None = None
    unchecked_posts: str | None = None
    subject_prefix: str | None = None
    personalize: bool | None = None
    emergency: bool | None = None
    trust_header_from: bool | None = None
    description: str | None = None
    footer: str | None = None
    language: str | None = None  # "" for ARSIP_DEFAULT_LANGUAGE

    @classmethod
    def from_form(cls, form: Mapping[str, str], *, every_field: bool = True) -> ListSettings:
        """Check `form`; raises `AdminError` at the first value that cannot be saved.

        Choices must be one of CHOICES; sizes whole numbers of at least 0 (0: no limit);
        spam scores numbers above 0, the hold score no higher than the discard score; the
        subject prefix at most PREFIX_MAX characters.
        """

        def sent(key: str) -> str | None:
            value = form.get(key)
            return "" if value is None and every_field else value

        found: dict[str, Any] = {}
        for key in ("subscription", "posting", "archive", "nonmember_action", "dmarc", "reply_to"):
            value = sent(key)
            if value is not None:
                found[key] = _one_of(value, key)
        if "reply_to" in found:
            address = (form.get("reply_to_address") or "").strip().lower()
            if found["reply_to"] != "explicit":
                address = ""
            elif "@" not in address or len(address) > ADDRESS_MAX or " " in address:
                raise AdminError(LISTS.lazy_gettext("Give the address replies should go to."))
            found["reply_to_address"] = address
        for key, refusal in (
            (
                "max_message_kb",
                LISTS.lazy_gettext("The largest post limit must be a whole number (0: no limit)."),
            ),
            (
                "max_recipients",
                LISTS.lazy_gettext("The recipients limit must be a whole number (0: no limit)."),
            ),
        ):
            value = sent(key)
            if value is not None:
                digits = value.strip()
                if not (digits.isascii() and digits.isdigit()):
                    raise AdminError(refusal)
                found[key] = int(digits)
        found.update(_content_checks(form, every_field))
        prefix = sent("subject_prefix")
        if prefix is not None:
            if len(prefix.strip()) > PREFIX_MAX:
                raise AdminError(
                    LISTS.lazy_gettext(
                        "The subject prefix may have at most %(limit)s characters.",
                        limit=PREFIX_MAX,
                    )
                )
            found["subject_prefix"] = prefix.strip()
        delivery = sent("delivery")
        if delivery is not None:
            if delivery not in DELIVERY:
                raise AdminError(
                    LISTS.lazy_gettext(
                        "%(delivery)s is not a way to deliver posts.", delivery=repr(delivery)
                    )
                )
            found["personalize"] = delivery == "personalize"
        for key in ("emergency", "trust_header_from"):
            value = sent(key)
            if value is not None:
                found[key] = bool(value)
        description = sent("description")
        if description is not None:
            found["description"] = description.strip()
        footer = sent("footer")
        if footer is not None:
            found["footer"] = footer.replace("\r\n", "\n")
        language = form.get("language")  # kept when a form lacks it (one from before it)
        if language is not None:
            chosen = _one_of(language.strip().lower() or DEFAULT_LANGUAGE, "language")
            found["language"] = "" if chosen == DEFAULT_LANGUAGE else chosen
        return cls(**found)

    def changes(self) -> dict[str, object]:
        """The list attributes this form sets, by name (the default language as None)."""
        changed = {
            field.name: getattr(self, field.name)
            for field in fields(self)
            if getattr(self, field.name) is not None
        }
        if changed.get("language") == "":
            changed["language"] = None
        return changed

    def apply(self, mlist: MailingList) -> None:
        """Set the values on `mlist`, once the spam scores still make sense beside the
        list's own (a command may change one of the two)."""
        if self.spam_hold_score is not None or self.spam_discard_score is not None:
            hold = self.spam_hold_score
            discard = self.spam_discard_score
            _check_scores(
                mlist.spam_hold_score if hold is None else hold,
                mlist.spam_discard_score if discard is None else discard,
            )
        for name, value in self.changes().items():
            setattr(mlist, name, value)


def _content_checks(form: Mapping[str, str], every_field: bool) -> dict[str, Any]:
    """The spam scores and what to do with unchecked posts, where the form has them. The
    web form has both scores or neither; a command may give one."""
    found: dict[str, Any] = {}
    hold, discard = form.get("spam_hold_score"), form.get("spam_discard_score")
    if every_field and (hold is not None or discard is not None):
        hold, discard = hold or "", discard or ""
    if hold is not None:
        found["spam_hold_score"] = _score(hold, "hold")
    if discard is not None:
        found["spam_discard_score"] = _score(discard, "discard")
    if hold is not None and discard is not None:
        _check_scores(found["spam_hold_score"], found["spam_discard_score"])
    unchecked = form.get("unchecked_posts")
    if unchecked is not None:
        found["unchecked_posts"] = _one_of(unchecked, "unchecked_posts")
    return found


def change_settings(
    session: Session, mlist: MailingList, settings: ListSettings, actor: str
) -> dict[str, list[Any]]:
    """Save `settings` on `mlist`; what changed ([before, after] by setting) is recorded
    when anything did, and returned."""
    settings.apply(mlist)
    changed = changes(mlist)
    if changed:
        record(session, actor, "list.settings", mlist.address, {"changed": changed})
    return changed


def list_address(address: str) -> tuple[str, str]:
    """The (name, domain) of a new list's `address`; `AdminError` if no list may have it
    (a list's own addresses, such as NAME-request@, are taken by the list)."""
    name, at, domain = address.strip().lower().partition("@")
    if not at or not LIST_NAME.match(name) or "." not in domain or name.endswith(RESERVED_SUFFIXES):
        raise AdminError(
            LISTS.lazy_gettext("Give NAME@DOMAIN, NAME of letters, digits, '.', '_' or '-'.")
        )
    return name, domain


def create_list(
    session: Session,
    membership: Membership,
    address: str,
    settings: ListSettings,
    owners: Iterable[str],
    actor: str,
) -> MailingList | None:
    """Create the list at `address` with `settings` and its `owners` (added directly:
    they are the creator's decision); None if the list exists already."""
    name, domain = list_address(address)
    if find_list(session, f"{name}@{domain}") is not None:
        return None
    mlist = MailingList(name=name, domain=domain, display_name=name)
    settings.apply(mlist)
    session.add(mlist)
    session.flush()
    owners = list(owners)
    membership.add_members(session, mlist, owners, role=Role.OWNER, confirm=False)
    record(session, actor, "list.create", mlist.address, {**describe(mlist, 0), "owners": owners})
    return mlist


@dataclass(frozen=True)
class AddMembers:
    """The form that adds addresses (one a line) in one role, asking members to confirm
    unless the owner says not to (owners and moderators are always added directly)."""

    role: str
    addresses: tuple[str, ...]
    confirm: bool

    @classmethod
    def from_form(cls, form: Mapping[str, str]) -> AddMembers:
        """Check the role; the addresses are checked one by one as they are added."""
        role = form.get("role") or Role.MEMBER
        if role not in {str(r) for r in Role}:
            raise AdminError(LISTS.lazy_gettext("There is no role %(role)s.", role=repr(role)))
        lines = (form.get("addresses") or "").splitlines()
        addresses = tuple(line.strip() for line in lines if line.strip())
        return cls(role=str(role), addresses=addresses, confirm=bool(form.get("confirm")))


def add_members(
    session: Session, membership: Membership, mlist: MailingList, form: AddMembers, actor: str
) -> AddResult:
    """Add or invite the form's addresses; the counts (and the addresses, capped) are
    recorded."""
    result = membership.add_members(
        session, mlist, form.addresses, role=form.role, confirm=form.confirm
    )
    details = {
        "role": form.role,
        "confirm": form.confirm,
        "addresses": capped(form.addresses),
        "added": result.added,
        "invited": result.invited,
        "already": result.already,
        "invalid": len(result.invalid),
    }
    record(session, actor, "list.member.add", mlist.address, details)
    return result


@dataclass(frozen=True)
class RemoveMembers:
    """The form that takes addresses (one a line) out of a list, in every role."""

    addresses: tuple[str, ...]

    @classmethod
    def from_form(cls, form: Mapping[str, str]) -> RemoveMembers:
        """The addresses of the field `address`, lower-cased; at least one."""
        lines = (form.get("address") or "").splitlines()
        addresses = tuple(line.strip().lower() for line in lines if line.strip())
        if not addresses:
            raise AdminError(LISTS.lazy_gettext("Give the address to remove."))
        return cls(addresses=addresses)


def remove_members(
    session: Session, membership: Membership, mlist: MailingList, form: RemoveMembers, actor: str
) -> int:
    """Take the form's addresses out of the list; how many rows went (a removal that
    removed something is recorded)."""
    removed = membership.remove_members(session, mlist, form.addresses)
    if removed:
        given = form.addresses
        details = {"addresses": capped(given), "given": len(given), "removed": removed}
        record(session, actor, "list.member.remove", mlist.address, details)
    return removed


@dataclass(frozen=True)
class MemberSettings:
    """A member's own choice of delivery (and display name, where the form has that
    field): the same on every page where people change their own membership (the
    account page, the signed settings page without an account)."""

    delivery: str
    display_name: str | None

    @classmethod
    def from_form(cls, form: Mapping[str, str]) -> MemberSettings:
        """Refuse an unknown delivery mode, and a name too long or with characters a
        name cannot have."""
        delivery = form.get("delivery") or ""
        if delivery not in set(Delivery):
            raise AdminError(LISTS.lazy_gettext("Unknown delivery mode."))
        name = form.get("display_name")
        if name is not None:
            name = " ".join(name.split())  # no line breaks or tabs: names end up in headers
            if len(name) > NAME_LENGTH or not name.isprintable():
                raise AdminError(
                    LISTS.lazy_gettext(
                        "That name is too long or has characters a name cannot have."
                    )
                )
        return cls(delivery=delivery, display_name=name)

    def apply(self, member: Member) -> None:
        """Set the choice on `member`. Delivery the member stopped themselves resumes
        with "each post"; delivery the bounce processor stopped stays stopped until the
        address works again."""
        if self.display_name is not None:
            member.display_name = self.display_name
        member.delivery = self.delivery
        if self.delivery == Delivery.REGULAR and member.disabled_reason == "user":
            member.disabled_reason = None


@dataclass(frozen=True)
class MemberModeration:
    """The form that holds every post of one member for a moderator, or stops."""

    address: str
    moderated: bool

    @classmethod
    def from_form(cls, form: Mapping[str, str]) -> MemberModeration:
        """`address` the member's, `on` "1" to hold their posts (anything else: stop)."""
        address = (form.get("address") or "").strip().lower()
        if not address:
            raise AdminError(LISTS.lazy_gettext("Give the member's address."))
        return cls(address=address, moderated=form.get("on") == "1")


def moderate_member(
    session: Session, mlist: MailingList, form: MemberModeration, actor: str
) -> bool:
    """Hold (or stop holding) the member's posts; False if the address is no member."""
    row = session.scalar(
        select(Member).where(
            Member.list_id == mlist.id, Member.address == form.address, Member.role == Role.MEMBER
        )
    )
    if row is None:
        return False
    row.moderated = form.moderated
    details = {"address": row.address, "moderated": form.moderated}
    record(session, actor, "list.moderate-member", mlist.address, details)
    return True


@dataclass(frozen=True)
class BanForm:
    """An address, or every address a `^regex` matches, banned from posting and joining;
    addresses are stored lower-cased, patterns as written (they match without case)."""

    pattern: str

    @classmethod
    def from_form(cls, form: Mapping[str, str]) -> BanForm:
        """Refuse an empty or overlong pattern, and a regex RE2 cannot run (with why)."""
        pattern = (form.get("pattern") or "").strip()
        if not pattern:
            raise AdminError(LISTS.lazy_gettext("Give an address or a ^regex to ban."))
        if len(pattern) > MAX_PATTERN:
            raise AdminError(LISTS.lazy_gettext("That pattern is too long."))
        if not pattern.startswith("^"):
            return cls(pattern=pattern.lower())
        return cls(pattern=_runnable(pattern))


def ban(session: Session, mlist: MailingList | None, form: BanForm, actor: str) -> None:
    """Ban the form's pattern from `mlist` (None: from every list); banning twice keeps
    one ban, recorded once."""
    list_id = mlist.id if mlist is not None else None
    scope = Ban.list_id.is_(None) if list_id is None else Ban.list_id == list_id
    if session.scalar(select(Ban.id).where(scope, Ban.pattern == form.pattern)) is not None:
        return
    session.add(Ban(list_id=list_id, pattern=form.pattern))
    target = mlist.address if mlist is not None else "*"
    record(session, actor, "list.ban", target, {"pattern": form.pattern})


@dataclass(frozen=True)
class LiftBan:
    """The owners' page's button that lifts one of the list's bans, by its id."""

    ban_id: int | None

    @classmethod
    def from_form(cls, form: Mapping[str, str]) -> LiftBan:
        """The id of the field `ban`; None (a ban that is not there) if it is no number."""
        text = (form.get("ban") or "").strip()
        return cls(ban_id=int(text) if text.isdigit() else None)

    def bans(self, session: Session, mlist: MailingList) -> list[Ban]:
        """The ban of `mlist` the button names, if it is still there (global bans are
        the administrators', never lifted from a list's page)."""
        row = session.get(Ban, self.ban_id) if self.ban_id is not None else None
        return [row] if row is not None and row.list_id == mlist.id else []


def unban(session: Session, bans: Iterable[Ban], target: str, actor: str) -> int:
    """Lift `bans` (rows of one list, or global ones when `target` is `*`); how many."""
    lifted = 0
    for row in bans:
        session.delete(row)
        record(session, actor, "list.unban", target, {"pattern": row.pattern})
        lifted += 1
    return lifted


def bans_matching(session: Session, mlist: MailingList | None, pattern: str) -> list[Ban]:
    """The bans of `mlist` (None: the global ones) written as `pattern`, in any case for
    an address."""
    scope = Ban.list_id.is_(None) if mlist is None else Ban.list_id == mlist.id
    return list(
        session.scalars(select(Ban).where(scope, Ban.pattern.in_([pattern, pattern.lower()])))
    )


@dataclass(frozen=True)
class HeaderRule:
    """A header rule of a list: a post whose `header` matches `pattern` (RE2, without
    case) gets `action`, after every other posting rule; or, with `remove`, the rule for
    that header and pattern taken away."""

    header: str
    pattern: str
    action: str
    remove: bool

    @classmethod
    def from_form(cls, form: Mapping[str, str]) -> HeaderRule:
        """Refuse what is not a header name, an action, or (to add) a pattern RE2 runs."""
        header = (form.get("header") or "").strip()
        if not HEADER_NAME.match(header):
            raise AdminError(
                LISTS.lazy_gettext(
                    "%(header)s is not a header name such as X-Spam-Flag.", header=repr(header)
                )
            )
        action = form.get("action") or str(Action.HOLD)
        if action not in CHOICES["nonmember_action"]:
            raise AdminError(
                LISTS.lazy_gettext(
                    "%(action)s is not what a header rule can do.", action=repr(action)
                )
            )
        remove = bool(form.get("remove"))
        pattern = form.get("pattern") or ""
        return cls(header, pattern if remove else _runnable(pattern), action, remove)


def change_header_rule(session: Session, mlist: MailingList, rule: HeaderRule, actor: str) -> bool:
    """Add (or replace) the rule, or remove it; False when there was none to remove."""
    kept = [
        found
        for found in mlist.header_matches or []
        if (found.get("header", "").lower(), found.get("pattern"))
        != (rule.header.lower(), rule.pattern)
    ]
    if rule.remove and len(kept) == len(mlist.header_matches or []):
        return False
    if not rule.remove:
        kept.append({"header": rule.header, "pattern": rule.pattern, "action": rule.action})
    mlist.header_matches = kept
    details = {
        "header": rule.header,
        "pattern": rule.pattern,
        "action": rule.action,
        "removed": rule.remove,
    }
    record(session, actor, "list.header-rule", mlist.address, details)
    return True


@dataclass(frozen=True)
class Decision:
    """A moderator's decision on a held post, and the reason told to a rejected sender."""

    action: str
    reason: str

    @classmethod
    def from_form(cls, form: Mapping[str, str]) -> Decision:
        """`action` approve, reject or discard; `reason` optional."""
        action = form.get("action") or ""
        if action not in MODERATION:
            raise AdminError(LISTS.lazy_gettext("Choose approve, reject or discard."))
        return cls(action=action, reason=(form.get("reason") or "").strip())


def decide(
    session: Session,
    poster: Poster,
    mlist: MailingList,
    held_id: int,
    decision: Decision,
    actor: str,
) -> Text | None:
    """Carry out `decision` on the held post `held_id` of `mlist`, and record it (which
    post, whose, and why; never its contents); the answer to show, or None when the post
    is not held there (any more: another moderator may have decided first)."""
    post = session.get(HeldMessage, held_id)
    if post is None or post.list_id != mlist.id:
        return None
    details = {
        "held_id": post.id,
        "sender": post.sender,
        "message_id": post.message_id,
        "reason": decision.reason,
    }
    answer = poster.moderate(session, post, decision.action, decision.reason)
    record(session, actor, f"held.{decision.action}", mlist.address, details)
    return answer


@dataclass(frozen=True)
class ListContents:
    """What deleting a list takes with it (members in every role, held posts, pending
    confirmations) and how many archived messages it has (which only a purge deletes)."""

    members: int
    held: int
    pending: int
    archived: int
    journaled: int  # of the archived: also journal copies, which a purge leaves

    @classmethod
    def of(cls, session: Session, mlist: MailingList) -> ListContents:
        """Count them."""

        def count(model: Any, condition: Any) -> int:
            return session.scalar(select(func.count()).select_from(model).where(condition)) or 0

        return cls(
            members=count(Member, Member.list_id == mlist.id),
            held=count(HeldMessage, HeldMessage.list_id == mlist.id),
            pending=count(Pending, Pending.list_id == mlist.id),
            archived=count(Message, Message.list_id == mlist.list_id),
            journaled=count(Message, _journaled(mlist.list_id)),
        )


def _journaled(list_id: str) -> ColumnElement[bool]:
    """The list's archived messages that came in as journal copies too (they have
    envelope recipients): the company's record of its mail, not only the list's."""
    from archiver.archive import ENVELOPE_TO  # the archive's parts, only when counting

    journal_copy = select(MessageAddress.message_pk).where(
        MessageAddress.message_pk == Message.id, MessageAddress.role == ENVELOPE_TO
    )
    return (Message.list_id == list_id) & journal_copy.exists()


@dataclass(frozen=True)
class ListDeletion:
    """What `delete_list` did: the list's contents as they were, and with a purge, what
    became of its archived messages."""

    contents: ListContents
    purge: PurgeReport | None


def delete_list(core: Core, address: str, actor: str, *, purge: bool) -> ListDeletion | None:
    """Delete the list at `address` with its members, settings, bans, held posts, pending
    confirmations and undelivered mail; None if there is no such list.

    Its archived mail stays, still found by search, unless `purge`: then every archived
    message of the list that no legal hold covers is deleted first (each audited as
    `message.delete`, as a retention sweep's), and the list after that, so an
    interrupted purge leaves a list to delete again. A message that also came in as a
    journal copy is stored once for both, and stays: the purge deletes the list's
    archive, not the company's record of its mail. The deletion is recorded as
    `list.delete` with what went and what holds kept.
    """
    from archiver.retention.purge import purge_messages

    with core.sessions() as session:
        mlist = find_list(session, address)
        if mlist is None:
            return None
        address, list_id = mlist.address, mlist.list_id
    report = None
    if purge:
        backend = core.search_backend()
        try:
            why = {"list": address, "reason": "list deleted with its archive"}
            posts = (Message.list_id == list_id) & ~_journaled(list_id)
            report = purge_messages(core.sessions, core.store, backend, posts, actor, why)
        finally:
            backend.close()
    with core.sessions.begin() as session:
        mlist = find_list(session, address)
        if mlist is None:  # deleted meanwhile, by someone else
            return None
        contents = ListContents.of(session, mlist)
        session.delete(mlist)  # its rows go with it (ON DELETE CASCADE)
        details = {
            "members": contents.members,
            "held": contents.held,
            "pending": contents.pending,
            "archived_kept": contents.archived,
            "journaled": contents.journaled,
            "purge": report.as_json() if report is not None else None,
        }
        record(session, actor, "list.delete", address, details)
    return ListDeletion(contents, report)
