"""Keep the post for the next digest, when anyone takes digests."""

from __future__ import annotations

from sqlalchemy import select

from archiver.deleted import message_id_of
from lists.models import Delivery as DeliveryMode
from lists.models import DigestEntry, Member
from lists.pipeline.base import Delivery

DIGEST_MODES = (DeliveryMode.PLAIN_DIGEST, DeliveryMode.MIME_DIGEST)


class ToDigest:
    name = "to-digest"

    def process(self, delivery: Delivery) -> None:
        wanted = delivery.session.scalar(
            select(Member.id)
            .where(Member.list_id == delivery.mlist.id, Member.delivery.in_(DIGEST_MODES))
            .limit(1)
        )
        if wanted is None:
            return
        data = delivery.data
        entry = DigestEntry(
            list_id=delivery.mlist.id, data=data, size=len(data), message_id=message_id_of(data)
        )
        delivery.session.add(entry)
