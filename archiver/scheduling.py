"""The deployment's one scheduler: jobs run in whichever process holds the scheduler lock.

Every process started with the `scheduler` role is a candidate. The first to take the
lock (`archiver.locks`, a PostgreSQL advisory lock on a connection of its own) starts
APScheduler with every job: the archive's (`upkeep`) and the extensions' (digests, expiring
confirmations). The others try again every `ELECTION_POLL` seconds, so when the holder
dies, and PostgreSQL drops its connection and the lock with it, another takes over within
a poll and first runs the jobs that are safe to repeat (sealing finished days, sending
digests a dead scheduler missed).

A holder that loses its connection may have lost the lock: it stops its jobs at once
and becomes a candidate again, so two schedulers never run jobs side by side for longer
than one poll.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING

from apscheduler.schedulers.background import BackgroundScheduler

from archiver import upkeep
from archiver.locks import ProcessLock, process_label, process_lock

if TYPE_CHECKING:
    from archiver.core import Core

log = logging.getLogger(__name__)

ELECTION_POLL = 2.0  # seconds between a candidate's tries, and a holder's checks


def run_scheduler(core: Core, stop: threading.Event, service_pid: int) -> None:
    """Be a candidate until `stop` is set; run the jobs while this process holds the lock
    (named for the `arsip serve` of PID `service_pid`)."""
    lock = process_lock(core.engine, "scheduler", process_label("scheduler", service_pid))
    try:
        while not stop.is_set():
            if lock.acquire():
                _lead(core, lock, stop)
            else:
                stop.wait(ELECTION_POLL)
    finally:
        lock.release()


def _lead(core: Core, lock: ProcessLock, stop: threading.Event) -> None:
    log.info("this process runs the scheduled jobs")
    scheduler = BackgroundScheduler(timezone="UTC")
    upkeep.add_jobs(scheduler, core, stop)
    for extension in core.extensions:
        extension.schedule(scheduler)
    scheduler.start()
    try:
        while not stop.wait(ELECTION_POLL):
            if not lock.still_held():
                log.warning("lost the database connection holding the scheduler lock")
                return
    finally:
        scheduler.shutdown(wait=False)
