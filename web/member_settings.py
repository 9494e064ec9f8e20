"""How a member receives a list, in the words of the pages where people change their own
membership (the account page, the signed settings page without an account); the form
itself is read by `lists.admin.MemberSettings`.
"""

from __future__ import annotations

from flask_babel import lazy_gettext

from lists.models import Delivery, Member

DELIVERY_LABELS = {
    Delivery.REGULAR: lazy_gettext("each post"),
    Delivery.PLAIN_DIGEST: lazy_gettext("plain digest"),
    Delivery.MIME_DIGEST: lazy_gettext("MIME digest"),
    Delivery.NOMAIL: lazy_gettext("no mail"),
}


def delivery_label(member: Member) -> str:
    """How `member` receives the list, in the words the forms use."""
    try:
        return str(DELIVERY_LABELS[Delivery(member.delivery)])
    except ValueError:
        return member.delivery
