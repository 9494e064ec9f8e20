"""A case's productions on its page: start one, watch it run, resume an interrupted one,
and download a finished one as a `.zip`.

The same production `arsip case export` writes (`archiver.cases.export.export_case`),
written by a background thread of the web process (`web.production_runs`) into
`<data_dir>/productions/case-<name>/<started>/`, never a folder a person names. Who may
do what: administrators start and resume productions; administrators and auditors
download them (a production is the whole case, so reviewers, who read the case's mail on
its pages, do not); everyone who may open the case sees the list, which holds every
production of the case's series, those of the command line included (listed, but only
the web UI's own can be resumed or downloaded). `web.cases` routes these views under
`/cases/<name>/`, after it has checked that the account may open the case.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from flask import Response, abort, flash, jsonify, make_response, redirect, request
from flask.typing import ResponseReturnValue
from flask_babel import format_number, gettext, lazy_gettext, ngettext
from sqlalchemy import select
from sqlalchemy.orm import Session

from archiver.accounts import Role, User
from archiver.cases.export import case_productions, case_series, export_case
from archiver.cases.models import Case
from archiver.cases.registry import CaseError
from archiver.production.errors import ProductionError
from archiver.production.folder import DESCRIPTION
from archiver.production.manifest import TOKEN_NAME
from archiver.production.models import ABANDONED, COMPLETE, Production, ProductionSeries
from archiver.production.numbers import DEFAULT_PREFIX, checked_prefix, control_number
from archiver.production.plan import Dedupe
from archiver.production.run import Format, ProgressCallback, Summary
from web.audit_hooks import audit_change, client_ip
from web.auth import current_user
from web.case_context import case_path, current_case
from web.deps import get_core
from web.downloads import DOWNLOAD_POLICY, content_disposition
from web.html_frame import FRAMING_PAGE_POLICY
from web.i18n import say
from web.production_runs import (
    AlreadyRunning,
    case_folder,
    new_folder,
    run_file,
    run_state,
    start,
)
from web.zip_stream import zip_folder

# The case page's policy: the site's, and its script may ask this site how the case's
# productions stand (`progress_view`), nothing else
CASE_PAGE_POLICY = FRAMING_PAGE_POLICY + "; connect-src 'self'"

# What a production of the list is doing, as the page and the progress endpoint say it
RUNNING, INTERRUPTED, FINISHED, GIVEN_UP, ELSEWHERE = (
    "running",
    "interrupted",
    "finished",
    "given-up",
    "elsewhere",
)
STATES = {
    RUNNING: lazy_gettext("running"),
    INTERRUPTED: lazy_gettext("interrupted"),
    FINISHED: lazy_gettext("finished"),
    GIVEN_UP: lazy_gettext("given up"),
    ELSEWHERE: lazy_gettext("unfinished, from the command line"),
}
FORMATS = {
    Format.NATIVE: lazy_gettext("each message as an .eml file"),
    Format.MBOX: lazy_gettext("all messages in one mbox"),
}
DEDUPES = {
    Dedupe.NONE: lazy_gettext("none: every copy collected"),
    Dedupe.CUSTODIAN: lazy_gettext("once per custodian"),
    Dedupe.GLOBAL: lazy_gettext("once in all"),
}


@dataclass(frozen=True)
class Listed:
    """One production as the case page lists it."""

    id: int
    first: str
    last: str
    documents: int
    state: str
    created_by: str
    created_at: datetime
    stamped: bool  # a finished one's manifest has a trusted timestamp beside it
    progress: str  # "123 of 456 messages" while it runs or after it stopped; else ""
    error: str  # why its last run in the web UI failed, if it did
    downloadable: bool  # finished, by the web UI, and its folder is still there

    @property
    def state_text(self) -> str:
        return str(STATES[self.state])

    @property
    def resumable(self) -> bool:
        return self.state == INTERRUPTED


def production_context(case: Case, user: User | None) -> dict[str, Any]:
    """What the case page shows of its productions, and the form to start one."""
    with get_core().sessions() as db:
        prefix = _series_prefix(db, case)
        found = [_listed(case, row) for row in case_productions(db, case)]
    role = user.role if user is not None else None
    return {
        "productions": found,
        "series_prefix": prefix,
        "default_prefix": DEFAULT_PREFIX,
        "can_export": role == Role.ADMIN,
        "can_download": role in (Role.ADMIN, Role.AUDITOR),
        "production_formats": FORMATS,
        "production_dedupes": DEDUPES,
    }


def following_productions(page: ResponseReturnValue) -> Response:
    """The case's page, allowed to ask this site how its productions stand (the page's
    script follows a running one; `progress_view`)."""
    response = make_response(page)
    response.headers["Content-Security-Policy"] = CASE_PAGE_POLICY
    return response


def start_view() -> ResponseReturnValue:
    """Start a production of the case with the form's format, de-duplication and (for the
    first of the case's productions) prefix."""
    user = _administrator()
    case = _case()
    try:
        format_ = Format(request.form.get("format", Format.NATIVE.value))
        dedupe = Dedupe(request.form.get("dedupe", Dedupe.NONE.value))
    except ValueError:
        return _back(case, gettext("Choose a format and a de-duplication from the form."))
    prefix = request.form.get("prefix", "").strip() or None
    with get_core().sessions() as db:
        known = _series_prefix(db, case)
    if known is not None:
        prefix = None  # a series keeps the prefix of its first production
    elif prefix is not None:
        try:
            checked_prefix(prefix)
        except ProductionError:
            return _back(
                case,
                gettext(
                    "The prefix %(prefix)s cannot be used: give 1 to 32 letters, digits, "
                    "“_”, “-” or “.”, starting with a letter or digit.",
                    prefix=prefix,
                ),
            )
    folder = new_folder(case_folder(get_core(), case.name))
    failure = start(folder, _writer(case, folder, user, prefix, format_, dedupe))
    if failure is not None:
        if not folder.exists():
            run_file(folder).unlink(missing_ok=True)  # nothing was written: nothing to list
        return _back(case, _failed(failure))
    return _back(case, gettext("The production has started; it is listed below."))


def resume_view(production: int) -> ResponseReturnValue:
    """Run an interrupted production again into its folder: it carries on after the last
    message it wrote (or starts afresh, if the case's mail has changed since)."""
    user = _administrator()
    case = _case()
    row = _production(case, production)
    if _listed(case, row).state != INTERRUPTED:
        return _back(case, gettext("Only an interrupted production can be resumed."))
    folder = Path(row.output)
    format_, dedupe = Format(row.format), Dedupe(row.dedupe)
    try:
        failure = start(folder, _writer(case, folder, user, row.prefix, format_, dedupe))
    except AlreadyRunning:
        return _back(case, gettext("This production is being written already."))
    if failure is not None:
        return _back(case, _failed(failure))
    return _back(case, gettext("The production carries on; it is listed below."))


def download_view(production: int) -> ResponseReturnValue:
    """A finished production as one `.zip`, made while it is sent; audited against the
    case as `case.download`."""
    user = current_user()
    if user is None or user.role not in (Role.ADMIN, Role.AUDITOR):
        abort(403, gettext("Only administrators and auditors download a case's productions."))
    case = _case()
    row = _production(case, production)
    listed = _listed(case, row)
    if not listed.downloadable:
        abort(404)
    with get_core().sessions.begin() as db:
        details = {"via": "web", "production": row.id, "first": listed.first}
        audit_change(db, "case.download", case.name, details | {"ip": client_ip()})
    name = f"case-{case.name}-{listed.first}-{listed.last}"
    response = Response(zip_folder(Path(row.output), name), mimetype="application/zip")
    response.headers["Content-Disposition"] = content_disposition(f"{name}.zip")
    response.headers["Content-Security-Policy"] = DOWNLOAD_POLICY
    return response


def progress_view() -> ResponseReturnValue:
    """The case's productions and how each stands, for the page's script to follow a
    running one without reloading."""
    case = _case()
    with get_core().sessions() as db:
        found = [_listed(case, row) for row in case_productions(db, case)]
    return jsonify(
        [
            {"id": item.id, "state": item.state, "text": item.state_text, "progress": item.progress}
            for item in found
        ]
    )


def _writer(
    case: Case, folder: Path, user: User, prefix: str | None, format_: Format, dedupe: Dedupe
) -> Callable[[ProgressCallback], Summary]:
    """The production of `case` into `folder` as `user` asked it, for a background run."""
    core = get_core()
    name, actor = case.name, user.email

    def write(progress: ProgressCallback) -> Summary:
        backend = core.search_backend()  # its own: the app's belongs to its requests
        try:
            return export_case(
                core,
                backend,
                name,
                folder,
                actor,
                prefix=prefix,
                format=format_,
                dedupe=dedupe,
                progress=progress,
            )
        finally:
            backend.close()

    return write


def _listed(case: Case, row: Production) -> Listed:
    """`row` as the page lists it: its state, progress and whether it was timestamped."""
    folder = Path(row.output)
    ours = folder.parent == case_folder(get_core(), case.name)
    state = run_state(folder) if ours else None
    if row.status == COMPLETE:
        shown = FINISHED
    elif row.status == ABANDONED:
        shown = GIVEN_UP
    elif state is None:
        shown = ELSEWHERE
    else:
        shown = RUNNING if state.running else INTERRUPTED
    progress = ""
    if state is not None and state.total and shown in (RUNNING, INTERRUPTED):
        progress = ngettext(
            "%(done)s of %(total)s message",
            "%(done)s of %(total)s messages",
            state.total,
            done=format_number(state.done or 0),
            total=format_number(state.total),
        )
    return Listed(
        id=row.id,
        first=control_number(row.prefix, row.first_number),
        last=control_number(row.prefix, row.last_number),
        documents=row.documents,
        state=shown,
        created_by=row.created_by,
        created_at=row.created_at,
        stamped=(folder / TOKEN_NAME).is_file() if shown == FINISHED else False,
        progress=progress,
        error=(state.error or "") if state is not None and shown == INTERRUPTED else "",
        downloadable=shown == FINISHED and ours and (folder / DESCRIPTION).is_file(),
    )


def _series_prefix(db: Session, case: Case) -> str | None:
    """The prefix the case's series numbers with, once it has a production."""
    key = case_series(case)
    return db.scalar(select(ProductionSeries.prefix).where(ProductionSeries.key == key))


def _production(case: Case, production: int) -> Production:
    """Production `production` of the case; 404 for one of another series."""
    with get_core().sessions() as db:
        row = db.get(Production, production)
    if row is None or row.series != case_series(case):
        abort(404)
    return row


def _failed(error: Exception) -> str:
    """Why a production could not be written, for the page."""
    if isinstance(error, CaseError):
        reason = say(error.text)
    elif isinstance(error, OSError):
        reason = error.strerror or str(error)
    else:
        reason = str(error)
    return gettext("The production could not be written: %(reason)s", reason=reason)


def _administrator() -> User:
    """The logged-in administrator; 403 for auditors and reviewers."""
    user = current_user()
    if user is None or user.role != Role.ADMIN:
        abort(403, gettext("Only administrators start and resume a case's productions."))
    return user


def _case() -> Case:
    found = current_case()
    if found is None:  # routed under /cases/<name>/ only, where `web.cases` sets it
        abort(404)
    return found


def _back(case: Case, notice: str) -> ResponseReturnValue:
    flash(notice)
    return redirect(case_path(case) + "#case-productions")
