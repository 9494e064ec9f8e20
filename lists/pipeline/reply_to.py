"""The list's Reply-To policy: leave it, point replies at the list, or at an address."""

from __future__ import annotations

from lists.pipeline.base import Delivery


class ReplyTo:
    name = "reply-to"

    def process(self, delivery: Delivery) -> None:
        mlist, message = delivery.mlist, delivery.message
        if mlist.reply_to == "list":
            del message["Reply-To"]
            message["Reply-To"] = mlist.address
        elif mlist.reply_to == "explicit" and mlist.reply_to_address:
            del message["Reply-To"]
            message["Reply-To"] = mlist.reply_to_address
