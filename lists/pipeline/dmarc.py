"""DMARC mitigation: a post from a domain that publishes p=reject or p=quarantine would
fail DMARC once the list has changed it, so From becomes the list (with the poster's
name) and the poster goes to Reply-To. Per list: always, never, or auto (the policy the
From domain publishes, looked up before the worker's transaction: `lists.arrival`)."""

from __future__ import annotations

from email.headerregistry import Address

from lists.dmarc import needs_mitigation
from lists.models import MailingList
from lists.pipeline.base import Delivery


def asks_policy(mlist: MailingList) -> bool:
    """Whether posts to `mlist` need their From domain's published policy (mode auto)."""
    return mlist.dmarc not in ("always", "never")


class DmarcMitigation:
    name = "dmarc"

    def process(self, delivery: Delivery) -> None:
        mlist, message = delivery.mlist, delivery.message
        if mlist.dmarc == "never":
            return
        addresses = getattr(message["From"], "addresses", ()) if message["From"] else ()
        if not addresses:
            return
        poster = addresses[0]
        if mlist.dmarc != "always" and not needs_mitigation(delivery.from_policy):
            return
        name = poster.display_name or poster.username
        del message["From"]
        message["From"] = Address(f"{name} via {mlist.name}", addr_spec=mlist.address)
        if mlist.reply_to == "none" or "Reply-To" not in message:
            del message["Reply-To"]
            message["Reply-To"] = poster
        delivery.notes.append("From rewritten for DMARC")
