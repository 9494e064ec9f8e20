"""What a production will hold, worked out before a single number is reserved: which
messages (those the viewer may see, still archived), for which custodians (after
de-duplication), and how many attachments follow each one.

The plan is all a production's numbering depends on: the same plan numbers the same way,
which is what lets an interrupted run carry on where it stopped.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import NamedTuple

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from archiver.access import visible_messages
from archiver.models import Attachment, Message
from archiver.search.viewer import Viewer

CHUNK = 500  # messages looked up per statement


class Dedupe(StrEnum):
    """Which copies of a message collected for several custodians are produced.

    `none` produces every (message, custodian) given, repeats too; `custodian` a message
    once per custodian; `global` once in all, for every custodian it was collected for.
    """

    NONE = "none"
    CUSTODIAN = "custodian"
    GLOBAL = "global"


class Collected(NamedTuple):
    """A message in scope (its primary key) and the custodians it was collected for."""

    pk: int
    custodians: tuple[str, ...] = ()


@dataclass(frozen=True)
class Planned:
    """One produced message: for whom, among whom, and the size of its family."""

    pk: int
    custodians: tuple[str, ...]  # whom this copy is produced for
    all_custodians: tuple[str, ...]  # every custodian the message was collected for
    attachments: int  # its family members, numbered right after it

    @property
    def numbers(self) -> int:
        """How many control numbers the family takes: the message and each attachment."""
        return 1 + self.attachments


def plan(
    session: Session, collected: Iterable[Collected], dedupe: Dedupe, viewer: Viewer
) -> list[Planned]:
    """The documents to produce, in the order given, de-duplicated as `dedupe` says.

    Messages `viewer` may not see, and messages no longer archived, are left out.
    """
    items = [Collected(item.pk, tuple(item.custodians)) for item in collected]
    attachments = _attachment_counts(session, sorted({item.pk for item in items}), viewer)
    items = [item for item in items if item.pk in attachments]
    everyone: dict[int, dict[str, None]] = {}
    for item in items:
        everyone.setdefault(item.pk, {}).update(dict.fromkeys(c for c in item.custodians if c))
    planned: list[Planned] = []
    seen: set[tuple[int, str]] = set()
    for pk, custodians in _copies(items, dedupe, everyone):
        key = (pk, ";".join(custodians))
        if dedupe is not Dedupe.NONE and key in seen:
            continue
        seen.add(key)
        planned.append(Planned(pk, custodians, tuple(everyone[pk]), attachments[pk]))
    return planned


def _copies(
    items: Sequence[Collected], dedupe: Dedupe, everyone: dict[int, dict[str, None]]
) -> Iterable[tuple[int, tuple[str, ...]]]:
    """Each copy as (message, the custodians it is produced for), before repeats go."""
    for item in items:
        if dedupe is Dedupe.GLOBAL:
            yield item.pk, tuple(everyone[item.pk])
        elif not item.custodians:
            yield item.pk, ()
        else:
            for custodian in item.custodians:
                yield item.pk, (custodian,)


def _attachment_counts(session: Session, pks: list[int], viewer: Viewer) -> dict[int, int]:
    """How many attachments each message of `pks` has, for those the viewer may see."""
    counts: dict[int, int] = {}
    for start in range(0, len(pks), CHUNK):
        chunk = pks[start : start + CHUNK]
        rows = session.execute(
            select(Message.id, func.count(Attachment.id))
            .outerjoin(Attachment, Attachment.message_pk == Message.id)
            .where(Message.id.in_(chunk), visible_messages(viewer))
            .group_by(Message.id)
        )
        counts.update({pk: int(count) for pk, count in rows})
    return counts


def fingerprint(planned: Sequence[Planned], **settings: str) -> str:
    """The sha256 of a plan and the settings that shape its files (series, prefix, format,
    de-duplication): a rerun with the same fingerprint resumes, any other starts afresh."""
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode())
    for doc in planned:
        digest.update(
            json.dumps([doc.pk, doc.custodians, doc.all_custodians, doc.attachments]).encode()
        )
    return digest.hexdigest()
