"""Cases in the browser: the cases an account may review, each case's page with a search
limited to its mail, and the messages, threads and downloads read inside it.

Who may do what (`archiver.cases.registry.may_review`):

- a reviewer (any account given the role on a case) opens the open cases they review,
  and inside `/cases/<name>/` sees the case's mail and nothing else, not even their own;
- administrators and auditors open every case, closed ones included;
- only administrators open, edit, hold and close cases and name reviewers (403 for an
  auditor, who may read the page; 404 for anyone else, as on the other private pages).

Reading inside a case uses the site's own views (`web.search`, `web.messages`) with the
case's scope as the request's viewer, set before the view runs; so the one visibility
rule decides, and every search, view and download is audited against the case
(`web.case_context`). A case's productions are started, followed and downloaded from
its page (`web.case_productions`). Case pages name legal matters: no cache may keep them.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from flask import Blueprint, Response, abort, flash, g, redirect, render_template, request
from flask.typing import ResponseReturnValue
from flask_babel import gettext
from sqlalchemy import select
from sqlalchemy.orm import Session

from archiver.accounts import Role, User
from archiver.cases.holds import case_holds, close_case, place_case_hold
from archiver.cases.models import Case
from archiver.cases.registry import (
    CaseError,
    Criteria,
    add_reviewer,
    create_case,
    criteria,
    edit_case,
    may_review,
    remove_reviewer,
    reviewable_cases,
    reviewers,
)
from archiver.cases.scope import case_viewer
from archiver.retention.coverage import hold_coverage
from archiver.retention.rules import RuleError
from archiver.search.backend import Sort
from web.auth import current_user, current_viewer, login_required
from web.case_context import case_path, current_case, enter_case
from web.case_productions import (
    download_view,
    following_productions,
    production_context,
    progress_view,
    resume_view,
    start_view,
)
from web.deps import get_core, search_backend
from web.html_frame import FRAMING_PAGE_POLICY
from web.i18n import say
from web.messages import (
    attachment,
    attachment_preview,
    eml,
    html,
    raw,
    reading_headers,
    thread,
)
from web.messages import (
    show as show_message,
)
from web.retention import FormError, custodian_list, day
from web.search import export, message_count, private_page_headers, results_page

bp = Blueprint("cases", __name__, url_prefix="/cases")

CASE_FIELDS = ("name", "description", "custodians", "queries", "since", "until")
NAME_ARG = "arsip_case_name"


@bp.app_template_global()
def has_cases() -> bool:
    """Whether the logged-in account may open any case (the menu's "Cases" link)."""
    user = current_user()
    if user is None:
        return False
    with get_core().sessions() as db:
        return bool(reviewable_cases(db, user))


@bp.url_value_preprocessor
def _take_name(endpoint: str | None, values: dict[str, Any] | None) -> None:
    """Keep the case's name for `_enter`, so the site's views run with their own
    arguments."""
    if values and "case" in values:
        setattr(g, NAME_ARG, values.pop("case"))


@bp.before_request
def _enter() -> ResponseReturnValue | None:
    """Inside a case: the login, the account's right to review it (404 otherwise, so no
    one learns which cases exist), and the case's scope as the request's viewer."""
    name = g.pop(NAME_ARG, None)
    if name is None:
        return None
    user = current_user()
    if user is None:
        here = request.full_path if request.query_string else request.path
        return redirect("/login?" + urlencode({"next": here}))
    with get_core().sessions() as db:
        case = db.scalar(select(Case).where(Case.name == name))
        if case is None or not may_review(db, user, case):
            abort(404)
    enter_case(case)
    g.arsip_viewer = case_viewer(search_backend(), case)
    return None


@bp.after_request
def _private(response: Response) -> Response:
    """Message pages frame their HTML body, as outside a case; nothing is cached."""
    response = reading_headers(response)
    response.headers.setdefault("Content-Security-Policy", FRAMING_PAGE_POLICY)
    return private_page_headers(response)


def _case() -> Case:
    found = current_case()
    if found is None:  # every route below names a case, so `_enter` has set it
        abort(404)
    return found


def _fresh(db: Session, case: Case) -> Case:
    """`case` as `db` has it now, for a change (the request's copy is detached)."""
    found = db.get(Case, case.id)
    if found is None:  # cases are never deleted; never fail a page on it though
        abort(404)
    return found


def _administrator() -> User:
    """The logged-in administrator; 403 for auditors and reviewers, who read cases but do
    not change them."""
    user = current_user()
    if user is None or user.role != Role.ADMIN:
        abort(403, gettext("Only administrators open, change and close cases."))
    return user


def _form() -> dict[str, str]:
    return {name: request.form.get(name, "") for name in CASE_FIELDS}


def _criteria(form: dict[str, str]) -> Criteria:
    """The form's criteria, checked; `CaseError` or `FormError` says what is wrong."""
    since = day(form["since"], gettext("The start date %(date)s is not a date like 2026-01-31."))
    until = day(form["until"], gettext("The end date %(date)s is not a date like 2026-01-31."))
    return criteria(
        custodian_list(form["custodians"]),
        form["queries"].splitlines(),
        since.date() if since else None,
        until.date() if until else None,
    )


def _sentence(error: CaseError | RuleError) -> str:
    """An error of the core as a notice in the page's language, capitalised and stopped."""
    text = say(error.text)
    return text[:1].upper() + text[1:] + "."


def _back(case: Case, notice: str) -> ResponseReturnValue:
    flash(notice)  # flashed, never put in the URL: no link can make the page say it
    return redirect(case_path(case))


def _form_of(case: Case) -> dict[str, str]:
    """A case's fields as its edit form shows them."""
    return {
        "name": case.name,
        "description": case.description,
        "custodians": "\n".join(case.custodians),
        "queries": "\n".join(case.queries),
        "since": case.since.isoformat() if case.since else "",
        "until": case.until.isoformat() if case.until else "",
    }


def _list_page(status: int = 200, **context: Any) -> ResponseReturnValue:
    user = current_user()
    with get_core().sessions() as db:
        found = reviewable_cases(db, user)
    context.setdefault("case_form", dict.fromkeys(CASE_FIELDS, ""))
    page = render_template(
        "cases.html",
        title=gettext("Cases"),
        cases=found,
        can_manage=user is not None and user.role == Role.ADMIN,
        **context,
    )
    return page, status


@bp.get("/")
@login_required
def index() -> ResponseReturnValue:
    """The cases this account may review; for administrators, the form to open one."""
    return _list_page()


@bp.post("/")
@login_required
def create() -> ResponseReturnValue:
    """Open a case, or show the form again with what was typed and why it failed."""
    user = _administrator()
    form = _form()
    try:
        covers = _criteria(form)
        with get_core().sessions.begin() as db:
            case = create_case(db, user.email, form["name"], form["description"], covers)
            db.expunge(case)
    except CaseError as exc:
        return _list_page(400, error=_sentence(exc), case_form=form)
    except FormError as exc:
        return _list_page(400, error=str(exc), case_form=form)
    return _back(case, gettext("Case %(name)s opened.", name=case.name))


@bp.get("/<case>/")
def show() -> ResponseReturnValue:
    """The case: what it covers, its holds and reviewers, its productions, and a search
    of its mail (its newest messages before anything is typed)."""
    return following_productions(_case_page())


def _case_page(**context: Any) -> ResponseReturnValue:
    """The case's page. What it costs follows the page shown, not the case: the number of
    messages covered is the search backend's count (estimated past ten thousand on
    PostgreSQL), never a list of the case's ids, and how many messages each hold keeps,
    which means judging every message it covers, is worked out for administrators and
    auditors only (reviewers see the holds' names)."""
    case = _case()
    user = current_user()
    counted = user is not None and user.role in (Role.ADMIN, Role.AUDITOR)
    everything = search_backend().search(None, current_viewer(), Sort.DATE, 1, 0)
    with get_core().sessions() as db:
        holds = [
            (hold, hold_coverage(db, search_backend(), hold).messages if counted else None)
            for hold in case_holds(db, case)
            if hold.released_at is None
        ]
        released = [hold for hold in case_holds(db, case) if hold.released_at is not None]
        people = [reviewer.email for reviewer in reviewers(db, case)]
    return results_page(
        "case.html",
        everything_when_empty=True,
        case=case,
        case_url=case_path(case),
        covered=message_count(everything.total, everything.total_exact),
        holds=holds,
        released=released,
        reviewers=people,
        can_manage=user is not None and user.role == Role.ADMIN,
        **production_context(case, user),
        **context,
        title=gettext("Case %(name)s", name=case.name),
    )


@bp.get("/<case>/edit")
def edit_form() -> ResponseReturnValue:
    """The case's description and criteria, to change."""
    _administrator()
    case = _case()
    return _edit_page(case, _form_of(case))


def _edit_page(case: Case, form: dict[str, str], **context: Any) -> ResponseReturnValue:
    return render_template(
        "case_edit.html",
        title=gettext("Change case %(name)s", name=case.name),
        case=case,
        case_url=case_path(case),
        case_form=form,
        **context,
    )


@bp.post("/<case>/edit")
def edit() -> ResponseReturnValue:
    """Save the case's new description and criteria; its holds stay as placed."""
    user = _administrator()
    case = _case()
    form = {**_form(), "name": case.name}
    try:
        covers = _criteria(form)
        with get_core().sessions.begin() as db:
            edit_case(db, user.email, _fresh(db, case), form["description"], covers)
    except CaseError as exc:
        return _edit_page(case, form, error=_sentence(exc)), 400
    except FormError as exc:
        return _edit_page(case, form, error=str(exc)), 400
    return _back(case, gettext("Case %(name)s saved.", name=case.name))


@bp.post("/<case>/hold")
def hold() -> ResponseReturnValue:
    """Place the hold the case defines (nothing changes when it is in place)."""
    user = _administrator()
    case = _case()
    try:
        with get_core().sessions.begin() as db:
            placed, new = place_case_hold(db, user.email, _fresh(db, case))
            name = placed.name
    except (CaseError, RuleError) as exc:
        return _back(case, _sentence(exc))
    if new:
        return _back(case, gettext("Hold %(name)s placed.", name=name))
    return _back(case, gettext("Hold %(name)s is in place already.", name=name))


@bp.get("/<case>/close")
def confirm_close() -> ResponseReturnValue:
    """Ask before closing: its holds are released and its reviewers lose access."""
    _administrator()
    if not _case().is_open:
        return _back(_case(), gettext("This case is closed already."))
    return _case_page(closing=True)


@bp.post("/<case>/close")
def close() -> ResponseReturnValue:
    """Close the case (the confirmation's button)."""
    user = _administrator()
    case = _case()
    try:
        with get_core().sessions.begin() as db:
            released = close_case(db, user.email, _fresh(db, case))
    except (CaseError, RuleError) as exc:
        return _back(case, _sentence(exc))
    if released:
        return _back(
            case,
            gettext(
                "Case %(name)s closed; released %(holds)s.",
                name=case.name,
                holds=", ".join(released),
            ),
        )
    return _back(case, gettext("Case %(name)s closed.", name=case.name))


@bp.post("/<case>/reviewers")
def add_reviewer_view() -> ResponseReturnValue:
    """Give an account the reviewer role on the case."""
    user = _administrator()
    case = _case()
    email = request.form.get("email", "").strip()
    try:
        with get_core().sessions.begin() as db:
            added = add_reviewer(db, user.email, _fresh(db, case), email)
    except CaseError as exc:
        return _back(case, _sentence(exc))
    if added:
        return _back(case, gettext("%(email)s reviews this case now.", email=email))
    return _back(case, gettext("%(email)s reviews this case already.", email=email))


@bp.post("/<case>/reviewers/remove")
def remove_reviewer_view() -> ResponseReturnValue:
    """Take the reviewer role on the case from an account."""
    user = _administrator()
    case = _case()
    email = request.form.get("email", "").strip()
    try:
        with get_core().sessions.begin() as db:
            remove_reviewer(db, user.email, _fresh(db, case), email)
    except CaseError as exc:
        return _back(case, _sentence(exc))
    return _back(case, gettext("%(email)s no longer reviews this case.", email=email))


# Reading inside the case: the site's own views, under the case's scope.
for rule, endpoint, view in (
    ("/<case>/export.mbox", "export", export),
    ("/<case>/messages/<path:message_id>", "message", show_message),
    ("/<case>/messages/<path:message_id>/html", "message_html", html),
    ("/<case>/messages/<path:message_id>/raw", "message_raw", raw),
    ("/<case>/messages/<path:message_id>/eml", "message_eml", eml),
    (
        "/<case>/messages/<path:message_id>/attachments/<int:position>",
        "attachment",
        attachment,
    ),
    (
        "/<case>/messages/<path:message_id>/attachments/<int:position>/preview",
        "attachment_preview",
        attachment_preview,
    ),
    ("/<case>/threads/<thread_id>", "thread", thread),
):
    bp.add_url_rule(rule, endpoint, view, methods=["GET"])

# A case's productions (`web.case_productions`).
for rule, endpoint, view, methods in (
    ("/<case>/productions", "start_production", start_view, ["POST"]),
    ("/<case>/productions.json", "productions", progress_view, ["GET"]),
    ("/<case>/productions/<int:production>/resume", "resume_production", resume_view, ["POST"]),
    ("/<case>/productions/<int:production>.zip", "download_production", download_view, ["GET"]),
):
    bp.add_url_rule(rule, endpoint, view, methods=methods)
