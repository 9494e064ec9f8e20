"""How every Arsip process logs: one line per event on stderr."""

from __future__ import annotations

import logging

from archiver.config import Settings

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def configure_logging(settings: Settings) -> None:
    """One line per event on stderr, without the libraries' per-command chatter."""
    logging.basicConfig(level=settings.log_level, format=LOG_FORMAT, force=True)
    logging.getLogger("mail.log").setLevel(logging.WARNING)  # aiosmtpd's per-command chatter
    logging.getLogger("pypdf").setLevel(logging.ERROR)  # one warning per oddity in every PDF
    logging.getLogger("alembic").setLevel(logging.WARNING)  # archiver.migrate says what changed
    logging.getLogger("apscheduler").setLevel(logging.WARNING)  # a line per job and run
