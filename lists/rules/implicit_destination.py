"""Hold posts that do not name the list in To or Cc (Bcc'd spam, misdirected mail)."""

from __future__ import annotations

from lists.models import Action
from lists.rules.base import Decision, Post
from lists.wording import LISTS


class ImplicitDestination:
    name = "implicit-destination"
    description = "The list is not in the To or Cc of the post."

    def check(self, post: Post) -> Decision | None:
        if not post.mlist.require_explicit_destination:
            return None
        named = {
            address.addr_spec.lower()
            for name in ("To", "Cc")
            for header in post.message.get_all(name, [])
            for address in getattr(header, "addresses", ())
        }
        if post.mlist.address not in named:
            return Decision(
                Action.HOLD, LISTS.lazy_gettext("the list is not named in To or Cc"), self.name
            )
        return None
