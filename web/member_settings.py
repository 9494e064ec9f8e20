"""A member's own choice of list settings, read from a form.

One place for every page where people change their own membership (the account page,
the signed settings page without an account), so each accepts and refuses the same
things and pauses by bounces are treated alike.
"""

from __future__ import annotations

from collections.abc import Mapping

from lists.models import Delivery, Member

DELIVERY_LABELS = {
    Delivery.REGULAR: "each post",
    Delivery.PLAIN_DIGEST: "plain digest",
    Delivery.MIME_DIGEST: "MIME digest",
    Delivery.NOMAIL: "no mail",
}
NAME_LENGTH = 255


class BadSettings(ValueError):
    """The form asks for something a member cannot choose; nothing was changed."""


def apply_settings(member: Member, form: Mapping[str, str]) -> None:
    """Set the delivery (and the display name, where the form has that field) of `member`.

    Everything is checked before anything changes, so a bad field leaves the member as
    they were.
    """
    wanted = form.get("delivery", "")
    if wanted not in set(Delivery):
        raise BadSettings("Unknown delivery mode.")
    name = form.get("display_name")
    if name is not None:
        name = " ".join(name.split())  # no line breaks or tabs: names end up in headers
        if len(name) > NAME_LENGTH or not name.isprintable():
            raise BadSettings("That name is too long or has characters a name cannot have.")
        member.display_name = name
    member.delivery = wanted
    # Delivery the member stopped themselves resumes with "each post"; delivery the
    # bounce processor stopped stays stopped until the address works again.
    if wanted == Delivery.REGULAR and member.disabled_reason == "user":
        member.disabled_reason = None


def delivery_label(member: Member) -> str:
    """How `member` receives the list, in the words the forms use."""
    try:
        return DELIVERY_LABELS[Delivery(member.delivery)]
    except ValueError:
        return member.delivery
