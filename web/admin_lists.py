"""Lists made and deleted by administrators: `arsip lists create` and `arsip lists delete`
in the browser.

Both read and act through `lists.admin` (`list_address`, `ListSettings.from_form`,
`create_list`, `ListContents`, `delete_list`), so the web and the command line accept,
refuse and record the same things. Deleting asks first, on a page that says what goes
and what stays, and wants the list's address typed again: a list cannot come back.
"""

from __future__ import annotations

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_babel import format_number, gettext, ngettext

from lists import admin
from lists.admin import AdminError, ListContents, ListDeletion, find_list
from lists.membership import BadAddress, one_address
from web.audit_hooks import web_actor
from web.auth import admin_only, current_user
from web.deps import get_core, get_membership
from web.manage import CHOICE_LABELS

bp = Blueprint("lists", __name__, url_prefix="/lists")

# What a new list asks for; the rest of its settings are the owners' settings page.
NEW_LIST_CHOICES = ("subscription", "posting", "archive")
DEFAULTS = {"subscription": "open", "posting": "members", "archive": "public"}


def _owners(text: str) -> list[str]:
    """The owners' addresses, one a line, each checked as every added address is."""
    owners = []
    for line in text.splitlines():
        if line.strip():
            try:
                owners.append(one_address(line))
            except BadAddress as error:
                raise AdminError(f"{line.strip()}: {error}.") from None
    return owners


def _new_form(form: dict[str, str], error: str = "", status: int = 200) -> ResponseReturnValue:
    page = render_template(
        "admin_list_new.html",
        title=gettext("New list"),
        form=form,
        choices={name: admin.CHOICES[name] for name in NEW_LIST_CHOICES},
        choice_labels=CHOICE_LABELS,
        error=error,
    )
    return page, status


@bp.get("/new")
@admin_only
def new() -> ResponseReturnValue:
    """The form for a new list, its creator proposed as its first owner."""
    user = current_user()
    return _new_form({**DEFAULTS, "owners": user.email if user is not None else ""})


@bp.post("/new")
@admin_only
def create() -> ResponseReturnValue:
    """Create the list, or show the form again with why not (and nothing created)."""
    form = {key: request.form.get(key, "") for key in ("address", "owners", "description")}
    # A choice the form leaves out is the default, as an option left out of the command.
    form.update({name: request.form.get(name, DEFAULTS[name]) for name in NEW_LIST_CHOICES})
    try:
        address = "@".join(admin.list_address(form["address"]))
        owners = _owners(form["owners"])
        settings = admin.ListSettings.from_form(
            {name: form[name] for name in (*NEW_LIST_CHOICES, "description")}, every_field=False
        )
        with get_core().sessions.begin() as session:
            created = admin.create_list(
                session, get_membership(), address, settings, owners, web_actor()
            )
    except AdminError as error:
        return _new_form(form, str(error), 400)
    if created is None:
        return _new_form(form, gettext("The list %(list)s exists already.", list=address), 400)
    flash(gettext("Created the list %(list)s.", list=address))
    return redirect(url_for("manage.settings", list_address=address))


def _contents(list_address: str) -> tuple[str, ListContents]:
    with get_core().sessions() as session:
        mlist = find_list(session, list_address)
        if mlist is None:
            abort(404)
        return mlist.address, ListContents.of(session, mlist)


def _delete_page(list_address: str, error: str = "", status: int = 200) -> ResponseReturnValue:
    address, contents = _contents(list_address)
    page = render_template(
        "admin_list_delete.html",
        title=gettext("Delete %(list)s", list=address),
        address=address,
        contents=contents,
        error=error,
    )
    return page, status


@bp.get("/<list_address>/delete")
@admin_only
def confirm_delete(list_address: str) -> ResponseReturnValue:
    """What deleting the list takes with it and what stays, with the button that does it."""
    return _delete_page(list_address)


@bp.post("/<list_address>/delete")
@admin_only
def delete(list_address: str) -> ResponseReturnValue:
    """Delete the list (and with `purge`, its archived mail no hold covers), once the
    administrator has typed its address again."""
    address, _ = _contents(list_address)
    if request.form.get("confirm", "").strip().lower() != address:
        return _delete_page(address, gettext("Type the list's address to confirm."), 400)
    done = admin.delete_list(
        get_core(), address, web_actor(), purge=bool(request.form.get("purge"))
    )
    if done is None:  # deleted meanwhile by someone else
        abort(404)
    flash(_deleted(address, done))
    return redirect(url_for("admin.overview"))


def _deleted(address: str, done: ListDeletion) -> str:
    """What the deletion did, in the words `arsip lists delete` prints."""
    gone, report = done.contents, done.purge
    said = [
        gettext("Deleted the list %(list)s.", list=address),
        ngettext(
            "%(count)s member removed.",
            "%(count)s members removed.",
            gone.members,
            count=_n(gone.members),
        ),
        ngettext(
            "%(count)s held post discarded.",
            "%(count)s held posts discarded.",
            gone.held,
            count=_n(gone.held),
        ),
    ]
    if report is None:
        stays = ngettext(
            "Its %(count)s archived message stays in the archive.",
            "Its %(count)s archived messages stay in the archive.",
            gone.archived,
            count=_n(gone.archived),
        )
        return " ".join([*said, stays])
    kept = report.kept_by_holds
    said.append(
        ngettext(
            "%(count)s archived message purged.",
            "%(count)s archived messages purged.",
            report.deleted,
            count=_n(report.deleted),
        )
    )
    if kept:
        said.append(
            ngettext(
                "%(count)s kept under a legal hold.",
                "%(count)s kept under legal holds.",
                kept,
                count=_n(kept),
            )
        )
    if gone.journaled:
        said.append(
            ngettext(
                "%(count)s kept because the journal brought it in too.",
                "%(count)s kept because the journal brought them in too.",
                gone.journaled,
                count=_n(gone.journaled),
            )
        )
    if report.waiting_for_index:
        said.append(
            ngettext(
                "%(count)s kept until the search index has taken it in.",
                "%(count)s kept until the search index has taken them in.",
                report.waiting_for_index,
                count=_n(report.waiting_for_index),
            )
        )
    return " ".join(said)


def _n(count: int) -> str:
    return format_number(count)
