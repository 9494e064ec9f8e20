"""The list's own header rules: a regular expression on a header, and what to do."""

from __future__ import annotations

import re

from lists.models import Action
from lists.rules.base import Decision, Post


class HeaderMatch:
    name = "header-match"
    description = "A header matches one of the list's header rules."

    def check(self, post: Post) -> Decision | None:
        for rule in post.mlist.header_matches or []:
            try:
                pattern = re.compile(rule["pattern"], re.IGNORECASE)
                action = Action(rule.get("action", Action.HOLD))
            except (KeyError, re.error, ValueError):
                continue  # a broken rule must not stop the list
            for value in post.message.get_all(rule.get("header", ""), []):
                if pattern.search(str(value)):
                    reason = f"the {rule['header']} header matches {rule['pattern']!r}"
                    return Decision(action, reason, self.name)
        return None
