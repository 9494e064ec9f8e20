"""Drop mail the list itself sent: it came back round a loop."""

from __future__ import annotations

from lists.models import Action
from lists.rules.base import Decision, Post
from lists.wording import LISTS


class Loop:
    name = "loop"
    description = "The post carries this list's own List-Id or X-Loop."

    def check(self, post: Post) -> Decision | None:
        list_id = str(post.message.get("List-Id", "")).lower()
        loops = [str(value).lower() for value in post.message.get_all("X-Loop", [])]
        if f"<{post.mlist.list_id}>" in list_id or post.mlist.address in loops:
            return Decision(
                Action.DISCARD,
                LISTS.lazy_gettext("the message has been through this list"),
                self.name,
            )
        return None
