"""Waking idle workers in other processes: PostgreSQL's LISTEN/NOTIFY.

Within one service the intake sets a `multiprocessing.Event` after each spool commit.
The intake and worker processes of a larger deployment share only the database, so there
each spool batch also sends `NOTIFY` in its own transaction (PostgreSQL delivers it when
the batch commits, and never for one rolled back), and each worker listens on a
connection of its own. A lost notification costs a worker's poll interval, nothing more.
"""

from __future__ import annotations

import logging
import threading

from sqlalchemy import URL, Connection, text

log = logging.getLogger(__name__)

CHANNEL = "arsip_spool"
RETRY_SECONDS = 5.0


def announce(connection: Connection) -> None:
    """Tell listening workers, when this transaction commits, that the spool has mail."""
    connection.execute(text(f"NOTIFY {CHANNEL}"))


class NotifiedWaker:
    """A `Waker` set by spool commits of any process on the same PostgreSQL database."""

    def __init__(self, url: URL) -> None:
        self._conninfo = url.set(drivername="postgresql").render_as_string(hide_password=False)
        self._event = threading.Event()
        self.listening = threading.Event()  # set once the first LISTEN is in place
        threading.Thread(target=self._listen, name="spool-listener", daemon=True).start()

    def wait(self, timeout: float | None = None) -> bool:
        return self._event.wait(timeout)

    def clear(self) -> None:
        self._event.clear()

    def _listen(self) -> None:
        import psycopg  # the driver PostgreSQL URLs name (the `postgres` extra)

        while True:
            try:
                with psycopg.connect(self._conninfo, autocommit=True) as connection:
                    connection.execute(f"LISTEN {CHANNEL}")
                    self.listening.set()
                    for _notice in connection.notifies():
                        self._event.set()
            except psycopg.Error as exc:
                # The worker polls meanwhile; say why without the connection string.
                log.warning("listening for new mail failed (%s); polling", type(exc).__name__)
            threading.Event().wait(RETRY_SECONDS)
