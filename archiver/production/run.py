"""Writing one production: `produce` takes an ordered set of messages and the custodians
each was collected for, and writes natives, extracted text, load files and a manifest.

A production reserves its control numbers before it writes a file, records each message
in its journal as it goes, and moves its files into the output folder only once they are
all written (`archiver.production.folder`). Running the same command on the same folder
again carries an interrupted production on; asking for anything else in that folder gives
the interrupted one up (its numbers stay spent) and starts afresh.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from itertools import accumulate
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from archiver.audit import record
from archiver.core import Core
from archiver.mailfiles import mbox_entry
from archiver.models import Message, utcnow
from archiver.parse.parts import parts_by_hash
from archiver.production.errors import ProductionError
from archiver.production.family import DATA, FIELDS, NATIVES, TEXT, family, iso_utc
from archiver.production.folder import (
    DESCRIPTION,
    check_folder,
    make_durable,
    move_into_place,
    remove_staging,
    staging,
    write_file,
)
from archiver.production.journal import Journal
from archiver.production.loadfile import write_csv, write_dat
from archiver.production.manifest import NAME as MANIFEST
from archiver.production.manifest import TOKEN_NAME, file_sha256, manifest_bytes
from archiver.production.models import (
    ABANDONED,
    COMPLETE,
    FINISHING,
    RUNNING,
    Production,
)
from archiver.production.numbers import control_number, reserve, series_prefix
from archiver.production.plan import Collected, Dedupe, Planned, fingerprint, plan
from archiver.search.viewer import Viewer
from archiver.store import BlobCorruptError, BlobKeyError, BlobMissingError
from archiver.texts import text_of_raw
from archiver.timestamps.tsa import stamp

CHUNK = 100  # messages read from the database at a time
LOAD_FILES = (f"{DATA}/loadfile.dat", f"{DATA}/loadfile.csv")

# Told after each message is written: how many are done, and how many there are in all
ProgressCallback = Callable[[int, int], None]


class Format(StrEnum):
    """How the messages themselves are produced: each as an `.eml` file of its own, or
    all together in one mbox (attachments are files of their own either way)."""

    NATIVE = "native"
    MBOX = "mbox"


@dataclass(frozen=True)
class Request:
    """What to produce, where, and as whom: `series` is what control numbers run on
    across (a case's name, `subject:ADDRESS`), `actor` who is audited for it, and
    `viewer` whose access decides which of the messages may be produced."""

    series: str
    output: Path
    actor: str
    prefix: str | None = None
    format: Format = Format.NATIVE
    dedupe: Dedupe = Dedupe.NONE
    viewer: Viewer = field(default_factory=Viewer.administrator)


@dataclass(frozen=True)
class Summary:
    """A finished production, as `production.json` describes it."""

    id: int
    series: str
    prefix: str
    first: str
    last: str
    messages: int
    attachments: int
    files: int
    manifest_sha256: str
    stamped: bool  # the manifest has a trusted timestamp beside it
    output: Path
    resumed: bool  # an earlier, interrupted run of it had written part of it

    def audited(self) -> dict[str, Any]:
        """What the audit entry of the request it answered (`case.export`,
        `subject.export`) says of it."""
        return {
            "production": self.id,
            "first": self.first,
            "last": self.last,
            "messages": self.messages,
            "output": str(self.output),
        }


@dataclass(frozen=True)
class _Run:
    """The production row's values a run works with (the row itself stays in the
    database, changed only in short transactions)."""

    id: int
    series: str
    prefix: str
    first_number: int
    last_number: int
    format: Format
    dedupe: Dedupe
    status: str
    created_at: datetime
    created_by: str
    resumed: bool


def produce(
    core: Core,
    request: Request,
    collected: Iterable[Collected],
    progress: ProgressCallback | None = None,
) -> Summary:
    """Write the production of `collected` (in that order) into `request.output`.

    The folder must be empty or missing, or hold this same production, interrupted. Raises
    ProductionError for what the operator can fix (a bad prefix or folder, nothing to
    produce, a message whose stored bytes are gone).
    """
    folder = request.output.resolve()
    with core.sessions() as session:
        planned = plan(session, collected, request.dedupe, request.viewer)
    if not planned:
        raise ProductionError("nothing to produce: none of the messages asked for is archived")
    run = _start(core, request, folder, planned)
    stage = staging(folder, run.id)
    if run.status == RUNNING:
        _write(core, run, planned, stage, progress)
        _seal(core, run, planned, stage)
    move_into_place(folder, run.id)
    return _complete(core, run, folder, request.actor)


def _start(core: Core, request: Request, folder: Path, planned: list[Planned]) -> _Run:
    """The production to write into `folder`: the interrupted one there if it is this
    one, else a new one with freshly reserved numbers."""
    with core.sessions.begin() as session:
        earlier = session.scalars(
            select(Production)
            .where(Production.output == str(folder), Production.status.in_((RUNNING, FINISHING)))
            .order_by(Production.id.desc())
            .limit(1)
        ).first()
        if earlier is not None and earlier.series != request.series:
            raise ProductionError(
                f"{folder} holds an unfinished production of series {earlier.series!r}: run "
                "its command again to finish it, or choose an empty folder"
            )
        if earlier is not None and earlier.status == FINISHING:
            return _as_run(earlier, resumed=True)  # only the move into place was left
        check_folder(folder, earlier.id if earlier is not None else None)
        prefix = series_prefix(session, request.series, request.prefix)
        plan_sha256 = fingerprint(
            planned,
            series=request.series,
            prefix=prefix,
            format=request.format,
            dedupe=request.dedupe,
        )
        if earlier is not None and earlier.plan_sha256 == plan_sha256:
            return _as_run(earlier, resumed=True)
        if earlier is not None:
            _abandon(session, request.actor, earlier, folder)
        return _as_run(_new(session, request, folder, planned, prefix, plan_sha256))


def _new(
    session: Session,
    request: Request,
    folder: Path,
    planned: list[Planned],
    prefix: str,
    plan_sha256: str,
) -> Production:
    """A new production row, its numbers reserved, its start audited."""
    count = sum(doc.numbers for doc in planned)
    first = reserve(session, request.series, prefix, count)
    production = Production(
        series=request.series,
        prefix=prefix,
        first_number=first,
        last_number=first + count - 1,
        documents=count,
        files=0,
        output=str(folder),
        format=request.format,
        dedupe=request.dedupe,
        plan_sha256=plan_sha256,
        status=RUNNING,
        created_at=utcnow(),
        created_by=request.actor,
    )
    session.add(production)
    session.flush()
    record(
        session,
        request.actor,
        "production.start",
        request.series,
        {**_numbered(production), "messages": len(planned), "output": str(folder)},
    )
    return production


def _abandon(session: Session, actor: str, production: Production, folder: Path) -> None:
    """Give up an interrupted production for a different one in its folder. Its staging
    folder goes before the change commits: should the commit fail, the production is
    still running and simply starts its writing over."""
    remove_staging(folder, production.id)
    production.status = ABANDONED
    production.finished_at = utcnow()
    details = {**_numbered(production), "output": production.output}
    record(session, actor, "production.abandon", production.series, details)


def _write(
    core: Core,
    run: _Run,
    planned: list[Planned],
    stage: Path,
    progress: ProgressCallback | None,
) -> None:
    """Write each message's files into the staging folder, carrying on after the last
    message an earlier run recorded in the journal."""
    for name in (NATIVES, TEXT, DATA):
        (stage / name).mkdir(parents=True, exist_ok=True)
    journal = Journal(stage)
    done = journal.resume()
    firsts = list(accumulate((doc.numbers for doc in planned), initial=run.first_number))
    mbox = _mbox_name(run) if run.format == Format.MBOX else None
    if mbox:
        with open(stage / mbox, "ab") as handle:
            handle.truncate(done.mbox_end)  # what a run wrote after its last journal line
    for start in range(done.done, len(planned), CHUNK):
        chunk = planned[start : start + CHUNK]
        messages = _messages(core, [doc.pk for doc in chunk])
        for index, doc in enumerate(chunk, start=start):
            message = messages.get(doc.pk)
            if message is None:
                raise ProductionError(
                    f"a message was deleted while the production ran (id {doc.pk}): "
                    "run the command again to produce what is archived now"
                )
            _write_message(core, run, message, doc, firsts[index], stage, journal, mbox)
            if progress is not None:
                progress(index + 1, len(planned))


def _write_message(
    core: Core,
    run: _Run,
    message: Message,
    doc: Planned,
    first: int,
    stage: Path,
    journal: Journal,
    mbox: str | None,
) -> None:
    """Write one message's family (numbered from `first`), then record it as done."""
    raw = _raw(core, message)
    parts = parts_by_hash(raw) if message.attachments else {}
    produced = family(message, raw, text_of_raw(raw), parts, doc, run.prefix, first, mbox)
    for path, data in produced.files:
        write_file(stage / path, data)
    mbox_end = 0
    if mbox:
        sender = message.envelope_from or message.from_address
        with open(stage / mbox, "ab") as handle:
            handle.write(mbox_entry(raw, sender, message.date))
            mbox_end = handle.tell()
    hashes = [(path, hashlib.sha256(data).hexdigest()) for path, data in produced.files]
    journal.append(produced.rows, hashes, mbox_end)


def _seal(core: Core, run: _Run, planned: list[Planned], stage: Path) -> None:
    """Write the load files, the manifest and `production.json` into the staging folder,
    make all of it durable, and record that only the move into place is left."""
    journal = Journal(stage)
    write_dat(stage / LOAD_FILES[0], FIELDS, journal.rows())
    write_csv(stage / LOAD_FILES[1], FIELDS, journal.rows())
    files = list(journal.files())
    extra = [*LOAD_FILES, _mbox_name(run)] if run.format == Format.MBOX else [*LOAD_FILES]
    files += [(path, file_sha256(stage / path)) for path in extra]
    manifest = manifest_bytes(files)
    write_file(stage / MANIFEST, manifest)
    manifest_sha256 = hashlib.sha256(manifest).hexdigest()
    token = stamp(core.settings, manifest)
    if token is not None:
        write_file(stage / TOKEN_NAME, token)
    description = _description(run, planned, len(files), manifest_sha256, token is not None)
    write_file(stage / DESCRIPTION, json.dumps(description, indent=2).encode() + b"\n")
    make_durable(stage)
    with core.sessions.begin() as session:
        production = session.get_one(Production, run.id)
        production.status = FINISHING
        production.files = len(files)
        production.manifest_sha256 = manifest_sha256


def _complete(core: Core, run: _Run, folder: Path, actor: str) -> Summary:
    """Mark the production finished and audit it; its summary."""
    with core.sessions.begin() as session:
        production = session.get_one(Production, run.id)
        production.status = COMPLETE
        production.finished_at = utcnow()
        details = {
            **_numbered(production),
            "files": production.files,
            "manifest_sha256": production.manifest_sha256,
            "output": production.output,
        }
        record(session, actor, "production.create", run.series, details)
    described = json.loads((folder / DESCRIPTION).read_text("utf-8"))
    return Summary(
        id=run.id,
        series=run.series,
        prefix=run.prefix,
        first=described["first"],
        last=described["last"],
        messages=described["counts"]["messages"],
        attachments=described["counts"]["attachments"],
        files=described["counts"]["files"],
        manifest_sha256=described["manifest_sha256"],
        stamped=described.get("manifest_timestamp") is not None,
        output=folder,
        resumed=run.resumed,
    )


def _description(
    run: _Run, planned: Sequence[Planned], files: int, manifest_sha256: str, stamped: bool
) -> dict[str, Any]:
    """`production.json`: what the folder holds, for people and for the next tool
    (`manifest_timestamp` names the manifest's RFC 3161 token, null without one)."""
    attachments = sum(doc.attachments for doc in planned)
    return {
        "production": run.id,
        "series": run.series,
        "prefix": run.prefix,
        "first": control_number(run.prefix, run.first_number),
        "last": control_number(run.prefix, run.last_number),
        "created_at": iso_utc(run.created_at),
        "created_by": run.created_by,
        "format": str(run.format),
        "dedupe": str(run.dedupe),
        "counts": {
            "messages": len(planned),
            "attachments": attachments,
            "documents": len(planned) + attachments,
            "files": files,
        },
        "load_files": {"dat": LOAD_FILES[0], "csv": LOAD_FILES[1]},
        "manifest": MANIFEST,
        "manifest_sha256": manifest_sha256,
        "manifest_timestamp": TOKEN_NAME if stamped else None,
    }


def _messages(core: Core, pks: list[int]) -> dict[int, Message]:
    """The messages `pks` names, with their addresses and attachments, by primary key."""
    with core.sessions() as session:
        found = session.scalars(
            select(Message)
            .where(Message.id.in_(pks))
            .options(selectinload(Message.addresses), selectinload(Message.attachments))
        )
        return {message.id: message for message in found}


def _raw(core: Core, message: Message) -> bytes:
    try:
        return core.store.get(message.sha256)
    except (BlobMissingError, BlobCorruptError, BlobKeyError) as exc:
        raise ProductionError(
            f"the stored bytes of <{message.message_id}> cannot be read: {exc} "
            "(`arsip verify` checks the whole store)"
        ) from exc


def _mbox_name(run: _Run) -> str:
    first = control_number(run.prefix, run.first_number)
    return f"{NATIVES}/{first}-{control_number(run.prefix, run.last_number)}.mbox"


def _numbered(production: Production) -> dict[str, Any]:
    """What an audit entry says of a production's numbers."""
    return {
        "production": production.id,
        "first": control_number(production.prefix, production.first_number),
        "last": control_number(production.prefix, production.last_number),
        "documents": production.documents,
        "format": production.format,
        "dedupe": production.dedupe,
    }


def _as_run(production: Production, resumed: bool = False) -> _Run:
    return _Run(
        id=production.id,
        series=production.series,
        prefix=production.prefix,
        first_number=production.first_number,
        last_number=production.last_number,
        format=Format(production.format),
        dedupe=Dedupe(production.dedupe),
        status=production.status,
        created_at=production.created_at,
        created_by=production.created_by,
        resumed=resumed,
    )
