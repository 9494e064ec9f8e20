"""Hold a post whose From names someone in the list when nothing shows it is theirs."""

from __future__ import annotations

from lists.models import Action, MailingList, Posting
from lists.rules.base import Decision, Post
from lists.wording import LISTS


def needs_proof(mlist: MailingList, roles: frozenset[str]) -> bool:
    """Whether a post whose From has `roles` in `mlist` must show it is the sender's: the
    roles grant something (posting without a moderator) and the list asks for proof."""
    return bool(roles) and asks_for_proof(mlist)


def asks_for_proof(mlist: MailingList) -> bool:
    """Whether posts to `mlist` by its members must show they are theirs: the list is not
    open to all, and its owner has not chosen to believe the From header alone."""
    return mlist.posting != Posting.OPEN and not mlist.trust_header_from


class UnverifiedSender:
    name = "unverified-sender"
    description = (
        "The From names a member, but neither the envelope sender nor a DKIM signature "
        "of the From's domain shows the post is theirs."
    )

    def check(self, post: Post) -> Decision | None:
        if post.vouched or not needs_proof(post.mlist, post.roles):
            return None
        reason = LISTS.lazy_gettext(
            "the post says it is from %(sender)s, but its envelope sender is another "
            "address and no DKIM signature of that domain holds",
            sender=post.sender,
        )
        # The From may be forged: telling it would mail the member about someone else's post.
        return Decision(Action.HOLD, reason, self.name, tell_sender=False)
