"""Archive the post as members receive it, unless the list keeps no archive; the copy
keeps the content checks' verdict, so the archive flags it like any checked message.

This is the one place a message is filed into a list's archive: the copy names its list,
whatever `List-Id:` headers the post carried. It is not a trusted copy (anyone may post),
so it records the header addresses but no envelope (see `archiver.archive`)."""

from __future__ import annotations

from archiver.archive import RawMessage
from lists.models import ArchivePolicy
from lists.pipeline.base import Delivery


class ToArchive:
    name = "to-archive"

    def process(self, delivery: Delivery) -> None:
        if delivery.mlist.archive == ArchivePolicy.NONE:
            return
        raw = RawMessage(
            data=delivery.data,
            envelope_from=delivery.sender,
            envelope_to=[delivery.mlist.address],
            received_at=delivery.received_at,
            source="list",
            queue_id=delivery.queue_id,
            verdict=delivery.verdict,
            list_id=delivery.mlist.list_id,
        )
        delivery.archive.archive_batch(delivery.session, [raw])
