"""The status page and health check: is the service up, and how far behind is it."""

from __future__ import annotations

from flask import Blueprint, jsonify, render_template
from flask.typing import ResponseReturnValue
from flask_babel import lazy_gettext

from archiver.report import stats
from web.deps import get_core

bp = Blueprint("status", __name__)

# The figures of `archiver.report.stats` the status page shows, in the reader's words
# and in this order (the administrators' dashboard says more, in `web.dashboard`).
FIGURE_LABELS = {
    "messages": lazy_gettext("Archived messages"),
    "spool_pending": lazy_gettext("Waiting to be archived"),
    "index_pending": lazy_gettext("Waiting to be indexed"),
    "blobs_bytes_stored": lazy_gettext("Stored (compressed) bytes"),
    "blobs_bytes_raw": lazy_gettext("Original bytes"),
}


def _figures() -> dict[str, int | float | str | None]:
    core = get_core()
    with core.sessions() as session:
        return stats(session)


@bp.get("/status")
def index() -> ResponseReturnValue:
    """Say the service is up, with the archive's size and backlogs."""
    figures = _figures()
    shown = FIGURE_LABELS.items()
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
