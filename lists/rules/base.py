"""What every posting rule sees and says."""

from __future__ import annotations

from dataclasses import dataclass
from email.message import EmailMessage
from typing import Protocol

from archiver.contentcheck.verdict import Verdict
from archiver.languages import Text
from lists.models import Action, MailingList


@dataclass(frozen=True)
class Post:
    """A post as the rules see it: the list, the message, and facts about the sender
    looked up once (so rules stay pure functions of this value)."""

    mlist: MailingList
    message: EmailMessage
    size: int
    sender: str
    roles: frozenset[str]  # the sender's roles in the list: owner, moderator, member
    moderated: bool  # the sender's member moderation flag
    banned: bool
    verdict: Verdict | None = None  # what spamd and clamd said (None: checks are off)
    # whether the envelope sender or an aligned DKIM signature shows the post is the
    # From's (looked up only when a rule needs it: see rules/unverified_sender.py)
    vouched: bool = True


@dataclass(frozen=True)
class Decision:
    """What to do with a post, and why (shown to moderators and rejected posters, each in
    their language; None when the post is accepted)."""

    action: Action
    reason: Text | None
    rule: str
    tell_sender: bool = True  # whether a held post's sender is told it waits


class Rule(Protocol):
    """One posting check."""

    name: str
    description: str

    def check(self, post: Post) -> Decision | None:
        """A decision when this rule applies, else None."""
        ...
