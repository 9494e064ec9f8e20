"""The administrators' overview: how the service is doing, its lists and its accounts.

Read-only: changes go through the list pages or `arsip`. Anyone but an administrator gets
404, so the page does not announce itself.
"""

from __future__ import annotations

from flask import Blueprint, abort, render_template
from flask.typing import ResponseReturnValue
from flask_babel import gettext, lazy_gettext
from sqlalchemy import func, select

from archiver.accounts import Role as UserRole
from archiver.accounts import User
from archiver.report import stats
from lists.admin import member_counts
from lists.models import HeldMessage, MailingList
from web.auth import current_user, login_required
from web.deps import get_core
from web.status import FIGURE_LABELS

bp = Blueprint("admin", __name__, url_prefix="/admin")

ACCOUNT_ROLES = {
    UserRole.ADMIN: lazy_gettext("administrator"),
    UserRole.AUDITOR: lazy_gettext("auditor"),
    UserRole.USER: lazy_gettext("user"),
}


@bp.get("/")
@login_required
def overview() -> ResponseReturnValue:
    """Service figures, every list with its members and held posts, and the accounts."""
    user = current_user()
    if user is None or user.role != UserRole.ADMIN:
        abort(404)
    with get_core().sessions() as session:
        figures = stats(session)
        members = member_counts(session)
        held = dict(
            session.execute(
                select(HeldMessage.list_id, func.count()).group_by(HeldMessage.list_id)
            ).all()
        )
        lists = [
            (mlist, members.get(mlist.id, 0), held.get(mlist.id, 0))
            for mlist in session.scalars(
                select(MailingList).order_by(MailingList.domain, MailingList.name)
            )
        ]
        users = list(session.scalars(select(User).order_by(User.email)))
        return render_template(
            "admin.html",
            title=gettext("Administration"),
            # Each figure in words, with the name `arsip stats` and /healthz give it.
            figures=[(name, FIGURE_LABELS.get(name, name), v) for name, v in figures.items()],
            account_roles=ACCOUNT_ROLES,
            lists=lists,
            users=users,
        )
