"""Retention policies and legal holds in the browser, for administrators and auditors.

These pages mirror `arsip retention ...` and `arsip hold ...` over the same functions, so
a change means the same wherever it is made and leaves the same audit entry (the actor is
the logged-in account's email). Who may do what:

- administrators and auditors see both pages, preview a sweep and ask why a message stays;
- only administrators add or remove policies and pause sweeps: that decides what is
  deleted. An auditor's post there answers 403: the page is theirs to read, so hiding it
  behind 404 would tell them nothing new;
- administrators and auditors both place and release holds: legal teams do that;
- everyone else gets 404, as on the other private pages.

The preview is a dry run of the real sweep. It changes nothing, but it evaluates every
policy's and hold's query and walks every old message, which takes a while on a large
archive, so it runs only when asked (a POST, which no prefetcher or crawler sends) and one
at a time per web process. Its pages of the messages a sweep would delete, and their mbox
download, are posts too, each carrying the form's CSRF token, and each runs the dry run
again: what is listed or downloaded is what a sweep would delete at that moment. Reading
them is audited (`retention.preview`, `export`), as searches and exports are.

Saving a policy or placing a hold says how many messages it covers now, counted by the
rules the sweep applies (`archiver.retention.coverage`), and warns when that is none or
when a longer policy keeps the policy's messages anyway; the holds page shows each
active hold's count.
"""

from __future__ import annotations

import re
import threading
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from flask import (
    Blueprint,
    Response,
    abort,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    url_for,
)
from flask.typing import ResponseReturnValue
from flask_babel import gettext
from sqlalchemy.orm import Session

from archiver.accounts import Role, User
from archiver.export import mbox_entries
from archiver.retention.coverage import Note, hold_coverage, policy_coverage
from archiver.retention.doomed import doomed_page
from archiver.retention.periods import PeriodError
from archiver.retention.rules import (
    RuleError,
    add_hold,
    add_policy,
    holds,
    policies,
    release_hold,
    remove_policy,
    set_paused,
    sweep_state,
)
from archiver.retention.sweep import Sweeper, SweepReport, explain
from web.audit_hooks import audit_read
from web.auth import current_user, current_viewer, login_required
from web.deps import get_core, search_backend
from web.i18n import say
from web.search import private_page_headers

if TYPE_CHECKING:
    from flask.sansio.blueprints import BlueprintSetupState


bp = Blueprint("retention", __name__, url_prefix="/admin")

PREVIEW_LOCK = "arsip_retention_preview"
POLICY_FIELDS = ("name", "scope", "keep")
HOLD_FIELDS = ("name", "reason", "query", "custodians", "since", "until")
# Addresses hold no spaces, commas or semicolons: whichever a legal team pastes, one splits.
_CUSTODIAN_SEPARATORS = re.compile(r"[\s,;]+")


class FormError(ValueError):
    """A form value this page reads itself (a date) that cannot be used as sent."""


@bp.record_once
def _preview_lock(state: BlueprintSetupState) -> None:
    state.app.extensions[PREVIEW_LOCK] = threading.Lock()


bp.after_request(private_page_headers)


def _staff() -> User:
    """The logged-in administrator or auditor; 404 for anyone else."""
    user = current_user()
    if user is None or user.role not in (Role.ADMIN, Role.AUDITOR):
        abort(404)
    return user


def _administrator() -> User:
    """The logged-in administrator; 403 for auditors, who may read but not decide."""
    user = _staff()
    if user.role != Role.ADMIN:
        abort(403, gettext("Only administrators change retention policies and pause sweeps."))
    return user


def _back(endpoint: str, notice: str, notes: list[Note] | None = None) -> ResponseReturnValue:
    # Flashed, never put in the URL, so no link can make the page say something we did not.
    flash(notice)
    for note in notes or []:
        said = say(note.text)
        flash(gettext("Warning: %(note)s", note=said) if note.warning else said)
    return redirect(url_for(endpoint))


def _sentence(error: RuleError) -> str:
    """A rules error as a notice in the page's language: capitalised and full-stopped,
    names left as typed."""
    text = say(error.text)
    return text[:1].upper() + text[1:] + "."


def _form(fields: tuple[str, ...]) -> dict[str, str]:
    return {name: request.form.get(name, "") for name in fields}


def _retention_page(
    session: Session, user: User, status: int = 200, **context: Any
) -> ResponseReturnValue:
    """The retention page; `context` adds an error, a preview or an explanation."""
    found = policies(session)
    context.setdefault("policy_form", dict.fromkeys(POLICY_FIELDS, ""))
    page = render_template(
        "retention.html",
        title=gettext("Retention"),
        policies=found,
        state=sweep_state(session),
        can_change=user.role == Role.ADMIN,
        **context,
    )
    return page, status


@bp.get("/retention")
@login_required
def index() -> ResponseReturnValue:
    """The policies and the sweep's state; the preview and explanations only when asked."""
    user = _staff()
    with get_core().sessions() as session:
        return _retention_page(session, user)


@bp.post("/retention/policies")
@login_required
def add() -> ResponseReturnValue:
    """Save a new policy, or show the form again with what was typed and why it failed."""
    user = _administrator()
    form = _form(POLICY_FIELDS)
    try:
        with get_core().sessions.begin() as session:
            policy = add_policy(session, user.email, form["name"], form["keep"], form["scope"])
            notice = _saved(policy.name, policy.scope, policy.keep)
    except (RuleError, PeriodError) as exc:
        with get_core().sessions() as session:
            return _retention_page(session, user, 400, error=say(exc.text), policy_form=form)
    with get_core().sessions() as session:
        covered = policy_coverage(session, search_backend(), policy.name)
    return _back(".index", notice, covered.notes(scoped=policy.scope is not None))


def _saved(name: str, scope: str | None, keep: str) -> str:
    """The notice that a policy was saved, and what it keeps."""
    if scope:
        return gettext(
            "Policy %(name)s: keep %(scope)s for %(keep)s.", name=name, scope=scope, keep=keep
        )
    return gettext("Policy %(name)s: keep everything for %(keep)s.", name=name, keep=keep)


@bp.post("/retention/policies/remove")
@login_required
def remove() -> ResponseReturnValue:
    """Delete a policy; what only it matched is kept forever from now on."""
    user = _administrator()
    name = request.form.get("name", "")
    try:
        with get_core().sessions.begin() as session:
            remove_policy(session, user.email, name)
    except RuleError as exc:
        # Another administrator may have removed it first; say so rather than fail.
        return _back(".index", _sentence(exc))
    return _back(".index", gettext("Policy %(name)s removed.", name=name))


@bp.post("/retention/pause")
@login_required
def pause() -> ResponseReturnValue:
    """Pause (paused=1) or resume (paused=0) sweeps; one under way stops after its batch."""
    user = _administrator()
    paused = request.form.get("paused") == "1"
    with get_core().sessions.begin() as session:
        set_paused(session, user.email, paused)
    notice = gettext("Sweeps are paused.") if paused else gettext("Sweeps run again.")
    return _back(".index", notice)


def _dry_run(user: User) -> SweepReport | None:
    """A dry run that notes what it would delete; None while another one runs."""
    lock: threading.Lock = current_app.extensions[PREVIEW_LOCK]
    if not lock.acquire(blocking=False):
        return None
    try:
        core = get_core()
        sweeper = Sweeper(core.sessions, core.store, search_backend(), actor=user.email)
        return sweeper.run(dry_run=True, collect=True)
    finally:
        lock.release()


def _busy(user: User) -> ResponseReturnValue:
    with get_core().sessions() as session:
        busy = gettext("A preview is running already; try again when it has finished.")
        return _retention_page(session, user, 409, preview_error=busy)


@bp.post("/retention/preview")
@login_required
def preview() -> ResponseReturnValue:
    """Count what a sweep would delete now, per policy, and what holds keep, and list a
    page (`page`, from 1) of the messages it would delete; delete nothing."""
    user = _staff()
    report = _dry_run(user)
    if report is None:
        return _busy(user)
    number = request.form.get("page", 1, type=int)  # anything but a number: page 1
    with get_core().sessions() as session:
        page = doomed_page(session, report.doomed, number)
        details = {"page": page.number, "messages": page.total}
        audit_read(current_viewer(), "retention.preview", "dry run", details)
        rows = _preview_rows(session, report)
        return _retention_page(session, user, report=report, rows=rows, doomed=page)


@bp.post("/retention/preview.mbox")
@login_required
def preview_export() -> ResponseReturnValue:
    """Every message a sweep would delete now, as received, in one mboxrd download."""
    user = _staff()
    report = _dry_run(user)
    if report is None:
        return _busy(user)
    audit_read(current_viewer(), "export", "retention dry run", {"messages": report.deleted})
    # The generator outlives the request, so it gets the core now, not from the context.
    return Response(
        mbox_entries(get_core(), report.doomed),
        content_type="application/mbox",
        headers={"Content-Disposition": 'attachment; filename="arsip-would-delete.mbox"'},
    )


def _preview_rows(session: Session, report: SweepReport) -> list[tuple[str, int]]:
    """Every policy with its count, those that would delete nothing included."""
    return [(policy.name, report.per_policy.get(policy.name, 0)) for policy in policies(session)]


@bp.get("/retention/explain")
@login_required
def why() -> ResponseReturnValue:
    """Which policies and holds apply to a Message-ID, and when each copy may go."""
    user = _staff()
    message_id = request.args.get("message_id", "").strip()
    with get_core().sessions() as session:
        if not message_id:
            wanted = gettext("Give a Message-ID.")
            return _retention_page(session, user, 400, explain_error=wanted)
        found = explain(session, search_backend(), message_id)
        if not found:
            missing = gettext(
                "No archived message has the Message-ID %(message_id)s.", message_id=message_id
            )
            return _retention_page(session, user, 404, explain_error=missing, message_id=message_id)
        return _retention_page(session, user, explanations=found, message_id=message_id)


def _holds_page(status: int = 200, **context: Any) -> ResponseReturnValue:
    """The holds page; `context` adds an error and the form as typed, or a confirmation."""
    context.setdefault("hold_form", dict.fromkeys(HOLD_FIELDS, ""))
    with get_core().sessions() as session:
        every = holds(session, include_released=True)
        active = [hold for hold in every if hold.released_at is None]
        page = render_template(
            "holds.html",
            title=gettext("Legal holds"),
            active=active,
            covered={
                hold.name: hold_coverage(session, search_backend(), hold).messages
                for hold in active
            },
            released=[hold for hold in every if hold.released_at is not None],
            **context,
        )
    return page, status


def custodian_list(text: str) -> list[str]:
    """The addresses of a custodians field, separated by commas, semicolons or lines."""
    return [address for address in _CUSTODIAN_SEPARATORS.split(text) if address]


def day(text: str, refusal: str) -> datetime | None:
    """A `YYYY-MM-DD` from a date input as midnight UTC, None when empty; `FormError` with
    `refusal` (a sentence with `%(date)s` for the text) else."""
    text = text.strip()
    if not text:
        return None
    try:
        return datetime.strptime(text, "%Y-%m-%d").replace(tzinfo=UTC)
    except ValueError as exc:
        raise FormError(refusal % {"date": repr(text)}) from exc


@bp.get("/holds")
@login_required
def hold_list() -> ResponseReturnValue:
    """Active holds, released ones folded away, and the form to place one."""
    _staff()
    return _holds_page()


@bp.post("/holds")
@login_required
def place() -> ResponseReturnValue:
    """Place a hold, or show the form again with what was typed and why it failed."""
    user = _staff()
    form = _form(HOLD_FIELDS)
    try:
        since = day(
            form["since"], gettext("The start date %(date)s is not a date like 2026-01-31.")
        )
        until = day(form["until"], gettext("The end date %(date)s is not a date like 2026-01-31."))
        with get_core().sessions.begin() as session:
            placed = add_hold(
                session,
                user.email,
                form["name"],
                form["reason"],
                query=form["query"],
                custodians=custodian_list(form["custodians"]),
                since=since,
                until=until,
            )
            name = placed.name
    except RuleError as exc:
        return _holds_page(400, error=say(exc.text), hold_form=form)
    except FormError as exc:
        return _holds_page(400, error=str(exc), hold_form=form)
    with get_core().sessions() as session:
        covered = hold_coverage(session, search_backend(), placed)
    return _back(".hold_list", gettext("Hold %(name)s placed.", name=name), covered.notes())


@bp.get("/holds/release")
@login_required
def confirm_release() -> ResponseReturnValue:
    """Ask before releasing: what the hold alone kept may go at the next sweep."""
    _staff()
    name = request.args.get("name", "")
    with get_core().sessions() as session:
        hold = next((h for h in holds(session) if h.name == name), None)
    if hold is None:
        return _back(".hold_list", gettext("No active hold is named %(name)s.", name=name))
    return _holds_page(releasing=hold)


@bp.post("/holds/release")
@login_required
def release() -> ResponseReturnValue:
    """Release an active hold (the confirmation page's button)."""
    user = _staff()
    name = request.form.get("name", "")
    try:
        with get_core().sessions.begin() as session:
            release_hold(session, user.email, name)
    except RuleError as exc:
        # Someone else may have released it first; say so rather than fail.
        return _back(".hold_list", _sentence(exc))
    return _back(".hold_list", gettext("Hold %(name)s released.", name=name))
