"""The administrators' dashboard: how the service is doing, and every list at a glance.

The pages that change things hang below it: lists made and deleted (`admin_lists`) and
accounts (`admin_accounts`), each a blueprint of its own registered inside this one.
Anyone but an administrator gets 404, so the pages do not announce themselves.
"""

from __future__ import annotations

from flask import Blueprint, render_template
from flask.typing import ResponseReturnValue
from flask_babel import gettext
from sqlalchemy import func, select

from archiver.accounts import User
from lists.admin import member_counts
from lists.models import HeldMessage, MailingList
from web.admin_accounts import bp as accounts_bp
from web.admin_lists import bp as lists_bp
from web.auth import admin_only
from web.dashboard import figures
from web.deps import get_core

bp = Blueprint("admin", __name__, url_prefix="/admin")
bp.register_blueprint(lists_bp)  # /admin/lists/...
bp.register_blueprint(accounts_bp)  # /admin/accounts/...


@bp.get("/")
@admin_only
def overview() -> ResponseReturnValue:
    """Service figures, and every list with its members and held posts."""
    core = get_core()
    with core.sessions() as session:
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
        accounts, disabled = session.execute(
            select(func.count(), func.count(User.disabled_at))
        ).one()
        return render_template(
            "admin.html",
            title=gettext("Administration"),
            figures=figures(core, session),
            lists=lists,
            accounts=accounts,
            disabled=disabled,
        )
