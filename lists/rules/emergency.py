"""Hold everything while an owner has the list in emergency moderation."""

from __future__ import annotations

from lists.models import Action
from lists.rules.base import Decision, Post
from lists.wording import LISTS


class Emergency:
    name = "emergency"
    description = "The list is in emergency moderation."

    def check(self, post: Post) -> Decision | None:
        if post.mlist.emergency:
            return Decision(
                Action.HOLD, LISTS.lazy_gettext("the list is in emergency moderation"), self.name
            )
        return None
