"""Posting rules: small checks run in order on every post; the first that hits decides.

Each rule is one class in its own module with a `name`, a one-line `description` and
`check(post)`, returning a `Decision` or None (no opinion). A new policy is a new file
and a line in `RULES`.
"""

from __future__ import annotations

from lists.models import Action
from lists.rules.administrivia import Administrivia
from lists.rules.banned import Banned
from lists.rules.base import Decision, Post, Rule
from lists.rules.content_check import ContentCheck
from lists.rules.emergency import Emergency
from lists.rules.header_match import HeaderMatch
from lists.rules.implicit_destination import ImplicitDestination
from lists.rules.loop import Loop
from lists.rules.max_recipients import MaxRecipients
from lists.rules.max_size import MaxSize
from lists.rules.member_moderation import MemberModeration
from lists.rules.nonmember import Nonmember
from lists.rules.unverified_sender import UnverifiedSender

RULES: tuple[Rule, ...] = (
    Loop(),
    ContentCheck(),
    Emergency(),
    Banned(),
    MaxSize(),
    MaxRecipients(),
    Administrivia(),
    UnverifiedSender(),
    MemberModeration(),
    Nonmember(),
    ImplicitDestination(),
    HeaderMatch(),
)
ACCEPTED = Decision(Action.ACCEPT, None, "")


def decide(post: Post, rules: tuple[Rule, ...] = RULES) -> Decision:
    """The first rule's decision, or accept when none has one."""
    for rule in rules:
        decision = rule.check(post)
        if decision is not None:
            return decision
    return ACCEPTED


__all__ = ["RULES", "Decision", "Post", "Rule", "decide"]
