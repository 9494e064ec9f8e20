"""Refuse posts from banned addresses."""

from __future__ import annotations

from lists.models import Action
from lists.rules.base import Decision, Post
from lists.wording import LISTS


class Banned:
    name = "banned-address"
    description = "The sender is banned from this list or from all lists."

    def check(self, post: Post) -> Decision | None:
        if post.banned:
            return Decision(
                Action.REJECT, LISTS.lazy_gettext("you are banned from this list"), self.name
            )
        return None
