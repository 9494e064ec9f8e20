"""The status page and health check: is the service up, and how far behind is it."""

from __future__ import annotations

from flask import Blueprint, jsonify, render_template
from flask.typing import ResponseReturnValue
from flask_babel import lazy_gettext

from archiver.report import stats
from web.deps import get_core

bp = Blueprint("status", __name__)

# The figures of `archiver.report.stats` in the reader's words, in the order pages show
# them; the status page shows the first five, the administrators' page all.
FIGURE_LABELS = {
    "messages": lazy_gettext("Archived messages"),
    "spool_pending": lazy_gettext("Waiting to be archived"),
    "index_pending": lazy_gettext("Waiting to be indexed"),
    "blobs_bytes_stored": lazy_gettext("Stored (compressed) bytes"),
    "blobs_bytes_raw": lazy_gettext("Original bytes"),
    "blobs": lazy_gettext("Stored blobs"),
    "index_oldest_age_s": lazy_gettext("Oldest wait to be indexed, seconds"),
    "scheduler": lazy_gettext("Process running the scheduled jobs"),
    "checked": lazy_gettext("Messages checked for spam and viruses"),
    "spam": lazy_gettext("Spam"),
    "virus": lazy_gettext("With a virus"),
    "unchecked": lazy_gettext("Left unchecked"),
}
STATUS_FIGURES = 5


def _figures() -> dict[str, int | float | str | None]:
    core = get_core()
    with core.sessions() as session:
        return stats(session)


@bp.get("/status")
def index() -> ResponseReturnValue:
    """Say the service is up, with the archive's size and backlogs."""
    figures = _figures()
    shown = list(FIGURE_LABELS.items())[:STATUS_FIGURES]
    return render_template("status.html", figures=[(label, figures[k]) for k, label in shown])


@bp.get("/healthz")
def healthz() -> ResponseReturnValue:
    """For load balancers and monitoring: 200 with the figures while the database answers.

    Whether a scheduler runs, not which: this page needs no login, and the holder's name
    gives a host name away.
    """
    figures = _figures()
    holder = figures.pop("scheduler")
    return jsonify(status="ok", scheduler_running=holder is None or bool(holder), **figures)
