"""Act on what spamd and clamd said about a post: discard viruses and heavy spam, hold
likely spam and posts no daemon could vouch for.

It comes right after the loop check: a virus is dropped whoever sent it (an owner's
address is as easy to forge as anyone's) and even while the list is in emergency
moderation, where it would otherwise wait in the moderators' queue.
"""

from __future__ import annotations

import math

from lists.models import Action, UncheckedPosts
from lists.rules.base import Decision, Post

UNAVAILABLE = "content check unavailable"


class ContentCheck:
    name = "content-check"
    description = "The virus scanner found something, the spam score is too high, or no check ran."

    def check(self, post: Post) -> Decision | None:
        verdict = post.verdict
        if verdict is None:
            return None  # checks are off: nothing changes
        mlist = post.mlist
        if verdict.virus:
            return Decision(Action.DISCARD, f"a virus was found: {verdict.virus}", self.name)
        score = verdict.spam_score
        if score is not None and score >= mlist.spam_discard_score:
            reason = (
                f"spam, {verdict.describe_spam()}; "
                f"this list discards posts scoring {mlist.spam_discard_score:g} or more"
            )
            return Decision(Action.DISCARD, reason, self.name)
        if score is not None and score >= mlist.spam_hold_score:
            reason = (
                f"likely spam, {verdict.describe_spam()}; "
                f"this list holds posts scoring {mlist.spam_hold_score:g} or more"
            )
            # The From of spam is mostly forged: telling it would be backscatter.
            return Decision(Action.HOLD, reason, self.name, tell_sender=False)
        if verdict.unchecked and mlist.unchecked_posts != UncheckedPosts.ACCEPT:
            daemons = " and ".join(verdict.unchecked)
            reason = f"{UNAVAILABLE}: {daemons} could not check the post"
            if "clamd" in verdict.unchecked:
                reason += " (it was not scanned for viruses: approve with care)"
            return Decision(Action.HOLD, reason, self.name)
        return None


def score_problem(hold: float, discard: float) -> str:
    """Why a list cannot hold at `hold` and discard at `discard` ("" if it can)."""
    for label, score in (("hold", hold), ("discard", discard)):
        if not math.isfinite(score) or score <= 0:
            return f"the spam {label} score must be a number above 0, not {score:g}"
    if hold > discard:
        return f"the spam hold score ({hold:g}) must not be above the discard score ({discard:g})"
    return ""
