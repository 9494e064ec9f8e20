"""Queue the post for every member who gets each post."""

from __future__ import annotations

from sqlalchemy import select

from lists.models import Delivery as DeliveryMode
from lists.models import Member, Role
from lists.outbox import enqueue_selected
from lists.pipeline.base import Delivery


class ToOutbox:
    name = "to-outbox"

    def process(self, delivery: Delivery) -> None:
        mlist = delivery.mlist
        recipients = select(Member.address).where(
            Member.list_id == mlist.id,
            Member.role == Role.MEMBER,
            Member.delivery == DeliveryMode.REGULAR,
            Member.disabled_reason.is_(None),
        )
        count = enqueue_selected(
            delivery.session,
            delivery.data,
            mlist.address_for("bounces"),
            recipients,
            "post",
            mlist.id,
            personalize=mlist.personalize,
        )
        delivery.notes.append(f"queued for {count} members")
