"""The archive's scheduled upkeep, run by the deployment's one scheduler (`scheduling`).

- the retention sweep, on `ARSIP_RETENTION_SCHEDULE` (a crontab line in UTC; nightly by
  default), deleting what policies let go and no hold covers;
- sealing each finished day of the intake ledger into the tamper-evident chain, a few
  minutes after midnight UTC (after the ledger's grace period).

Both jobs coalesce: a machine that slept through several runs catches up with one.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING

from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.cron import CronTrigger

from archiver import audit, ledger
from archiver.retention.sweep import Sweeper

if TYPE_CHECKING:
    from archiver.core import Core

log = logging.getLogger(__name__)


def add_jobs(scheduler: BackgroundScheduler, core: Core, stop: threading.Event) -> None:
    """Put the archive's jobs on `scheduler` (the deployment's one, see `scheduling`);
    a sweep stops after its current batch when `stop` is set."""
    scheduler.add_job(
        sweep_now,
        CronTrigger.from_crontab(core.settings.retention_schedule, timezone="UTC"),
        args=(core, stop),
        id="retention-sweep",
        coalesce=True,
        max_instances=1,
    )
    scheduler.add_job(
        seal_now, "cron", hour=0, minute=15, args=(core,), id="ledger-seal", coalesce=True
    )
    # at once too: a scheduler taking over seals what a dead one missed (it is idempotent)
    scheduler.add_job(seal_now, args=(core,), id="ledger-seal-now")


def sweep_now(core: Core, stop: threading.Event | None = None) -> None:
    """One retention sweep as the service runs it (audited as `system`)."""
    try:
        backend = core.search_backend()
        try:
            Sweeper(core.sessions, core.store, backend, actor=audit.SYSTEM).run(stop=stop)
        finally:
            backend.close()
    except Exception:
        # The next night tries again; nothing half-done is left (each batch is atomic).
        log.exception("retention sweep failed")


def seal_now(core: Core) -> None:
    """Seal the intake ledger's finished days."""
    try:
        with core.sessions.begin() as session:
            sealed = ledger.seal_finished_days(session)
        if sealed:
            log.info("ledger: sealed %d day(s)", sealed)
    except Exception:
        log.exception("sealing the intake ledger failed; the next run tries again")
