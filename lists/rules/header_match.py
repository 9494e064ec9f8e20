"""The list's own header rules: a regular expression on a header, and what to do.

The expressions run on RE2 (`lists.patterns`), in time linear in the header, so an
owner's rule cannot stall the worker that archives everyone's mail.
"""

from __future__ import annotations

from lists import patterns
from lists.models import Action
from lists.rules.base import Decision, Post
from lists.wording import LISTS


class HeaderMatch:
    name = "header-match"
    description = "A header matches one of the list's header rules."

    def check(self, post: Post) -> Decision | None:
        for rule in post.mlist.header_matches or []:
            try:
                pattern = str(rule["pattern"])
                action = Action(rule.get("action", Action.HOLD))
            except (KeyError, ValueError):
                continue  # a broken rule must not stop the list
            for value in post.message.get_all(rule.get("header", ""), []):
                if patterns.search(pattern, str(value)):
                    reason = LISTS.lazy_gettext(
                        "the %(header)s header matches %(pattern)s",
                        header=str(rule["header"]),
                        pattern=repr(pattern),
                    )
                    return Decision(action, reason, self.name)
        return None
