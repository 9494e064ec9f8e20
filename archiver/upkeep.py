"""The archive's scheduled upkeep, run by the deployment's one scheduler (`scheduling`).

- the retention sweep, on `ARSIP_RETENTION_SCHEDULE` (a crontab line in UTC; nightly by
  default), deleting what policies let go and no hold covers, then the open erasure
  requests (`archiver.erasure`), erasing what a hold or a period no longer keeps;
- sealing each finished day of the intake ledger into the tamper-evident chain, a few
  minutes after midnight UTC (after the ledger's grace period);
- moving loose blobs into pack files every `REPACK_MINUTES` once there are enough of them
  (`archiver.store.repack`), which is where the disk goes from a block per message to a
  fraction of the mail;
- asking the Time-Stamp Authority (`ARSIP_TSA_URL`) for tokens on new seals and on the
  audit log's head every `STAMP_MINUTES`, retrying with a growing pause while it fails
  (`archiver.timestamps.stamping`).

Both jobs coalesce: a machine that slept through several runs catches up with one.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING

from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.cron import CronTrigger

from archiver import audit, ledger
from archiver.erasure.eraser import Eraser
from archiver.extensions import at_once_too
from archiver.retention.sweep import Sweeper
from archiver.store import REPACK_MIN_LOOSE, StoreBusyError

if TYPE_CHECKING:
    from archiver.core import Core

log = logging.getLogger(__name__)

REPACK_MINUTES = 5
STAMP_MINUTES = 1


def add_jobs(scheduler: BackgroundScheduler, core: Core, stop: threading.Event) -> None:
    """Put the archive's jobs on `scheduler` (the deployment's one, see `scheduling`);
    a sweep stops after its current batch when `stop` is set."""
    scheduler.add_job(
        sweep_now,
        sweep_trigger(core.settings.retention_schedule),
        args=(core, stop),
        id="retention-sweep",
        coalesce=True,
        max_instances=1,
    )
    scheduler.add_job(
        seal_now,
        "cron",
        hour=0,
        minute=15,
        args=(core,),
        id="ledger-seal",
        coalesce=True,
        **at_once_too(),  # a scheduler taking over seals what a dead one missed (idempotent)
    )
    scheduler.add_job(
        repack_now,
        "interval",
        minutes=REPACK_MINUTES,
        args=(core,),
        id="store-repack",
        coalesce=True,
        max_instances=1,
    )
    if core.settings.tsa_url:
        scheduler.add_job(
            stamp_now,
            "interval",
            minutes=STAMP_MINUTES,
            args=(core,),
            id="timestamps",
            coalesce=True,
            max_instances=1,
            **at_once_too(),  # a new seal or head need not wait a minute
        )


def sweep_trigger(schedule: str) -> CronTrigger:
    """When retention sweeps run: `ARSIP_RETENTION_SCHEDULE`, a crontab line in UTC (the
    scheduler runs it; the administrators' page tells the next run from it)."""
    return CronTrigger.from_crontab(schedule, timezone="UTC")


def sweep_now(core: Core, stop: threading.Event | None = None) -> None:
    """One retention sweep as the service runs it (audited as `system`), then the open
    erasure requests: what a released hold or an ended period kept goes now."""
    try:
        backend = core.search_backend()
        try:
            report = Sweeper(core.sessions, core.store, backend, actor=audit.SYSTEM).run(stop=stop)
            if not report.paused and not (stop is not None and stop.is_set()):
                erase_open(Eraser(core.sessions, core.store, backend, actor=audit.SYSTEM))
        finally:
            backend.close()
    except Exception:
        # The next night tries again; nothing half-done is left (each batch is atomic).
        log.exception("retention sweep failed")


def erase_open(eraser: Eraser) -> None:
    """Run the open erasure requests again, saying in the log what each pass erased."""
    for report in eraser.run_open():
        log.info(
            "erasure request %s: %d erased, %d still kept%s",
            report.request,
            report.erased,
            report.kept,
            "; done" if report.done else "",
        )


def seal_now(core: Core) -> None:
    """Seal the intake ledger's finished days."""
    try:
        with core.sessions.begin() as session:
            sealed = ledger.seal_finished_days(session)
        if sealed:
            log.info("ledger: sealed %d day(s)", sealed)
    except Exception:
        log.exception("sealing the intake ledger failed; the next run tries again")


def stamp_now(core: Core) -> None:
    """Get tokens for the seals and audit head that wait for one (a failing TSA is
    logged by the run and retried later)."""
    from archiver.timestamps.stamping import stamp_waiting

    try:
        stamp_waiting(core.settings, core.sessions)
    except Exception:
        log.exception("timestamping failed; the next run tries again")


def repack_now(core: Core, min_loose: int = REPACK_MIN_LOOSE) -> None:
    """Pack the loose blobs if there are at least `min_loose` of them; a repack already
    running elsewhere (`arsip store repack`) is left to finish."""
    try:
        if core.store.loose_count(up_to=min_loose) < min_loose:
            return
        report = core.store.repack(wait=False)
        log.info(
            "store: packed %d blobs, merged %d and compacted %d pack(s) in %.1f s",
            report.packed,
            report.packs_merged,
            report.packs_compacted,
            report.seconds,
        )
    except StoreBusyError:
        log.info("store: a repack is already running; this one is skipped")
    except Exception:
        log.exception("repacking the blob store failed; every blob is still readable")
