"""`arsip lists ...`: create lists, manage members, look at lists and held posts.

The composition root (`archiver.cli`) adds this group; the core never imports it.
"""

from __future__ import annotations

import json
import re
import sys
from typing import Any

import click
from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from archiver.audit import capped, changes, cli_actor, record
from archiver.clikit import open_core
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
from lists.patterns import PatternError, check_pattern
from lists.posting import Poster
from lists.rules.content_check import score_problem

LIST_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
HEADER_NAME = re.compile(r"^[A-Za-z0-9-]{1,76}$")
RESERVED_SUFFIXES = ("-request", "-join", "-leave", "-owner", "-bounces", "-confirm")


class BadSetting(click.ClickException):
    """A setting that cannot be, explained in one line; exits with status 2."""

    exit_code = 2


def _score(option: str, text: str | None, current: float) -> float:
    """A spam score given on the command line, or `current` when none was."""
    if text is None:
        return current
    try:
        return float(text)
    except ValueError:
        raise BadSetting(f"{option} takes a number, not {text!r}") from None


def _choice(values: type) -> click.Choice:
    return click.Choice([str(v) for v in values], case_sensitive=False)


def _find(session: Session, address: str) -> MailingList:
    name, _, domain = address.lower().partition("@")
    mlist = session.scalar(
        select(MailingList).where(MailingList.name == name, MailingList.domain == domain)
    )
    if mlist is None:
        raise click.ClickException(f"no list {address}; `arsip lists list` shows them")
    return mlist


def _describe(mlist: MailingList, members: int) -> dict[str, Any]:
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
        "members": members,
    }


def _added(result: Any, role: str, wanted: list[str]) -> dict[str, Any]:
    """What an add-member records: the counts, and the addresses given (capped)."""
    return {
        "role": str(role),
        "addresses": capped(wanted),
        "added": result.added,
        "invited": result.invited,
        "already": result.already,
        "invalid": len(result.invalid),
    }


def held_details(post: HeldMessage, reason: str) -> dict[str, Any]:
    """What a moderation decision records: which post, whose, and why; not its contents."""
    return {
        "held_id": post.id,
        "sender": post.sender,
        "message_id": post.message_id,
        "reason": reason,
    }


@click.group(name="lists")
def lists() -> None:
    """Mailing lists: create them, manage members, look at held posts."""


@lists.command()
@click.argument("address")
@click.option("--subscription", type=_choice(Subscription), default="open", show_default=True)
@click.option("--posting", type=_choice(Posting), default="members", show_default=True)
@click.option("--archive", type=_choice(ArchivePolicy), default="public", show_default=True)
@click.option("--nonmember", type=_choice(Action), default="hold", show_default=True)
@click.option("--owner", "owners", multiple=True, help="An owner's address (repeatable).")
@click.option("--description", default="", help="One line about the list.")
@click.option(
    "--bulk", is_flag=True, help="Batch recipients per transaction (no one-click links, no VERP)."
)
@click.pass_context
def create(
    ctx: click.Context,
    address: str,
    subscription: str,
    posting: str,
    archive: str,
    nonmember: str,
    owners: tuple[str, ...],
    description: str,
    bulk: bool,
) -> None:
    """Create the list NAME@DOMAIN."""
    name, at, domain = address.lower().partition("@")
    if not at or not LIST_NAME.match(name) or "." not in domain or name.endswith(RESERVED_SUFFIXES):
        raise click.BadParameter(
            "give NAME@DOMAIN, NAME of letters, digits, '.', '_' or '-'", param_hint="ADDRESS"
        )
    core = open_core(ctx, upgrade=True)
    with core.sessions.begin() as session:
        exists = session.scalar(
            select(MailingList.id).where(MailingList.name == name, MailingList.domain == domain)
        )
        if exists is not None:
            raise click.ClickException(f"the list {address} exists already")
        mlist = MailingList(
            name=name,
            domain=domain,
            display_name=name,
            description=description,
            subscription=subscription,
            posting=posting,
            archive=archive,
            nonmember_action=nonmember,
            personalize=not bulk,
        )
        session.add(mlist)
        session.flush()
        Membership(core.settings.public_url).add_members(
            session, mlist, owners, role=Role.OWNER, confirm=False
        )
        details = {**_describe(mlist, 0), "owners": list(owners)}
        record(session, cli_actor(), "list.create", mlist.address, details)
    click.echo(f"created {name}@{domain}")


@lists.command(name="add-member")
@click.argument("address")
@click.argument("members", nargs=-1)
@click.option(
    "--file", "from_file", type=click.File("r"), help="One address per line ('-': stdin)."
)
@click.option("--role", type=_choice(Role), default="member", show_default=True)
@click.option(
    "--no-confirm",
    is_flag=True,
    help="Add members at once instead of asking each to confirm (an owner's decision).",
)
@click.pass_context
def add_member(
    ctx: click.Context,
    address: str,
    members: tuple[str, ...],
    from_file: Any,
    role: str,
    no_confirm: bool,
) -> None:
    """Add addresses to the list ADDRESS (members are asked to confirm unless --no-confirm)."""
    wanted = list(members) + (from_file.read().splitlines() if from_file else [])
    if not wanted:
        raise click.UsageError("give addresses, or --file")
    core = open_core(ctx, upgrade=True)
    with core.sessions.begin() as session:
        mlist = _find(session, address)
        result = Membership(core.settings.public_url).add_members(
            session, mlist, wanted, role=role, confirm=not no_confirm
        )
        record(session, cli_actor(), "list.member.add", mlist.address, _added(result, role, wanted))
    click.echo(
        f"{result.added} added, {result.invited} asked to confirm, "
        f"{result.already} already there, {len(result.invalid)} invalid"
    )
    for bad in result.invalid[:20]:
        click.echo(f"  not an address: {bad}", err=True)
    if result.invalid:
        sys.exit(1)


@lists.command(name="remove-member")
@click.argument("address")
@click.argument("members", nargs=-1, required=True)
@click.pass_context
def remove_member(ctx: click.Context, address: str, members: tuple[str, ...]) -> None:
    """Remove addresses from the list ADDRESS (in every role)."""
    core = open_core(ctx, upgrade=True)
    with core.sessions.begin() as session:
        mlist = _find(session, address)
        removed = Membership(core.settings.public_url).remove_members(session, mlist, members)
        details = {"addresses": capped(members), "given": len(members), "removed": removed}
        record(session, cli_actor(), "list.member.remove", mlist.address, details)
    click.echo(f"{removed} removed")


@lists.command(name="members")
@click.argument("address")
@click.option("--json", "as_json", is_flag=True, help="One JSON array.")
@click.pass_context
def show_members(ctx: click.Context, address: str, as_json: bool) -> None:
    """The members of the list ADDRESS, with role and delivery."""
    core = open_core(ctx, upgrade=False)
    with core.sessions() as session:
        mlist = _find(session, address)
        rows = session.scalars(
            select(Member).where(Member.list_id == mlist.id).order_by(Member.role, Member.address)
        ).all()
        found = [
            {
                "address": m.address,
                "role": m.role,
                "delivery": m.delivery,
                "moderated": m.moderated,
                "bounce_score": round(m.bounce_score, 2),
                "disabled": m.disabled_reason,
            }
            for m in rows
        ]
    if as_json:
        click.echo(json.dumps(found))
        return
    for m in found:
        extra = f" (disabled: {m['disabled']})" if m["disabled"] else ""
        click.echo(f"{m['address']}\t{m['role']}\t{m['delivery']}{extra}")


@lists.command()
@click.argument("address")
@click.option("--json", "as_json", is_flag=True, help="One JSON object.")
@click.pass_context
def show(ctx: click.Context, address: str, as_json: bool) -> None:
    """The settings of the list ADDRESS."""
    core = open_core(ctx, upgrade=False)
    with core.sessions() as session:
        mlist = _find(session, address)
        count = session.scalar(
            select(func.count()).where(Member.list_id == mlist.id, Member.role == Role.MEMBER)
        )
        described = _describe(mlist, count or 0)
    if as_json:
        click.echo(json.dumps(described))
    else:
        for key, value in described.items():
            click.echo(f"{key}: {value}")


@lists.command(name="list")
@click.option("--json", "as_json", is_flag=True, help="One JSON array.")
@click.pass_context
def list_lists(ctx: click.Context, as_json: bool) -> None:
    """Every list, with its member count."""
    core = open_core(ctx, upgrade=False)
    with core.sessions() as session:
        counts = dict(
            session.execute(
                select(Member.list_id, func.count())
                .where(Member.role == Role.MEMBER)
                .group_by(Member.list_id)
            ).all()
        )
        found = [
            _describe(m, counts.get(m.id, 0))
            for m in session.scalars(
                select(MailingList).order_by(MailingList.domain, MailingList.name)
            )
        ]
    if as_json:
        click.echo(json.dumps(found))
    else:
        for m in found:
            click.echo(f"{m['address']}\t{m['members']} members\t{m['posting']}")


@lists.command()
@click.argument("address")
@click.option("--json", "as_json", is_flag=True, help="One JSON array.")
@click.pass_context
def held(ctx: click.Context, address: str, as_json: bool) -> None:
    """Posts to the list ADDRESS waiting for a moderator."""
    core = open_core(ctx, upgrade=False)
    with core.sessions() as session:
        mlist = _find(session, address)
        found = [
            {
                "id": h.id,
                "sender": h.sender,
                "subject": h.subject,
                "reason": h.reason,
                "held_at": h.held_at.isoformat(),
            }
            for h in session.scalars(
                select(HeldMessage).where(HeldMessage.list_id == mlist.id).order_by(HeldMessage.id)
            )
        ]
    if as_json:
        click.echo(json.dumps(found))
    else:
        for h in found:
            click.echo(f"{h['id']}\t{h['sender']}\t{h['subject']}\t({h['reason']})")


@lists.command()
@click.argument("address")
@click.argument("held_id", type=int)
@click.argument("action", type=click.Choice(["approve", "reject", "discard"]))
@click.option("--reason", default="", help="Told to the sender of a rejected post.")
@click.pass_context
def moderate(ctx: click.Context, address: str, held_id: int, action: str, reason: str) -> None:
    """Approve, reject or discard the held post HELD_ID of the list ADDRESS."""
    from lists.engine import ListEngine

    core = open_core(ctx, upgrade=True)
    engine = ListEngine(core)
    with core.sessions.begin() as session:
        mlist = _find(session, address)
        post = session.get(HeldMessage, held_id)
        if post is None or post.list_id != mlist.id:
            raise click.ClickException(f"no held post {held_id} for {address}")
        details = held_details(post, reason)
        answer = Poster(core.archive, engine.dmarc, core.settings.public_url).moderate(
            session, post, action, reason
        )
        record(session, cli_actor(), f"held.{action}", mlist.address, details)
    click.echo(answer)


@lists.command(name="set")
@click.argument("address")
@click.option("--subscription", type=_choice(Subscription))
@click.option("--posting", type=_choice(Posting))
@click.option("--archive", type=_choice(ArchivePolicy))
@click.option("--nonmember", type=_choice(Action))
@click.option("--reply-to", help="none, list, or an address replies should go to.")
@click.option("--dmarc", type=click.Choice(["auto", "always", "never"]))
@click.option("--emergency/--no-emergency", default=None, help="Hold every post.")
@click.option("--prefix", help="Subject prefix (default [NAME]).")
@click.option("--footer", help="Footer text (default: where to post and how to leave).")
@click.option("--description", help="One line about the list.")
@click.option("--max-size", type=click.IntRange(0), help="Largest post in KB (0: any).")
@click.option("--max-recipients", type=click.IntRange(0), help="Most To/Cc recipients (0: any).")
@click.option("--bulk/--personalize", default=None, help="How posts are delivered.")
@click.option("--spam-hold", help="Hold posts with at least this spam score (default 5).")
@click.option("--spam-discard", help="Discard posts with at least this spam score (default 15).")
@click.option(
    "--unchecked-posts",
    type=_choice(UncheckedPosts),
    help="What to do with a post a configured spamd or clamd could not check.",
)
@click.option(
    "--trust-header-from/--verify-sender",
    default=None,
    help="Members post on their From header alone (forgeable), or (the default) only "
    "with the member's envelope sender or an aligned DKIM signature.",
)
@click.pass_context
def set_options(ctx: click.Context, address: str, **options: Any) -> None:
    """Change settings of the list ADDRESS (only those given)."""
    core = open_core(ctx, upgrade=True)
    with core.sessions.begin() as session:
        mlist = _find(session, address)
        hold_text, discard_text = options.pop("spam_hold"), options.pop("spam_discard")
        if hold_text is not None or discard_text is not None:
            hold = _score("--spam-hold", hold_text, mlist.spam_hold_score)
            discard = _score("--spam-discard", discard_text, mlist.spam_discard_score)
            problem = score_problem(hold, discard)
            if problem:
                raise BadSetting(problem)
            mlist.spam_hold_score, mlist.spam_discard_score = hold, discard
        reply_to = options.pop("reply_to")
        if reply_to is not None:
            if reply_to in ("none", "list"):
                mlist.reply_to, mlist.reply_to_address = reply_to, ""
            elif "@" in reply_to:
                mlist.reply_to, mlist.reply_to_address = "explicit", reply_to.lower()
            else:
                raise click.BadParameter("none, list or an address", param_hint="--reply-to")
        bulk = options.pop("bulk")
        if bulk is not None:
            mlist.personalize = not bulk
        renamed = {
            "nonmember": "nonmember_action",
            "prefix": "subject_prefix",
            "max_size": "max_message_kb",
        }
        for option, value in options.items():
            if value is not None:
                setattr(mlist, renamed.get(option, option), value)
        record(session, cli_actor(), "list.settings", mlist.address, {"changed": changes(mlist)})
    click.echo(f"updated {address}")


@lists.command()
@click.argument("address")
@click.argument("pattern")
@click.pass_context
def ban(ctx: click.Context, address: str, pattern: str) -> None:
    """Ban an address, or a `^regex`, from posting to and joining the list ADDRESS
    (`*` for ADDRESS bans from every list)."""
    if pattern.startswith("^"):
        _check(pattern)
    core = open_core(ctx, upgrade=True)
    with core.sessions.begin() as session:
        list_id = None if address == "*" else _find(session, address).id
        pattern = pattern if pattern.startswith("^") else pattern.lower()
        session.add(Ban(list_id=list_id, pattern=pattern))
        record(session, cli_actor(), "list.ban", address.lower(), {"pattern": pattern})
    click.echo(f"banned {pattern}")


def _check(pattern: str) -> None:
    """Refuse, as a usage error naming the reason, a pattern RE2 cannot run."""
    try:
        check_pattern(pattern)
    except PatternError as exc:
        raise click.BadParameter(str(exc), param_hint="PATTERN") from None


@lists.command(name="header-rule")
@click.argument("address")
@click.argument("header")
@click.argument("pattern")
@click.option("--action", type=_choice(Action), default=str(Action.HOLD), show_default=True)
@click.option("--remove", is_flag=True, help="Remove the rule for HEADER and PATTERN.")
@click.pass_context
def header_rule(
    ctx: click.Context, address: str, header: str, pattern: str, action: str, remove: bool
) -> None:
    """Add a header rule to the list ADDRESS: a post whose HEADER matches PATTERN (RE2,
    without case) gets ACTION. Rules run last, after every other posting rule."""
    if not HEADER_NAME.match(header):
        raise click.BadParameter("a header name such as X-Spam-Flag", param_hint="HEADER")
    if not remove:
        _check(pattern)
    core = open_core(ctx, upgrade=True)
    with core.sessions.begin() as session:
        mlist = _find(session, address)
        rules = [
            rule
            for rule in mlist.header_matches or []
            if (rule.get("header", "").lower(), rule.get("pattern")) != (header.lower(), pattern)
        ]
        if remove and len(rules) == len(mlist.header_matches or []):
            raise click.ClickException(f"{address} has no rule for {header} {pattern}")
        if not remove:
            rules.append({"header": header, "pattern": pattern, "action": str(action)})
        mlist.header_matches = rules
        details = {"header": header, "pattern": pattern, "action": str(action), "removed": remove}
        record(session, cli_actor(), "list.header-rule", mlist.address, details)
    click.echo(f"{'removed' if remove else 'added'} the rule {header} {pattern}")


@lists.command()
@click.argument("address")
@click.argument("pattern")
@click.pass_context
def unban(ctx: click.Context, address: str, pattern: str) -> None:
    """Lift a ban from the list ADDRESS (`*`: a ban from every list)."""
    core = open_core(ctx, upgrade=True)
    with core.sessions.begin() as session:
        list_id = None if address == "*" else _find(session, address).id
        condition = Ban.list_id.is_(None) if list_id is None else Ban.list_id == list_id
        removed = session.execute(
            delete(Ban).where(condition, Ban.pattern.in_([pattern, pattern.lower()]))
        ).rowcount
        if removed:
            record(session, cli_actor(), "list.unban", address.lower(), {"pattern": pattern})
    if not removed:
        raise click.ClickException(f"{pattern} was not banned there")
    click.echo(f"unbanned {pattern}")


@lists.command(name="moderate-member")
@click.argument("address")
@click.argument("member")
@click.option("--off", is_flag=True, help="Let the member post without moderation again.")
@click.pass_context
def moderate_member(ctx: click.Context, address: str, member: str, off: bool) -> None:
    """Hold every post of MEMBER to the list ADDRESS for a moderator (or stop with --off)."""
    core = open_core(ctx, upgrade=True)
    with core.sessions.begin() as session:
        mlist = _find(session, address)
        row = session.scalar(
            select(Member).where(
                Member.list_id == mlist.id,
                Member.address == member.lower(),
                Member.role == Role.MEMBER,
            )
        )
        if row is None:
            raise click.ClickException(f"{member} is not a member of {address}")
        row.moderated = not off
        details = {"address": row.address, "moderated": not off}
        record(session, cli_actor(), "list.moderate-member", mlist.address, details)
    click.echo(f"{member} is {'no longer ' if off else ''}moderated")
