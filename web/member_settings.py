"""How a member receives a list, in the words of the pages where people change their own
membership (the account page, the signed settings page without an account); the form
itself is read by `lists.admin.MemberSettings`.
"""

from __future__ import annotations

from lists.models import Delivery, Member

DELIVERY_LABELS = {
    Delivery.REGULAR: "each post",
    Delivery.PLAIN_DIGEST: "plain digest",
    Delivery.MIME_DIGEST: "MIME digest",
    Delivery.NOMAIL: "no mail",
}


def delivery_label(member: Member) -> str:
    """How `member` receives the list, in the words the forms use."""
    try:
        return DELIVERY_LABELS[Delivery(member.delivery)]
    except ValueError:
        return member.delivery
