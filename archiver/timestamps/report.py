"""The timestamps' figures for `arsip stats` and the administrators' dashboard."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from archiver.config import Settings
from archiver.timestamps.models import STAMPED, WAITING, TimestampToken
from archiver.timestamps.tsa_url import shown_url


def figures(settings: Settings, session: Session) -> dict[str, Any]:
    """`tsa`: the TSA's URL without its login (None: not configured); how many tokens are
    stored and how many pieces of evidence wait for one; and the TSA's latest failure
    while something waits (None once everything is stamped)."""
    counts = dict(
        session.execute(
            select(TimestampToken.status, func.count()).group_by(TimestampToken.status)
        ).all()
    )
    error = None
    if counts.get(WAITING):
        error = session.scalar(
            select(TimestampToken.last_error)
            .where(TimestampToken.status == WAITING, TimestampToken.last_error.is_not(None))
            .order_by(TimestampToken.last_attempt_at.desc())
            .limit(1)
        )
    return {
        "tsa": shown_url(settings.tsa_url) if settings.tsa_url else None,
        "timestamps_stamped": counts.get(STAMPED, 0),
        "timestamps_waiting": counts.get(WAITING, 0),
        "timestamps_error": error,
    }
