"""`arsip verify`: check that the archive is intact and accounted for.

Three checks, each able to fail on its own: every blob the database knows still opens
(decrypts where sealed) and hashes to its name; every archived message's hash is in the
intake ledger; and the ledger's daily seals still recompute and chain. Finished days are
sealed first, so a new archive has a chain to check.

`--deep` adds a fourth: every message is parsed again from its blob and the database rows
derived from the bytes (who sent it, its header recipients by role, subject, date, list,
the key copies merge by, the date retention counts from) must say what the bytes say. Those
rows decide who may read a message and when it may go; the first three checks prove the
bytes, this one proves the rows follow from them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from sqlalchemy import func, select

from archiver.archive import (
    ENVELOPE_FROM,
    ENVELOPE_TO,
    UNATTRIBUTED,
    derived_fields,
    header_roles,
    legacy_dedupe_key,
)
from archiver.core import Core
from archiver.ledger import (
    ChainReport,
    DaySeal,
    seal_finished_days,
    unrecorded_messages,
    verify_chain,
)
from archiver.models import Blob, Message
from archiver.parse import ParsedMessage, parse_message
from archiver.retention.clock import IMPORTED
from archiver.search.documents import address_rows
from archiver.store import BlobCorruptError, BlobKeyError, BlobMissingError

DEEP_BATCH = 500  # messages whose rows are read in one query


@dataclass(frozen=True)
class Mismatch:
    """A database field of a message that its stored bytes contradict."""

    message_id: str
    sha256: str
    field: str
    stored: str
    derived: str


@dataclass
class VerifyReport:
    """What the checks found: blobs missing, corrupt or locked (sealed under another key),
    messages the ledger does not account for, and the seal chain's findings."""

    checked: int = 0
    missing: list[str] = field(default_factory=list)
    corrupt: list[str] = field(default_factory=list)
    locked: list[str] = field(default_factory=list)
    messages: int = 0
    unrecorded: list[tuple[str, str]] = field(default_factory=list)  # (sha256, Message-ID)
    sealed_now: int = 0
    chain: ChainReport = field(default_factory=ChainReport)
    deep: bool = False  # whether the rows were checked against the bytes
    reparsed: int = 0
    mismatches: list[Mismatch] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (
            self.missing or self.corrupt or self.locked or self.unrecorded or self.mismatches
        ) and (self.chain.ok)

    def as_json(self) -> dict[str, object]:
        """The report as plain data, for `arsip verify --json`."""
        return {
            "ok": self.ok,
            "blobs": {
                "checked": self.checked,
                "missing": self.missing,
                "corrupt": self.corrupt,
                "locked": self.locked,
            },
            "messages": {
                "checked": self.messages,
                "unrecorded": [{"sha256": s, "message_id": m} for s, m in self.unrecorded],
            },
            "ledger": {
                "sealed_now": self.sealed_now,
                "seals": self.chain.seals,
                "entries": self.chain.entries,
                "unsealed": self.chain.unsealed,
                "head": self.chain.head,
                "problems": [{"day": i.day, "problem": i.text} for i in self.chain.problems],
                "warnings": [{"day": i.day, "warning": i.text} for i in self.chain.warnings],
            },
            **(
                {
                    "rows": {
                        "reparsed": self.reparsed,
                        "mismatches": [vars(m) for m in self.mismatches],
                    }
                }
                if self.deep
                else {}
            ),
        }


def count_blobs(core: Core) -> int:
    """How many blobs `verify_store` will read (for the progress bar)."""
    with core.sessions() as session:
        return session.scalar(select(func.count()).select_from(Blob)) or 0


def count_seals(core: Core) -> int:
    """How many sealed days `verify_ledger` will recompute (for the progress bar)."""
    with core.sessions() as session:
        return session.scalar(select(func.count()).select_from(DaySeal)) or 0


def seal_days(core: Core) -> int:
    """Seal the finished days that have no seal yet; returns how many were sealed."""
    with core.sessions.begin() as session:
        return seal_finished_days(session)


def verify_store(
    core: Core, on_blob: Callable[[], None] | None = None, report: VerifyReport | None = None
) -> VerifyReport:
    """Open and hash every blob; a blob that fails either check is reported.

    A sealed blob in a store without any key raises `BlobKeyError` at once: every sealed
    blob would fail the same way, and the fix is a setting, not a repair.
    """
    report = report or VerifyReport()
    with core.sessions() as session:
        for sha256 in session.scalars(select(Blob.sha256).order_by(Blob.sha256)).yield_per(1000):
            report.checked += 1
            try:
                core.store.verify(sha256)
            except BlobMissingError:
                report.missing.append(sha256)
            except BlobCorruptError:
                report.corrupt.append(sha256)
            except BlobKeyError:
                if not core.store.encrypting:
                    raise
                report.locked.append(sha256)
            if on_blob is not None:
                on_blob()
    return report


def verify_ledger(
    core: Core, on_day: Callable[[], None] | None = None, report: VerifyReport | None = None
) -> VerifyReport:
    """Check that every message is in the ledger and that the seal chain holds."""
    report = report or VerifyReport()
    with core.sessions() as session:
        report.messages, report.unrecorded = unrecorded_messages(session)
        report.chain = verify_chain(session, on_day)
    return report


def count_messages(core: Core) -> int:
    """How many messages `verify_rows` will parse again (for the progress bar)."""
    with core.sessions() as session:
        return session.scalar(select(func.count()).select_from(Message)) or 0


def verify_rows(
    core: Core, on_message: Callable[[], None] | None = None, report: VerifyReport | None = None
) -> VerifyReport:
    """Parse every message's blob again and compare the rows derived from it.

    What is compared: the columns archiving takes from the bytes (`derived_fields`: the
    key copies merge by, Message-ID, subject, sender, date, the date retention counts
    from) and the header address rows with their roles (From, To, Cc, Bcc, Reply-To) and
    names, which must match what archiving records from those bytes exactly: an added,
    removed or re-roled address is reported. Only the list engine files mail into a list,
    and the copy it archives carries the List-Id it added: a message filed into a list
    must say so in its bytes (mail outside any list may carry any List-Id header).

    Envelope rows are not in the bytes: they come from each copy's SMTP envelope (or an
    Exchange report's recipient list) and merged copies add theirs. What can be checked is
    checked: imported mail has none, and the envelope sender column is one of them. A blob
    that cannot be read is left to `verify_store`, which reports it.
    """
    report = report or VerifyReport()
    report.deep = True
    for message, rows in _messages_with_rows(core):
        report.reparsed += 1
        try:
            data = core.store.get(message.sha256)
        except (BlobMissingError, BlobCorruptError, BlobKeyError):
            data = None
        if data is not None:
            report.mismatches += _row_mismatches(message, rows, data)
        if on_message is not None:
            on_message()
    return report


def _messages_with_rows(
    core: Core,
) -> Iterator[tuple[Message, list[tuple[str, str, str]]]]:
    """Every message with its (role, address, name) rows, a batch of messages at a time."""
    after = 0
    while True:
        with core.sessions() as session:
            messages = list(
                session.scalars(
                    select(Message).where(Message.id > after).order_by(Message.id).limit(DEEP_BATCH)
                )
            )
            if not messages:
                return
            rows = address_rows(session, [m.id for m in messages])
            session.expunge_all()
        after = messages[-1].id
        for message in messages:
            yield message, rows[message.id]


def _row_mismatches(
    message: Message, rows: list[tuple[str, str, str]], data: bytes
) -> list[Mismatch]:
    parsed = parse_message(data, message.received_at)
    found: list[Mismatch] = []

    def differs(name: str, stored: object, derived: object) -> None:
        if stored != derived:
            found.append(
                Mismatch(message.message_id, message.sha256, name, _shown(stored), _shown(derived))
            )

    differs("size", message.size, len(data))
    for name, derived in derived_fields(parsed, message.received_at, message.source).items():
        stored = getattr(message, name)
        if name == "dedupe_key" and stored == legacy_dedupe_key(parsed):
            continue  # archived before 0013, under the key of that time
        differs(name, stored, derived)
    if message.list_id is not None:  # filed only when its bytes name the list (`archive`)
        differs("list_id", message.list_id, parsed.list_id)
    envelope = {(r, a) for r, a, _n in rows if r in (ENVELOPE_FROM, ENVELOPE_TO)}
    stored_roles = {(r, a): n for r, a, n in rows if r not in (ENVELOPE_FROM, ENVELOPE_TO)}
    derived_roles = _recordable_roles(message, parsed, stored_roles)
    for role, address in sorted(stored_roles.keys() | derived_roles.keys()):
        name = f"address {role} {address}"
        if (role, address) not in derived_roles:
            differs(name, "present", "absent")
        elif (role, address) not in stored_roles:
            differs(name, "absent", "present")
        else:
            differs(f"{name} name", stored_roles[role, address], derived_roles[role, address])
    if message.source == IMPORTED and (envelope or message.envelope_from):
        differs("envelope", sorted(f"{r} {a}" for r, a in envelope), "none (imported mail)")
    elif (
        envelope
        and message.envelope_from
        and (ENVELOPE_FROM, message.envelope_from) not in envelope
    ):  # only trusted copies record envelope rows; the column keeps the first copy's word
        differs("envelope_from", message.envelope_from, "not among its envelope rows")
    return found


def _recordable_roles(
    message: Message, parsed: ParsedMessage, stored: dict[tuple[str, str], str]
) -> dict[tuple[str, str], str]:
    """The header rows archiving records for this message by `archive`'s rule: none while
    no trusted or list copy has vouched for it (flagged unattributed), and no Bcc when
    only the list engine's copy did (a list copy of a message with a list carries none)."""
    if UNATTRIBUTED in message.flags:
        return {}
    roles = header_roles(parsed)
    if message.list_id is not None and not any(role == "bcc" for role, _a in stored):
        roles = {key: name for key, name in roles.items() if key[0] != "bcc"}
    return roles


def _shown(value: object) -> str:
    """A value as a report line shows it (dates in ISO form)."""
    if hasattr(value, "isoformat"):
        return value.isoformat()  # type: ignore[union-attr]
    return "" if value is None else str(value)
