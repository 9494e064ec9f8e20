"""Hold posts addressed to many people at once (a sign of spam)."""

from __future__ import annotations

from lists.models import Action
from lists.rules.base import Decision, Post
from lists.wording import LISTS


class MaxRecipients:
    name = "max-recipients"
    description = "The post has too many explicit recipients in To and Cc."

    def check(self, post: Post) -> Decision | None:
        limit = post.mlist.max_recipients
        count = sum(
            len(getattr(header, "addresses", ()))
            for name in ("To", "Cc")
            for header in post.message.get_all(name, [])
        )
        if limit and count >= limit:
            return Decision(
                Action.HOLD,
                LISTS.lazy_gettext("the message has %(count)s recipients", count=count),
                self.name,
            )
        return None
