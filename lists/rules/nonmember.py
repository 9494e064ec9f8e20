"""Apply the list's action for posts from people who are not members."""

from __future__ import annotations

from lists.models import Action, Posting
from lists.rules.base import Decision, Post
from lists.wording import LISTS


class Nonmember:
    name = "nonmember"
    description = "The sender is not a member of the list."

    def check(self, post: Post) -> Decision | None:
        if post.roles or post.mlist.posting == Posting.OPEN:
            return None
        action = Action(post.mlist.nonmember_action)
        if action is Action.ACCEPT:
            return None
        return Decision(
            action, LISTS.lazy_gettext("the sender is not a member of the list"), self.name
        )
