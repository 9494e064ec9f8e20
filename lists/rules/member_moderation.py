"""Hold posts of moderated members, of everyone on a moderated list, and of anyone but
owners and moderators on an announce list."""

from __future__ import annotations

from lists.models import Action, Posting, Role
from lists.rules.base import Decision, Post
from lists.wording import LISTS

STAFF = frozenset({Role.OWNER, Role.MODERATOR})


class MemberModeration:
    name = "member-moderation"
    description = "The sender's posts need a moderator's approval."

    def check(self, post: Post) -> Decision | None:
        if post.roles & STAFF:
            return None
        if post.mlist.posting == Posting.ANNOUNCE:
            reason = LISTS.lazy_gettext("only owners and moderators post to this announce list")
            return Decision(Action.HOLD, reason, self.name)
        if Role.MEMBER not in post.roles:
            return None  # the nonmember rule decides
        if post.moderated or post.mlist.posting == Posting.MODERATED:
            return Decision(
                Action.HOLD, LISTS.lazy_gettext("posts from this member are moderated"), self.name
            )
        return None
