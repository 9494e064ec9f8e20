"""Act on what spamd and clamd said about a post: discard viruses and heavy spam, hold
likely spam and posts no daemon could vouch for.

It comes right after the loop check: a virus is dropped whoever sent it (an owner's
address is as easy to forge as anyone's) and even while the list is in emergency
moderation, where it would otherwise wait in the moderators' queue.
"""

from __future__ import annotations

import math

from archiver.contentcheck.verdict import Verdict
from archiver.languages import Text
from lists.models import Action, UncheckedPosts
from lists.rules.base import Decision, Post
from lists.wording import LISTS


class ContentCheck:
    name = "content-check"
    description = "The virus scanner found something, the spam score is too high, or no check ran."

    def check(self, post: Post) -> Decision | None:
        verdict = post.verdict
        if verdict is None:
            return None  # checks are off: nothing changes
        mlist = post.mlist
        if verdict.virus:
            reason = LISTS.lazy_gettext("a virus was found: %(virus)s", virus=verdict.virus)
            return Decision(Action.DISCARD, reason, self.name)
        score = verdict.spam_score
        if score is not None and score >= mlist.spam_discard_score:
            reason = LISTS.lazy_gettext(
                "spam, score %(score)s%(rules)s; this list discards posts scoring %(limit)s "
                "or more",
                **_spam(verdict),
                limit=mlist.spam_discard_score,
            )
            return Decision(Action.DISCARD, reason, self.name)
        if score is not None and score >= mlist.spam_hold_score:
            reason = LISTS.lazy_gettext(
                "likely spam, score %(score)s%(rules)s; this list holds posts scoring "
                "%(limit)s or more",
                **_spam(verdict),
                limit=mlist.spam_hold_score,
            )
            # The From of spam is mostly forged: telling it would be backscatter.
            return Decision(Action.HOLD, reason, self.name, tell_sender=False)
        if verdict.unchecked and mlist.unchecked_posts != UncheckedPosts.ACCEPT:
            return Decision(Action.HOLD, _unchecked(verdict.unchecked), self.name)
        return None


def _spam(verdict: Verdict) -> dict[str, str]:
    """The score as spamd gives it (one decimal) and the rules it hit, for a reason."""
    rules = f" ({', '.join(verdict.spam_rules)})" if verdict.spam_rules else ""
    return {"score": f"{verdict.spam_score:.1f}", "rules": rules}


def _unchecked(daemons: tuple[str, ...]) -> Text:
    """Why a post no daemon could check waits: which could not, and whether it was
    scanned for viruses."""
    named: Text | str = daemons[0]
    if len(daemons) > 1:
        named = LISTS.lazy_gettext("%(first)s and %(second)s", first=daemons[0], second=daemons[1])
    if "clamd" in daemons:
        return LISTS.lazy_gettext(
            "content check unavailable: %(daemons)s could not check the post (it was not "
            "scanned for viruses: approve with care)",
            daemons=named,
        )
    return LISTS.lazy_gettext(
        "content check unavailable: %(daemons)s could not check the post", daemons=named
    )


def score_problem(hold: float, discard: float) -> Text | None:
    """Why a list cannot hold at `hold` and discard at `discard` (None if it can), as a
    sentence for whoever typed them."""
    if not math.isfinite(hold) or hold <= 0:
        return LISTS.lazy_gettext(
            "The spam hold score must be a number above 0, not %(score)s.", score=hold
        )
    if not math.isfinite(discard) or discard <= 0:
        return LISTS.lazy_gettext(
            "The spam discard score must be a number above 0, not %(score)s.",
            score=discard,
        )
    if hold > discard:
        return LISTS.lazy_gettext(
            "The spam hold score (%(hold)s) must not be above the discard score (%(discard)s).",
            hold=hold,
            discard=discard,
        )
    return None
