"""How parts beyond the archive (the list engine) plug into the core.

The core never imports them (DESIGN.md: `lists -> archiver`, never back). A plug-in's
`extensions()` hook (`archiver.plugins`) names factories of `Extension`s, `arsip serve`
hands them to the service, and the service builds one in each of its processes: the
intake only asks it which addresses it owns, a worker also gives it the mail for those
addresses (in two steps: network work before the worker's transaction, database work in
it) and runs its delivery, and the scheduler runs its periodic jobs.
Factories must be importable module-level callables: the worker is a spawned process.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Protocol

from apscheduler.schedulers.background import BackgroundScheduler
from sqlalchemy.orm import Session

from archiver.archive import RawMessage
from archiver.models import utcnow

# What an extension does with a message inside the spool worker's transaction.
Handling = Callable[[Session], None]


def at_once_too() -> dict[str, object]:
    """`add_job` options that also run a recurring job as soon as the scheduler starts,
    however late a busy start makes that first run.

    Use it rather than a second, one-shot job: APScheduler removes a one-shot job after its
    run, and a removal that meets the scheduler's shutdown raises in its thread.
    """
    return {"next_run_time": utcnow(), "misfire_grace_time": None}


class Extension(Protocol):
    """A part of the system that owns some addresses and handles their mail."""

    def claims(self, address: str) -> bool:
        """Whether mail to `address` (normalised, lower-case) is this extension's."""
        ...

    def owns_domain(self, domain: str) -> bool:
        """Whether other addresses in `domain` are unknown users here (550 5.1.1)."""
        ...

    def prepare(self, message: RawMessage, recipients: list[str]) -> Handling:
        """Take one accepted message for `recipients` (all claimed by this extension).

        Called before the spool worker opens its transaction, for what needs the network
        (DNS look-ups), each call within its own time limit: a slow resolver must not
        hold the archive's locks. It writes nothing, and trouble on the network is an
        answer ("unknown"), not an exception. The returned step runs inside the worker's
        transaction and does database work only: whatever it writes commits together with
        the spool row's removal, so after a crash the message is prepared and handled
        again, and the step must be idempotent or at least harmless when repeated.
        """
        ...

    def start(self, stop: threading.Event) -> list[threading.Thread]:
        """Start the background work of a worker process (delivery); it ends when `stop`
        is set. Any number of workers may run it at once."""
        ...

    def schedule(self, scheduler: BackgroundScheduler) -> None:
        """Add periodic jobs (digests, expiry) to the deployment's one scheduler; jobs
        safe to repeat may also run once at once, to catch up after a takeover."""
        ...
