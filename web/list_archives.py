"""List archives in the browser: the directory of lists, a list's archive by month with
its activity, a month's threads, an Atom feed, and the subscribe and unsubscribe forms.

A list's archive is shown to whoever may read it (public lists: everyone; private lists:
members, administrators and auditors); to anyone else it does not exist (404), so the
page cannot be used to learn which private lists there are.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from xml.sax.saxutils import escape

from flask import (
    Blueprint,
    Response,
    abort,
    flash,
    render_template,
    request,
    url_for,
)
from flask.typing import ResponseReturnValue
from flask_babel import format_date, format_number, gettext, ngettext
from sqlalchemy import Row, Text, cast, func, select
from sqlalchemy.orm import Session

from archiver.access import visible_messages
from archiver.models import Message
from archiver.texts import message_texts
from lists.admin import find_list, member_counts
from lists.membership import BadAddress, one_address
from lists.models import ArchivePolicy, MailingList
from web.auth import current_viewer
from web.deps import get_core, get_membership
from web.i18n import say
from web.manage import held_count, roles_here
from web.navigation import conversations, distinct

bp = Blueprint("list_archives", __name__, url_prefix="/lists")

FEED_ENTRIES = 30
SUMMARY_CHARACTERS = 500  # of each post's body, in the feed
CHART_MONTHS = 24


@dataclass(frozen=True)
class Month:
    """One month of a list's archive."""

    key: str  # YYYY-MM
    messages: int
    threads: int


def readable(mlist: MailingList) -> bool:
    """Whether this request's viewer may read the list's archive."""
    viewer = current_viewer()
    if mlist.archive == ArchivePolicy.NONE:
        return False
    return viewer.sees_all or mlist.list_id in viewer.readable_lists


def _find(session: Session, address: str) -> MailingList:
    """The list at `address`, if this request may read it; 404 otherwise."""
    mlist = find_list(session, address)
    if mlist is None or not readable(mlist):
        abort(404)
    return mlist


def _months(session: Session, list_id: str) -> list[Month]:
    # "YYYY-MM" of the stored UTC timestamp, the same text on SQLite and PostgreSQL
    month = func.substr(cast(Message.date, Text), 1, 7)
    rows = session.execute(
        select(month, func.count(), func.count(func.distinct(Message.thread_id)))
        .where(Message.list_id == list_id)
        .group_by(month)
        .order_by(month.desc())
    )
    return [Month(key, messages, threads) for key, messages, threads in rows]


@bp.get("/")
def directory() -> ResponseReturnValue:
    """The lists this visitor may read, with their member counts."""
    with get_core().sessions() as session:
        members = member_counts(session)
        shown = [
            (mlist, members.get(mlist.id, 0))
            for mlist in session.scalars(
                select(MailingList).order_by(MailingList.domain, MailingList.name)
            )
            if readable(mlist)
        ]
        session.expunge_all()
    return render_template("list_directory.html", title=gettext("Mailing lists"), lists=shown)


@bp.get("/<list_address>/")
def archive(list_address: str) -> ResponseReturnValue:
    """A list's page: what it is, how to join, and its archive by month."""
    with get_core().sessions() as session:
        mlist = _find(session, list_address)
        months = _months(session, mlist.list_id)
        # Its owners and moderators (and administrators) find their pages from here.
        runs = roles_here(session, mlist)
        held = held_count(session, mlist) if runs else 0
        session.expunge_all()
    return render_template(
        "list_archive.html",
        title=mlist.address,
        mlist=mlist,
        months=months,
        chart=activity_chart(months[:CHART_MONTHS]),
        runs=runs,
        held=held,
    )


@bp.get("/<list_address>/<int:year>-<int:month>")
def month_view(list_address: str, year: int, month: int) -> ResponseReturnValue:
    """A month of a list: its threads, the most recently active first, each with its
    messages of the month; and the months before and after that have mail."""
    if not 1 <= month <= 12 or not 1 <= year <= 9998:
        abort(404)
    start = datetime(year, month, 1, tzinfo=UTC)
    end = datetime(year + month // 12, month % 12 + 1, 1, tzinfo=UTC)
    viewer = current_viewer()
    with get_core().sessions() as session:
        mlist = _find(session, list_address)
        messages = list(
            session.execute(
                select(
                    Message.message_id,
                    Message.subject,
                    Message.from_name,
                    Message.from_address,
                    Message.date,
                    Message.thread_id,
                )
                .where(
                    Message.list_id == mlist.list_id,
                    Message.date >= start,
                    Message.date < end,
                    visible_messages(viewer),
                )
                .order_by(Message.date.desc(), Message.id.desc())
            )
        )
        # The nearest months with mail on either side (no link to an empty month).
        before = session.scalar(
            select(func.max(Message.date)).where(
                Message.list_id == mlist.list_id, Message.date < start, visible_messages(viewer)
            )
        )
        after = session.scalar(
            select(func.min(Message.date)).where(
                Message.list_id == mlist.list_id, Message.date >= end, visible_messages(viewer)
            )
        )
        session.expunge_all()
    threads = [
        MonthThread(
            conversation.thread_id,
            min(conversation.items, key=lambda m: m.date),
            conversation.first,
            conversation.count,
            _people(conversation.items),
        )
        for conversation in conversations(messages, lambda m: m.thread_id)
    ]
    return render_template(
        "list_month.html",
        title=f"{mlist.address} · {year}-{month:02d}",
        mlist=mlist,
        key=f"{year}-{month:02d}",
        month_name=format_date(start, "MMMM yyyy"),
        threads=threads,
        messages=len(messages),
        previous=_month_href(mlist, before),
        next=_month_href(mlist, after),
        previous_name=format_date(before, "MMMM yyyy") if before else None,
        next_name=format_date(after, "MMMM yyyy") if after else None,
    )


@dataclass(frozen=True)
class MonthThread:
    """A thread as a month of a list shows it: its first message of the month (whose
    subject names it), its latest, how many it had that month, and who wrote them."""

    thread_id: str
    first: Row
    latest: Row
    count: int
    people: list[str]


MONTH_PEOPLE = 4


def _people(messages: list[Row]) -> list[str]:
    """The names of a thread's writers, oldest first, each once (a few at most)."""
    return distinct(m.from_name or m.from_address for m in reversed(messages))[:MONTH_PEOPLE]


def _month_href(mlist: MailingList, when: datetime | None) -> str | None:
    return month_url(mlist.address, when) if when is not None else None


def month_url(list_address: str, when: datetime) -> str:
    """The page of a list's month, as `/lists/LIST/YYYY-MM`."""
    home = url_for("list_archives.archive", list_address=list_address)
    return f"{home}{when.year:04d}-{when.month:02d}"


@bp.get("/<list_address>/feed.atom")
def feed(list_address: str) -> ResponseReturnValue:
    """The list's latest posts as an Atom feed."""
    with get_core().sessions() as session:
        mlist = _find(session, list_address)
        posts = list(
            session.execute(
                select(
                    Message.message_id,
                    Message.subject,
                    Message.from_name,
                    Message.from_address,
                    Message.date,
                    Message.sha256,
                )
                .where(Message.list_id == mlist.list_id, visible_messages(current_viewer()))
                .order_by(Message.date.desc())
                .limit(FEED_ENTRIES)
            )
        )
        session.expunge_all()
    texts = message_texts(get_core().store, [post.sha256 for post in posts], attachments=False)
    summaries = {sha256: text.body[:SUMMARY_CHARACTERS] for sha256, text in texts.items()}
    base = get_core().settings.public_url
    return Response(atom(mlist, posts, summaries, base), mimetype="application/atom+xml")


@bp.post("/<list_address>/subscribe")
def subscribe(list_address: str) -> ResponseReturnValue:
    """Ask for a confirmation mail to join (double opt-in: nothing changes yet)."""
    return _request(list_address, "subscribe")


@bp.post("/<list_address>/unsubscribe-request")
def unsubscribe_request(list_address: str) -> ResponseReturnValue:
    """Ask for a confirmation mail to leave."""
    return _request(list_address, "unsubscribe")


def _request(list_address: str, action: str) -> ResponseReturnValue:
    """A request for exactly one address; anything else is a 400 saying why, and nothing
    is mailed."""
    core = get_core()
    with core.sessions.begin() as session:
        mlist = _find(session, list_address)
        try:
            address = one_address(request.form.get("email", ""))
        except BadAddress as error:
            text = gettext("Nothing was sent: %(problem)s.", problem=say(error.text))
            title = gettext("Not one email address")
            return render_template("message.html", title=title, text=text), 400
        text = say(get_membership().request(session, mlist, address, action))
        target = url_for(".archive", list_address=mlist.address)
    flash(text)
    return "", 303, {"Location": target}


def activity_chart(months: list[Month]) -> str:
    """A bar chart of messages per month (oldest on the left) as inline SVG."""
    if not months:
        return ""
    shown = list(reversed(months))
    tallest = max(m.messages for m in shown) or 1
    width, height, bar = 12 * len(shown), 60, 10
    bars = "".join(
        f'<rect x="{i * 12}" y="{height - round(m.messages / tallest * height)}" '
        f'width="{bar}" height="{round(m.messages / tallest * height)}" fill="#4a6fa5">'
        f"<title>{escape(m.key)}: {escape(_messages(m.messages))}</title></rect>"
        for i, m in enumerate(shown)
    )
    label = escape(gettext("Messages per month"), {'"': "&quot;"})
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'role="img" aria-label="{label}">{bars}</svg>'
    )


def _messages(count: int) -> str:
    return ngettext("%(count)s message", "%(count)s messages", count, count=format_number(count))


def atom(mlist: MailingList, posts: list[Row], summaries: dict[str, str], base: str) -> str:
    """An Atom 1.0 document of `posts`, each summarised by its start (`summaries`, by the
    sha256 of its blob)."""
    home = f"{base}/lists/{mlist.address}/"
    updated = posts[0].date if posts else datetime.now(UTC)
    entries = "".join(
        "<entry>"
        f"<title>{escape(post.subject)}</title>"
        f"<id>urn:message-id:{escape(post.message_id)}</id>"
        f'<link href="{escape(base)}/messages/{escape(post.message_id)}"/>'
        f"<updated>{post.date.isoformat()}</updated>"
        f"<author><name>{escape(post.from_name or post.from_address)}</name></author>"
        f"<summary>{escape(summaries.get(post.sha256, ''))}</summary>"
        "</entry>"
        for post in posts
    )
    return (
        '<?xml version="1.0" encoding="utf-8"?>'
        '<feed xmlns="http://www.w3.org/2005/Atom">'
        f"<title>{escape(mlist.display_name or mlist.name)} ({escape(mlist.address)})</title>"
        f"<id>{escape(home)}</id>"
        f'<link href="{escape(home)}"/>'
        f"<updated>{updated.isoformat()}</updated>"
        f"{entries}</feed>"
    )
