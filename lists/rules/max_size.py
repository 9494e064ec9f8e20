"""Hold posts larger than the list allows."""

from __future__ import annotations

from lists.models import Action
from lists.rules.base import Decision, Post
from lists.wording import LISTS


class MaxSize:
    name = "max-size"
    description = "The post is larger than the list's maximum."

    def check(self, post: Post) -> Decision | None:
        limit = post.mlist.max_message_kb * 1024
        if limit and post.size > limit:
            reason = LISTS.lazy_gettext(
                "the message is larger than %(limit)s KB", limit=post.mlist.max_message_kb
            )
            return Decision(Action.HOLD, reason, self.name)
        return None
