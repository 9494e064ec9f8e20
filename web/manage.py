"""Running a list in the browser: held posts for its moderators, and members, bans and
settings for its owners.

These pages are `arsip lists moderate`, `add-member`, `remove-member`, `ban`, `unban`,
`moderate-member` and `set` in a browser: both read their input with the schemas of
`lists.admin` and act through its functions, so they accept, refuse and record the same
things. A list's pages exist only for the people who run it (its owners and moderators,
matched by their verified addresses) and for administrators; everyone else gets 404,
never 403, so the pages do not tell which private lists there are.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TypeVar

from flask import (
    Blueprint,
    abort,
    flash,
    make_response,
    redirect,
    render_template,
    request,
    url_for,
)
from flask.typing import ResponseReturnValue
from flask_babel import gettext, lazy_gettext
from sqlalchemy import func, select
from sqlalchemy.orm import Session, undefer

from archiver.accounts import Role as UserRole
from archiver.accounts import verified_addresses
from archiver.languages import LANGUAGES
from archiver.parse import html_body, parse_message
from archiver.parse.mime import Attachment
from archiver.parse.parts import parts_by_hash
from lists import admin
from lists.admin import AdminError, find_list
from lists.models import Ban, HeldMessage, MailingList, Member, Role
from lists.posting import Poster, held_reason
from web.audit_hooks import web_actor
from web.auth import current_user, login_required
from web.deps import dmarc_lookup, get_core, get_membership
from web.downloads import download
from web.html_frame import FRAMING_PAGE_POLICY, html_frame
from web.i18n import say
from web.member_settings import DELIVERY_LABELS

bp = Blueprint("manage", __name__, url_prefix="/lists")

Form = TypeVar("Form")  # a checked form of `lists.admin`

# The settings form's choices in the reader's words, by field and value (`admin.CHOICES`;
# the list's language is named per request, with the service's default language).
CHOICE_LABELS = {
    "subscription": {
        "open": lazy_gettext("anyone who confirms by mail"),
        "moderate": lazy_gettext("anyone who confirms, once an owner approves"),
        "closed": lazy_gettext("nobody (owners add members)"),
    },
    "posting": {
        "members": lazy_gettext("members"),
        "moderated": lazy_gettext("members, every post held for moderators"),
        "open": lazy_gettext("anyone"),
        "announce": lazy_gettext("owners and moderators only (announcements)"),
    },
    "archive": {
        "public": lazy_gettext("public"),
        "private": lazy_gettext("members only"),
        "none": lazy_gettext("not archived"),
    },
    "nonmember_action": {
        "accept": lazy_gettext("accept"),
        "hold": lazy_gettext("hold for moderators"),
        "reject": lazy_gettext("reject, telling the sender"),
        "discard": lazy_gettext("discard"),
    },
    "dmarc": {
        "auto": lazy_gettext("when the sender's domain asks for it"),
        "always": lazy_gettext("always"),
        "never": lazy_gettext("never"),
    },
    "reply_to": {
        "none": lazy_gettext("where the sender says"),
        "list": lazy_gettext("the list"),
        "explicit": lazy_gettext("an explicit address"),
    },
    "unchecked_posts": {
        "hold": lazy_gettext("hold for moderators"),
        "accept": lazy_gettext("accept"),
    },
}
MEMBER_ROLES = {
    Role.OWNER: lazy_gettext("owner"),
    Role.MODERATOR: lazy_gettext("moderator"),
    Role.MEMBER: lazy_gettext("member"),
}
# Why a member's delivery is paused (`Member.disabled_reason`).
DISABLED_REASONS = {"bounce": lazy_gettext("bounces"), "user": lazy_gettext("by the member")}


def roles_here(session: Session, mlist: MailingList) -> set[str]:
    """The roles the current user holds in `mlist` (owner, moderator); administrators
    hold both. The list's own page asks it too, to show its runners their pages."""
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


def held_count(session: Session, mlist: MailingList) -> int:
    """How many posts of `mlist` wait for a moderator."""
    query = select(func.count()).select_from(HeldMessage).where(HeldMessage.list_id == mlist.id)
    return session.scalar(query) or 0


def _find(session: Session, address: str, *roles: str) -> tuple[MailingList, set[str]]:
    """The list at `address` if the current user holds one of `roles` in it; 404 otherwise."""
    mlist = find_list(session, address)
    if mlist is None:
        abort(404)
    held_roles = roles_here(session, mlist)
    if not held_roles & set(roles):
        abort(404)
    return mlist, held_roles


def _back(endpoint: str, address: str, notice: str) -> ResponseReturnValue:
    # Flashed, never put in the URL, so no link can make the page say something we did not.
    flash(notice)
    return redirect(url_for(endpoint, list_address=address))


@dataclass(frozen=True)
class HeldPost:
    """A held post as its moderators see it: the row, its text, whether it has an HTML
    body (shown in a sandboxed frame), and its attachments, in the archive's order."""

    post: HeldMessage
    body: str
    has_html: bool
    attachments: list[Attachment]
    reason: str  # why it was held, in the reader's language


def _described(post: HeldMessage) -> HeldPost:
    # Read as the archive reads mail, so moderators see the text and the attachments the
    # archive would keep if they approve it.
    parsed = parse_message(post.data, post.held_at)
    has_html = html_body(post.data) is not None
    return HeldPost(post, parsed.body_text, has_html, parsed.attachments, say(held_reason(post)))


@bp.get("/<list_address>/held")
@login_required
def held(list_address: str) -> ResponseReturnValue:
    """The list's held posts, oldest first, each with its text and attachments and the
    moderator's three choices."""
    with get_core().sessions() as session:
        mlist, roles = _find(session, list_address, Role.OWNER, Role.MODERATOR)
        posts = session.scalars(
            select(HeldMessage)
            .where(HeldMessage.list_id == mlist.id)
            .order_by(HeldMessage.held_at, HeldMessage.id)
            .options(undefer(HeldMessage.data))
        )
        page = render_template(
            "manage_held.html",
            title=gettext("Held posts · %(list)s", list=mlist.address),
            mlist=mlist,
            roles=roles,
            posts=[_described(post) for post in posts],
        )
    response = make_response(page)
    # The page frames each post's cleaned HTML, as the message page frames a message's.
    response.headers["Content-Security-Policy"] = FRAMING_PAGE_POLICY
    return response


def _held_post(session: Session, list_address: str, held_id: int) -> HeldMessage:
    """The held post `held_id` of the list, for its owners and moderators; 404 otherwise."""
    mlist, _ = _find(session, list_address, Role.OWNER, Role.MODERATOR)
    post = session.get(HeldMessage, held_id)
    if post is None or post.list_id != mlist.id:
        abort(404)
    return post


@bp.get("/<list_address>/held/<int:held_id>/html")
@login_required
def held_html(list_address: str, held_id: int) -> ResponseReturnValue:
    """A held post's HTML body, cleaned as the message page's, for its sandboxed frame
    (remote images never: they would tell the sender the post was looked at)."""
    with get_core().sessions() as session:
        source = html_body(_held_post(session, list_address, held_id).data)
    if source is None:
        abort(404)
    return html_frame(source)


@bp.get("/<list_address>/held/<int:held_id>/attachments/<int:position>")
@login_required
def held_attachment(list_address: str, held_id: int, position: int) -> ResponseReturnValue:
    """One attachment of a held post, always as a download, as an archived one is."""
    with get_core().sessions() as session:
        described = _described(_held_post(session, list_address, held_id))
        if not 0 <= position < len(described.attachments):
            abort(404)
        found = described.attachments[position]
        part = parts_by_hash(described.post.data).get(found.sha256)
    if part is None:
        abort(404)
    return download(part.data, found.filename)


@bp.post("/<list_address>/held/<int:held_id>")
@login_required
def moderate(list_address: str, held_id: int) -> ResponseReturnValue:
    """Approve (deliver now), reject (tell the sender why) or discard one held post."""
    try:
        decision = admin.Decision.from_form(request.form)
    except AdminError as error:
        abort(400, say(error.text))
    core = get_core()
    with core.sessions.begin() as session:
        mlist, _ = _find(session, list_address, Role.OWNER, Role.MODERATOR)
        poster = Poster(core.archive, dmarc_lookup(), core.settings.public_url)
        answer = admin.decide(session, poster, mlist, held_id, decision, web_actor())
        address = mlist.address
    # None: another moderator may have decided first; say so rather than fail.
    notice = say(answer) if answer is not None else gettext("That post is no longer held.")
    return _back(".held", address, notice)


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
        title=gettext("Members · %(list)s", list=mlist.address),
        mlist=mlist,
        roles=roles,
        members=members,
        bans=bans,
        member_roles=MEMBER_ROLES,
        deliveries=DELIVERY_LABELS,
        disabled_reasons=DISABLED_REASONS,
        error=error,
    )
    return page, status


@bp.get("/<list_address>/members")
@login_required
def members(list_address: str) -> ResponseReturnValue:
    """Everyone in the list, in every role, with the owner's tools and the list's bans."""
    with get_core().sessions() as session:
        mlist, roles = _find(session, list_address, Role.OWNER)
        return _members_page(session, mlist, roles)


def _members_form(
    list_address: str,
    read: Callable[[Mapping[str, str]], Form],
    act: Callable[[Session, MailingList, Form], str],
) -> ResponseReturnValue:
    """Carry out one of the members page's forms for an owner: `read` checks the form
    (a refusal is shown above the page with status 400), `act` changes the list and
    says what it did, shown once on the page."""
    with get_core().sessions.begin() as session:
        mlist, roles = _find(session, list_address, Role.OWNER)
        try:
            form = read(request.form)
        except AdminError as error:
            return _members_page(session, mlist, roles, say(error.text), 400)
        notice = act(session, mlist, form)
        address = mlist.address
    return _back(".members", address, notice)


@bp.post("/<list_address>/members/add")
@login_required
def add(list_address: str) -> ResponseReturnValue:
    """Add addresses (one per line) in one role; members are asked to confirm unless the
    owner unticks the box, as `arsip lists add-member` does."""

    def act(session: Session, mlist: MailingList, form: admin.AddMembers) -> str:
        result = admin.add_members(session, get_membership(), mlist, form, web_actor())
        notice = gettext(
            "Added %(added)s, asked %(invited)s to confirm, %(already)s already there.",
            added=result.added,
            invited=result.invited,
            already=result.already,
        )
        if result.invalid:
            invalid = ", ".join(result.invalid)
            notice += " " + gettext("Not addresses: %(invalid)s", invalid=invalid)
        return notice

    return _members_form(list_address, admin.AddMembers.from_form, act)


@bp.post("/<list_address>/members/remove")
@login_required
def remove(list_address: str) -> ResponseReturnValue:
    """Take an address out of the list, in every role it holds."""

    def act(session: Session, mlist: MailingList, form: admin.RemoveMembers) -> str:
        removed = admin.remove_members(session, get_membership(), mlist, form, web_actor())
        named = ", ".join(form.addresses)
        if removed:
            return gettext("Removed %(addresses)s.", addresses=named)
        return gettext("%(addresses)s was not in the list.", addresses=named)

    return _members_form(list_address, admin.RemoveMembers.from_form, act)


@bp.post("/<list_address>/members/moderate")
@login_required
def moderate_member(list_address: str) -> ResponseReturnValue:
    """Hold (on=1) or stop holding (on=0) every post of one member for a moderator."""

    def act(session: Session, mlist: MailingList, form: admin.MemberModeration) -> str:
        if not admin.moderate_member(session, mlist, form, web_actor()):
            return gettext("%(address)s is not a member.", address=form.address)
        if form.moderated:
            return gettext("%(address)s is moderated.", address=form.address)
        return gettext("%(address)s is no longer moderated.", address=form.address)

    return _members_form(list_address, admin.MemberModeration.from_form, act)


@bp.post("/<list_address>/members/ban")
@login_required
def ban(list_address: str) -> ResponseReturnValue:
    """Ban an address, or every address a `^regex` matches, from posting and joining."""

    def act(session: Session, mlist: MailingList, form: admin.BanForm) -> str:
        admin.ban(session, mlist, form, web_actor())
        return gettext("Banned %(pattern)s.", pattern=form.pattern)

    return _members_form(list_address, admin.BanForm.from_form, act)


@bp.post("/<list_address>/members/unban")
@login_required
def unban(list_address: str) -> ResponseReturnValue:
    """Lift one of the list's bans (global bans stay; they are the administrators')."""

    def act(session: Session, mlist: MailingList, form: admin.LiftBan) -> str:
        bans = form.bans(session, mlist)
        patterns = ", ".join(row.pattern for row in bans)
        if not admin.unban(session, bans, mlist.address, web_actor()):
            return gettext("That ban is gone already.")
        return gettext("Unbanned %(patterns)s.", patterns=patterns)

    return _members_form(list_address, admin.LiftBan.from_form, act)


def _settings_page(
    mlist: MailingList, roles: set[str], error: str = "", status: int = 200
) -> ResponseReturnValue:
    settings = get_core().settings
    page = render_template(
        "manage_settings.html",
        title=gettext("Settings · %(list)s", list=mlist.address),
        mlist=mlist,
        roles=roles,
        choices=admin.CHOICES,
        choice_labels={**CHOICE_LABELS, "language": _language_labels()},
        current_language=mlist.language or admin.DEFAULT_LANGUAGE,
        checks_on=bool(settings.spamd or settings.clamd),
        error=error,
    )
    return page, status


def _language_labels() -> dict[str, str]:
    """The list's language choices: each language by its own name, and the default named
    with the language it stands for on this service."""
    default = LANGUAGES[get_core().settings.default_language]
    chosen = gettext("the service's default (%(language)s)", language=default)
    return {admin.DEFAULT_LANGUAGE: chosen, **LANGUAGES}


@bp.get("/<list_address>/settings")
@login_required
def settings(list_address: str) -> ResponseReturnValue:
    """The list's settings as a form."""
    with get_core().sessions() as session:
        mlist, roles = _find(session, list_address, Role.OWNER)
        return _settings_page(mlist, roles)


@bp.post("/<list_address>/settings")
@login_required
def save_settings(list_address: str) -> ResponseReturnValue:
    """Save the whole form, or nothing when one value is wrong."""
    with get_core().sessions.begin() as session:
        mlist, roles = _find(session, list_address, Role.OWNER)
        try:
            admin.change_settings(
                session, mlist, admin.ListSettings.from_form(request.form), web_actor()
            )
        except AdminError as error:
            return _settings_page(mlist, roles, say(error.text), 400)
        address = mlist.address
    return _back(".settings", address, gettext("Saved."))
