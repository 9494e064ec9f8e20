"""`arsip lists ...`: create lists, manage members, look at lists and held posts.

The composition root (`archiver.cli`) adds this group; the core never imports it.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import click
from sqlalchemy import select
from sqlalchemy.orm import Session

from archiver.audit import cli_actor
from archiver.clikit import open_core
from archiver.plural import plural
from lists import admin
from lists.admin import AdminError
from lists.membership import Membership
from lists.models import HeldMessage, MailingList, Member, Role


class BadSetting(click.ClickException):
    """A setting that cannot be, explained in one line; exits with status 2."""

    exit_code = 2


class _AdminCommands(click.Group):
    """The `lists` group: a command's options are read by the same schemas as the web
    forms (`lists.admin`), and the `AdminError` they raise is the command's one-line
    refusal with status 2."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except AdminError as error:
            raise BadSetting(str(error)) from None


def _choice(field: str) -> click.Choice:
    """The choices of the settings form's `field`, as an option's type."""
    return click.Choice(admin.CHOICES[field], case_sensitive=False)


def _find(session: Session, address: str) -> MailingList:
    mlist = admin.find_list(session, address)
    if mlist is None:
        raise click.ClickException(f"no list {address}; `arsip lists list` shows them")
    return mlist


@click.group(name="lists", cls=_AdminCommands)
def lists() -> None:
    """Mailing lists: create them, manage members, look at held posts."""


@lists.command()
@click.argument("address")
@click.option("--subscription", type=_choice("subscription"), default="open", show_default=True)
@click.option("--posting", type=_choice("posting"), default="members", show_default=True)
@click.option("--archive", type=_choice("archive"), default="public", show_default=True)
@click.option("--nonmember", type=_choice("nonmember_action"), default="hold", show_default=True)
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
    admin.list_address(address)  # refused before the archive is opened (and migrated)
    settings = admin.ListSettings.from_form(
        {
            "subscription": subscription,
            "posting": posting,
            "archive": archive,
            "nonmember_action": nonmember,
            "description": description,
            "delivery": "bulk" if bulk else "personalize",
        },
        every_field=False,
    )
    core = open_core(ctx, upgrade=True)
    membership = Membership(core.settings.public_url)
    with core.sessions.begin() as session:
        created = admin.create_list(session, membership, address, settings, owners, cli_actor())
    if created is None:
        raise click.ClickException(f"the list {address} exists already")
    click.echo(f"created {created.address}")


@lists.command(name="add-member")
@click.argument("address")
@click.argument("members", nargs=-1)
@click.option(
    "--file", "from_file", type=click.File("r"), help="One address per line ('-': stdin)."
)
@click.option(
    "--role",
    type=click.Choice([str(role) for role in Role], case_sensitive=False),
    default="member",
    show_default=True,
)
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
    form = admin.AddMembers.from_form(
        {"role": role, "addresses": "\n".join(wanted), "confirm": "" if no_confirm else "1"}
    )
    core = open_core(ctx, upgrade=True)
    membership = Membership(core.settings.public_url)
    with core.sessions.begin() as session:
        mlist = _find(session, address)
        result = admin.add_members(session, membership, mlist, form, cli_actor())
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
    form = admin.RemoveMembers.from_form({"address": "\n".join(members)})
    core = open_core(ctx, upgrade=True)
    membership = Membership(core.settings.public_url)
    with core.sessions.begin() as session:
        mlist = _find(session, address)
        removed = admin.remove_members(session, membership, mlist, form, cli_actor())
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
        described = admin.describe(mlist, admin.member_counts(session, mlist.id).get(mlist.id, 0))
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
        counts = admin.member_counts(session)
        found = [
            admin.describe(m, counts.get(m.id, 0))
            for m in session.scalars(
                select(MailingList).order_by(MailingList.domain, MailingList.name)
            )
        ]
    if as_json:
        click.echo(json.dumps(found))
    else:
        for m in found:
            click.echo(f"{m['address']}\t{plural(m['members'], 'member')}\t{m['posting']}")


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
@click.argument("action", type=click.Choice(admin.MODERATION))
@click.option("--reason", default="", help="Told to the sender of a rejected post.")
@click.pass_context
def moderate(ctx: click.Context, address: str, held_id: int, action: str, reason: str) -> None:
    """Approve, reject or discard the held post HELD_ID of the list ADDRESS."""
    from lists.engine import ListEngine
    from lists.posting import Poster

    decision = admin.Decision.from_form({"action": action, "reason": reason})
    core = open_core(ctx, upgrade=True)
    engine = ListEngine(core)
    poster = Poster(core.archive, engine.dmarc, core.settings.public_url)
    with core.sessions.begin() as session:
        mlist = _find(session, address)
        answer = admin.decide(session, poster, mlist, held_id, decision, cli_actor())
    if answer is None:
        raise click.ClickException(f"no held post {held_id} for {address}")
    click.echo(str(answer))


@lists.command(name="set")
@click.argument("address")
@click.option("--subscription", type=_choice("subscription"))
@click.option("--posting", type=_choice("posting"))
@click.option("--archive", type=_choice("archive"))
@click.option("--nonmember", type=_choice("nonmember_action"))
@click.option("--reply-to", help="none, list, or an address replies should go to.")
@click.option("--dmarc", type=_choice("dmarc"))
@click.option("--emergency/--no-emergency", default=None, help="Hold every post.")
@click.option("--prefix", help="Subject prefix (default [NAME]).")
@click.option("--footer", help="Footer text (default: where to post and how to leave).")
@click.option("--description", help="One line about the list.")
@click.option("--max-size", type=click.IntRange(0), help="Largest post in KB (0: any).")
@click.option("--max-recipients", type=click.IntRange(0), help="Most To/Cc recipients (0: any).")
@click.option("--bulk/--personalize", default=None, help="How posts are delivered.")
@click.option(
    "--language",
    type=_choice("language"),
    help="The language of the mail the list writes (default: ARSIP_DEFAULT_LANGUAGE).",
)
@click.option("--spam-hold", help="Hold posts with at least this spam score (default 5).")
@click.option("--spam-discard", help="Discard posts with at least this spam score (default 15).")
@click.option(
    "--unchecked-posts",
    type=_choice("unchecked_posts"),
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
    settings = admin.ListSettings.from_form(_settings_form(options), every_field=False)
    core = open_core(ctx, upgrade=True)
    with core.sessions.begin() as session:
        admin.change_settings(session, _find(session, address), settings, cli_actor())
    click.echo(f"updated {address}")


# `arsip lists set` options in the words of the owners' settings form, where they differ.
FORM_FIELDS = {
    "nonmember": "nonmember_action",
    "prefix": "subject_prefix",
    "max_size": "max_message_kb",
    "spam_hold": "spam_hold_score",
    "spam_discard": "spam_discard_score",
}


def _settings_form(options: dict[str, Any]) -> dict[str, str]:
    """The options given to `arsip lists set`, as the settings form would send them."""
    form: dict[str, str] = {}
    for option, value in options.items():
        if value is None:
            continue
        if option == "reply_to":
            explicit = value not in ("none", "list")
            form["reply_to"] = "explicit" if explicit else value
            form["reply_to_address"] = value if explicit else ""
        elif option == "bulk":
            form["delivery"] = "bulk" if value else "personalize"
        elif isinstance(value, bool):
            form[option] = "1" if value else ""
        else:
            form[FORM_FIELDS.get(option, option)] = str(value)
    return form


@lists.command()
@click.argument("address")
@click.argument("pattern")
@click.pass_context
def ban(ctx: click.Context, address: str, pattern: str) -> None:
    """Ban an address, or a `^regex`, from posting to and joining the list ADDRESS
    (`*` for ADDRESS bans from every list)."""
    form = admin.BanForm.from_form({"pattern": pattern})
    core = open_core(ctx, upgrade=True)
    with core.sessions.begin() as session:
        mlist = None if address == "*" else _find(session, address)
        admin.ban(session, mlist, form, cli_actor())
    click.echo(f"banned {form.pattern}")


@lists.command(name="header-rule")
@click.argument("address")
@click.argument("header")
@click.argument("pattern")
@click.option("--action", type=_choice("nonmember_action"), default="hold", show_default=True)
@click.option("--remove", is_flag=True, help="Remove the rule for HEADER and PATTERN.")
@click.pass_context
def header_rule(
    ctx: click.Context, address: str, header: str, pattern: str, action: str, remove: bool
) -> None:
    """Add a header rule to the list ADDRESS: a post whose HEADER matches PATTERN (RE2,
    without case) gets ACTION. Rules run last, after every other posting rule."""
    form = {"header": header, "pattern": pattern, "action": action, "remove": "1" if remove else ""}
    rule = admin.HeaderRule.from_form(form)
    core = open_core(ctx, upgrade=True)
    with core.sessions.begin() as session:
        changed = admin.change_header_rule(session, _find(session, address), rule, cli_actor())
    if not changed:
        raise click.ClickException(f"{address} has no rule for {header} {pattern}")
    click.echo(f"{'removed' if remove else 'added'} the rule {header} {pattern}")


@lists.command()
@click.argument("address")
@click.argument("pattern")
@click.pass_context
def unban(ctx: click.Context, address: str, pattern: str) -> None:
    """Lift a ban from the list ADDRESS (`*`: a ban from every list)."""
    core = open_core(ctx, upgrade=True)
    with core.sessions.begin() as session:
        mlist = None if address == "*" else _find(session, address)
        bans = admin.bans_matching(session, mlist, pattern)
        removed = admin.unban(session, bans, address.lower(), cli_actor())
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
    form = admin.MemberModeration.from_form({"address": member, "on": "" if off else "1"})
    core = open_core(ctx, upgrade=True)
    with core.sessions.begin() as session:
        done = admin.moderate_member(session, _find(session, address), form, cli_actor())
    if not done:
        raise click.ClickException(f"{member} is not a member of {address}")
    click.echo(f"{member} is {'no longer ' if off else ''}moderated")


@lists.command()
@click.argument("address")
@click.option(
    "--purge",
    is_flag=True,
    help="Also delete the list's archived messages (except those under a legal hold).",
)
@click.option("--yes", is_flag=True, help="Delete without asking.")
@click.pass_context
def delete(ctx: click.Context, address: str, purge: bool, yes: bool) -> None:
    """Delete the list ADDRESS: its members, settings, held posts and pending
    confirmations. Its archived mail stays, unless --purge."""
    core = open_core(ctx, upgrade=True)
    with core.sessions() as session:
        contents = admin.ListContents.of(session, _find(session, address))
    if not yes:
        archived = plural(contents.archived, "archived message")
        click.confirm(
            f"Delete the list {address} with {plural(contents.members, 'member')} and "
            f"{plural(contents.held, 'held post')}"
            + (f", and purge its {archived}?" if purge else f"? (its {archived} stay)"),
            abort=True,
        )
    done = admin.delete_list(core, address, cli_actor(), purge=purge)
    if done is None:
        raise click.ClickException(f"no list {address}; `arsip lists list` shows them")
    gone = done.contents
    click.echo(
        f"deleted the list {address}: {plural(gone.members, 'member')}, "
        f"{plural(gone.held, 'held post')}, {plural(gone.pending, 'pending confirmation')}"
    )
    report = done.purge
    if report is None:
        click.echo(f"its {plural(gone.archived, 'archived message')} stay in the archive")
        return
    click.echo(f"purged {plural(report.deleted, 'archived message')}")
    if report.kept_by_holds:
        held = ", ".join(f"{name} ({n})" for name, n in sorted(report.per_hold.items()))
        click.echo(f"kept {plural(report.kept_by_holds, 'message')} under legal hold: {held}")
    if gone.journaled:
        click.echo(f"kept {plural(gone.journaled, 'message')} the journal also brought in")
    if report.waiting_for_index:
        click.echo(
            f"kept {plural(report.waiting_for_index, 'message')} the search index has not "
            "taken in yet (a hold's query could cover them)"
        )
