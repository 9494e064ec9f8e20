"""Hold a post that is really a command ("unsubscribe") sent to the posting address."""

from __future__ import annotations

import re

from lists.models import Action
from lists.rules.base import Decision, Post
from lists.wording import LISTS

COMMAND = re.compile(r"^\s*(subscribe|unsubscribe|remove|signoff|help|join|leave)\b", re.I)
MAX_LINES = 5  # a real post with a command word in it is longer than this


class Administrivia:
    name = "administrivia"
    description = "The post looks like a subscribe or unsubscribe request."

    def check(self, post: Post) -> Decision | None:
        subject = str(post.message.get("Subject", ""))
        body = post.message.get_body(preferencelist=("plain",))
        text = ""
        if body is not None:
            try:
                text = body.get_content()
            except (LookupError, ValueError):
                text = ""
        lines = [line for line in text.splitlines() if line.strip()]
        if (COMMAND.match(subject) and len(lines) <= MAX_LINES) or (
            lines and len(lines) <= 2 and COMMAND.match(lines[0])
        ):
            reason = LISTS.lazy_gettext(
                "the message looks like a request to join or leave; write to the -request address"
            )
            return Decision(Action.HOLD, reason, self.name)
        return None
