"""The headers that make a post a list post: List-Id (RFC 2919), List-Post, -Help,
-Subscribe, -Unsubscribe, -Archive, -Owner (RFC 2369), Precedence and X-Loop.

List-Unsubscribe is written per recipient at delivery (a signed one-click link, RFC
8058) when the list personalises; a bulk post carries the mailto form here.
"""

from __future__ import annotations

from lists.pipeline.base import Delivery

REPLACED = (
    "List-Id",
    "List-Post",
    "List-Help",
    "List-Subscribe",
    "List-Unsubscribe",
    "List-Unsubscribe-Post",
    "List-Archive",
    "List-Owner",
    "Precedence",
    "X-Loop",
    # read-receipt requests would go to the poster from every member
    "Return-Receipt-To",
    "Disposition-Notification-To",
    "X-Confirm-Reading-To",
)


class ListHeaders:
    name = "list-headers"

    def process(self, delivery: Delivery) -> None:
        mlist, message = delivery.mlist, delivery.message
        for name in REPLACED:
            del message[name]
        title = mlist.display_name or mlist.name
        message["List-Id"] = f"{title} <{mlist.list_id}>"
        message["List-Post"] = f"<mailto:{mlist.address}>"
        message["List-Help"] = f"<mailto:{mlist.address_for('request')}?subject=help>"
        message["List-Subscribe"] = f"<mailto:{mlist.address_for('join')}>"
        if not mlist.personalize:
            message["List-Unsubscribe"] = f"<mailto:{mlist.address_for('leave')}>"
        if mlist.archive == "public":
            message["List-Archive"] = f"<{delivery.public_url}/lists/{mlist.address}>"
        message["List-Owner"] = f"<mailto:{mlist.address_for('owner')}>"
        message["Precedence"] = "list"
        message["X-Loop"] = mlist.address
