"""Running a list in the browser: held posts for its moderators, and members, bans and
settings for its owners.

These pages mirror `arsip lists moderate`, `add-member`, `remove-member`, `ban`,
`moderate-member` and `set`, with the same meaning. A list's pages exist only for the
people who run it (its owners and moderators, matched by their verified addresses) and for
administrators; everyone else gets 404, never 403, so the pages do not tell which private
lists there are.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from flask import (
    Blueprint,
    abort,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    url_for,
)
from flask.typing import ResponseReturnValue
from sqlalchemy import select
from sqlalchemy.orm import Session

from archiver.accounts import Role as UserRole
from archiver.accounts import verified_addresses
from archiver.audit import capped
from archiver.audit import changes as audited_changes
from lists.dmarc import DmarcLookup
from lists.membership import Membership
from lists.models import (
    Action,
    ArchivePolicy,
    Ban,
    HeldMessage,
    MailingList,
    Member,
    Posting,
    Role,
    Subscription,
    UncheckedPosts,
)
from lists.patterns import MAX_PATTERN, PatternError, check_pattern
from lists.posting import Poster
from lists.rules.content_check import score_problem
from web.audit_hooks import audit_change
from web.auth import current_user, login_required

if TYPE_CHECKING:
    from archiver.core import Core

bp = Blueprint("manage", __name__, url_prefix="/lists")

MODERATION = ("approve", "reject", "discard")
REPLY_TO = ("none", "list", "explicit")
DMARC = ("auto", "always", "never")
PREFIX_MAX = 64


class SettingsError(ValueError):
    """A settings form that cannot be saved as sent; the text is shown above the form."""


def _core() -> Core:
    return current_app.extensions["arsip_core"]


def _dmarc() -> DmarcLookup:
    # One lookup per app: it caches each domain's policy between approvals.
    lookup = current_app.extensions.get("arsip_dmarc")
    if lookup is None:
        dns = _core().settings.dns_server
        lookup = DmarcLookup([dns.host], dns.port) if dns else DmarcLookup()
        current_app.extensions["arsip_dmarc"] = lookup
    return lookup


def _roles_here(session: Session, mlist: MailingList) -> set[str]:
    """The roles the current user holds in `mlist`; administrators hold every role."""
    user = current_user()
    if user is None:
        return set()
    if user.role == UserRole.ADMIN:
        return {Role.OWNER, Role.MODERATOR}
    addresses = verified_addresses(session, user)
    if not addresses:
        return set()
    return set(
        session.scalars(
            select(Member.role).where(
                Member.list_id == mlist.id,
                Member.address.in_(addresses),
                Member.role.in_((Role.OWNER, Role.MODERATOR)),
            )
        )
    )


def _find(session: Session, address: str, *roles: str) -> tuple[MailingList, set[str]]:
    """The list at `address` if the current user holds one of `roles` in it; 404 otherwise."""
    name, _, domain = address.lower().partition("@")
    mlist = session.scalar(
        select(MailingList).where(MailingList.name == name, MailingList.domain == domain)
    )
    if mlist is None:
        abort(404)
    held_roles = _roles_here(session, mlist)
    if not held_roles & set(roles):
        abort(404)
    return mlist, held_roles


def _back(endpoint: str, address: str, notice: str) -> ResponseReturnValue:
    # Flashed, never put in the URL, so no link can make the page say something we did not.
    flash(notice)
    return redirect(url_for(endpoint, list_address=address))


@bp.get("/<list_address>/held")
@login_required
def held(list_address: str) -> ResponseReturnValue:
    """The list's held posts, oldest first, each with the moderator's three choices."""
    with _core().sessions() as session:
        mlist, roles = _find(session, list_address, Role.OWNER, Role.MODERATOR)
        posts = list(
            session.scalars(
                select(HeldMessage)
                .where(HeldMessage.list_id == mlist.id)
                .order_by(HeldMessage.held_at, HeldMessage.id)
            )
        )
        return render_template(
            "manage_held.html",
            title=f"Held posts · {mlist.address}",
            mlist=mlist,
            roles=roles,
            posts=posts,
        )


@bp.post("/<list_address>/held/<int:held_id>")
@login_required
def moderate(list_address: str, held_id: int) -> ResponseReturnValue:
    """Approve (deliver now), reject (tell the sender why) or discard one held post."""
    action = request.form.get("action", "")
    if action not in MODERATION:
        abort(400, "Choose approve, reject or discard.")
    with _core().sessions.begin() as session:
        mlist, _ = _find(session, list_address, Role.OWNER, Role.MODERATOR)
        post = session.get(HeldMessage, held_id)
        if post is None or post.list_id != mlist.id:
            # Another moderator may have decided first; say so rather than fail.
            return _back(".held", mlist.address, "That post is no longer held.")
        poster = Poster(_core().archive, _dmarc(), _core().settings.public_url)
        reason = request.form.get("reason", "").strip()
        decided = {"held_id": post.id, "sender": post.sender, "message_id": post.message_id}
        answer = poster.moderate(session, post, action, reason)
        audit_change(session, f"held.{action}", mlist.address, {**decided, "reason": reason})
        address = mlist.address
    return _back(".held", address, answer)


def _members_page(
    session: Session, mlist: MailingList, roles: set[str], error: str = "", status: int = 200
) -> ResponseReturnValue:
    members = list(
        session.scalars(
            select(Member).where(Member.list_id == mlist.id).order_by(Member.role, Member.address)
        )
    )
    bans = list(session.scalars(select(Ban).where(Ban.list_id == mlist.id).order_by(Ban.pattern)))
    page = render_template(
        "manage_members.html",
        title=f"Members · {mlist.address}",
        mlist=mlist,
        roles=roles,
        members=members,
        bans=bans,
        member_roles=[str(role) for role in Role],
        error=error,
    )
    return page, status


@bp.get("/<list_address>/members")
@login_required
def members(list_address: str) -> ResponseReturnValue:
    """Everyone in the list, in every role, with the owner's tools and the list's bans."""
    with _core().sessions() as session:
        mlist, roles = _find(session, list_address, Role.OWNER)
        return _members_page(session, mlist, roles)


@bp.post("/<list_address>/members/add")
@login_required
def add(list_address: str) -> ResponseReturnValue:
    """Add addresses (one per line) in one role; members are asked to confirm unless the
    owner unticks the box, as `arsip lists add-member` does."""
    role = request.form.get("role", Role.MEMBER)
    with _core().sessions.begin() as session:
        mlist, roles = _find(session, list_address, Role.OWNER)
        if role not in {str(r) for r in Role}:
            return _members_page(session, mlist, roles, f"There is no role {role!r}.", 400)
        wanted = request.form.get("addresses", "").splitlines()
        confirm = bool(request.form.get("confirm"))
        result = Membership(_core().settings.public_url).add_members(
            session, mlist, wanted, role=role, confirm=confirm
        )
        audit_change(
            session,
            "list.member.add",
            mlist.address,
            {
                "role": role,
                "confirm": confirm,
                "addresses": capped([w.strip() for w in wanted if w.strip()]),
                "added": result.added,
                "invited": result.invited,
                "already": result.already,
                "invalid": len(result.invalid),
            },
        )
        address = mlist.address
    notice = (
        f"Added {result.added}, asked {result.invited} to confirm, {result.already} already there."
    )
    if result.invalid:
        notice += " Not addresses: " + ", ".join(result.invalid)
    return _back(".members", address, notice)


@bp.post("/<list_address>/members/remove")
@login_required
def remove(list_address: str) -> ResponseReturnValue:
    """Take an address out of the list, in every role it holds."""
    target = request.form.get("address", "").strip().lower()
    with _core().sessions.begin() as session:
        mlist, _ = _find(session, list_address, Role.OWNER)
        removed = Membership(_core().settings.public_url).remove_members(session, mlist, [target])
        if removed:
            audit_change(session, "list.member.remove", mlist.address, {"addresses": [target]})
        address = mlist.address
    notice = f"Removed {target}." if removed else f"{target} was not in the list."
    return _back(".members", address, notice)


@bp.post("/<list_address>/members/moderate")
@login_required
def moderate_member(list_address: str) -> ResponseReturnValue:
    """Hold (on=1) or stop holding (on=0) every post of one member for a moderator."""
    target = request.form.get("address", "").strip().lower()
    on = request.form.get("on") == "1"
    with _core().sessions.begin() as session:
        mlist, _ = _find(session, list_address, Role.OWNER)
        row = session.scalar(
            select(Member).where(
                Member.list_id == mlist.id, Member.address == target, Member.role == Role.MEMBER
            )
        )
        address = mlist.address
        if row is None:
            return _back(".members", address, f"{target} is not a member.")
        row.moderated = on
        audit_change(session, "list.moderate-member", address, {"address": target, "moderated": on})
    notice = f"{target} is moderated." if on else f"{target} is no longer moderated."
    return _back(".members", address, notice)


@bp.post("/<list_address>/members/ban")
@login_required
def ban(list_address: str) -> ResponseReturnValue:
    """Ban an address, or every address a `^regex` matches, from posting and joining."""
    pattern = request.form.get("pattern", "").strip()
    with _core().sessions.begin() as session:
        mlist, roles = _find(session, list_address, Role.OWNER)
        problem = ban_problem(pattern)
        if problem:
            return _members_page(session, mlist, roles, problem, 400)
        if not pattern.startswith("^"):
            pattern = pattern.lower()
        exists = session.scalar(
            select(Ban.id).where(Ban.list_id == mlist.id, Ban.pattern == pattern)
        )
        if exists is None:
            session.add(Ban(list_id=mlist.id, pattern=pattern))
            audit_change(session, "list.ban", mlist.address, {"pattern": pattern})
        address = mlist.address
    return _back(".members", address, f"Banned {pattern}.")


def ban_problem(pattern: str) -> str:
    """Why `pattern` cannot be a ban (empty, too long, a broken regex), or "" if it can."""
    if not pattern:
        return "Give an address or a ^regex to ban."
    if len(pattern) > MAX_PATTERN:
        return "That pattern is too long."
    if pattern.startswith("^"):
        try:
            check_pattern(pattern)
        except PatternError as exc:
            return f"{str(exc)[0].upper()}{str(exc)[1:]}."
    return ""


@bp.post("/<list_address>/members/unban")
@login_required
def unban(list_address: str) -> ResponseReturnValue:
    """Lift one of the list's bans (global bans stay; they are the administrators')."""
    ban_id = request.form.get("ban", type=int)
    with _core().sessions.begin() as session:
        mlist, _ = _find(session, list_address, Role.OWNER)
        row = session.get(Ban, ban_id) if ban_id is not None else None
        address = mlist.address
        if row is None or row.list_id != mlist.id:
            return _back(".members", address, "That ban is gone already.")
        pattern = row.pattern
        session.delete(row)
        audit_change(session, "list.unban", address, {"pattern": pattern})
    return _back(".members", address, f"Unbanned {pattern}.")


def settings_changes(form: dict[str, str]) -> dict[str, object]:
    """The list attributes a settings form sets, checked; raises `SettingsError`.

    Pure, so the rules are the same wherever the form comes from. Choices must be one of
    the values in `lists.models`; sizes whole numbers of at least 0 (0: no limit); spam
    scores numbers above 0, the hold score no higher than the discard score.
    """
    changes: dict[str, object] = {}
    for field, allowed in (
        ("subscription", Subscription),
        ("posting", Posting),
        ("archive", ArchivePolicy),
        ("nonmember_action", Action),
    ):
        value = form.get(field, "")
        if value not in {str(choice) for choice in allowed}:
            raise SettingsError(f"{value!r} is not a choice for {field.replace('_', ' ')}.")
        changes[field] = value
    dmarc = form.get("dmarc", "")
    if dmarc not in DMARC:
        raise SettingsError(f"{dmarc!r} is not a choice for DMARC.")
    changes["dmarc"] = dmarc
    reply_to = form.get("reply_to", "")
    if reply_to not in REPLY_TO:
        raise SettingsError(f"{reply_to!r} is not a choice for reply-to.")
    reply_address = form.get("reply_to_address", "").strip().lower()
    if reply_to == "explicit":
        if "@" not in reply_address or len(reply_address) > 320 or " " in reply_address:
            raise SettingsError("Give the address replies should go to.")
    else:
        reply_address = ""
    changes["reply_to"], changes["reply_to_address"] = reply_to, reply_address
    for field, label in (("max_message_kb", "largest post"), ("max_recipients", "recipients")):
        text = form.get(field, "").strip()
        if not text.isdigit():
            raise SettingsError(f"The {label} limit must be a whole number (0: no limit).")
        changes[field] = int(text)
    changes.update(_content_check_changes(form))
    prefix = form.get("subject_prefix", "").strip()
    if len(prefix) > PREFIX_MAX:
        raise SettingsError(f"The subject prefix may have at most {PREFIX_MAX} characters.")
    delivery = form.get("delivery", "")
    if delivery not in ("personalize", "bulk"):
        raise SettingsError(f"{delivery!r} is not a way to deliver posts.")
    changes["subject_prefix"] = prefix
    changes["personalize"] = delivery == "personalize"
    changes["emergency"] = bool(form.get("emergency"))
    changes["trust_header_from"] = bool(form.get("trust_header_from"))
    changes["description"] = form.get("description", "").strip()
    changes["footer"] = form.get("footer", "").replace("\r\n", "\n")
    return changes


def _content_check_changes(form: dict[str, str]) -> dict[str, object]:
    """The spam scores and what to do with unchecked posts, where the form has them.

    A form without these fields (one from before they existed) keeps the list's values.
    """
    changes: dict[str, object] = {}
    if "spam_hold_score" in form or "spam_discard_score" in form:
        try:
            hold = float(form.get("spam_hold_score", "").strip())
            discard = float(form.get("spam_discard_score", "").strip())
        except ValueError:
            raise SettingsError("The spam scores must be numbers above 0.") from None
        problem = score_problem(hold, discard)
        if problem:
            raise SettingsError(f"{problem[0].upper()}{problem[1:]}.")
        changes["spam_hold_score"], changes["spam_discard_score"] = hold, discard
    if "unchecked_posts" in form:
        value = form["unchecked_posts"]
        if value not in {str(choice) for choice in UncheckedPosts}:
            raise SettingsError(f"{value!r} is not a choice for posts nobody could check.")
        changes["unchecked_posts"] = value
    return changes


def _settings_page(
    mlist: MailingList, roles: set[str], error: str = "", status: int = 200
) -> ResponseReturnValue:
    page = render_template(
        "manage_settings.html",
        title=f"Settings · {mlist.address}",
        mlist=mlist,
        roles=roles,
        choices={
            "subscription": [str(c) for c in Subscription],
            "posting": [str(c) for c in Posting],
            "archive": [str(c) for c in ArchivePolicy],
            "nonmember_action": [str(c) for c in Action],
            "dmarc": list(DMARC),
            "reply_to": list(REPLY_TO),
            "unchecked_posts": [str(c) for c in UncheckedPosts],
        },
        checks_on=bool(_core().settings.spamd or _core().settings.clamd),
        error=error,
    )
    return page, status


@bp.get("/<list_address>/settings")
@login_required
def settings(list_address: str) -> ResponseReturnValue:
    """The list's settings as a form."""
    with _core().sessions() as session:
        mlist, roles = _find(session, list_address, Role.OWNER)
        return _settings_page(mlist, roles)


@bp.post("/<list_address>/settings")
@login_required
def save_settings(list_address: str) -> ResponseReturnValue:
    """Save the whole form, or nothing when one value is wrong."""
    with _core().sessions.begin() as session:
        mlist, roles = _find(session, list_address, Role.OWNER)
        try:
            changes = settings_changes(request.form.to_dict())
        except SettingsError as error:
            return _settings_page(mlist, roles, str(error), 400)
        for name, value in changes.items():
            setattr(mlist, name, value)
        changed = audited_changes(mlist)
        if changed:
            audit_change(session, "list.settings", mlist.address, {"changed": changed})
        address = mlist.address
    return _back(".settings", address, "Saved.")
