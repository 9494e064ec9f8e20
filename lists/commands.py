"""Mail to a list's command addresses: -request (commands in the subject or body),
-join/-subscribe, -leave/-unsubscribe, and -confirm+TOKEN (a confirmation, an owner's
approval, or a moderator's decision on a held post).

Commands only ever act on the sender's own address, and every answer goes to that
address, so nobody can learn whether someone else is a member. The sender is the one
address in From: a From naming several addresses (or none that is plain) gets nothing
done and no answer. Whatever changes a membership (joining, leaving, a `set`) waits for
a confirmation from that address, so a forged From changes nobody's settings.
"""

from __future__ import annotations

import logging
import re
from datetime import timedelta
from email.message import EmailMessage

from sqlalchemy import select
from sqlalchemy.orm import Session

from archiver.languages import Text
from archiver.throttle import allow_in
from lists import notices
from lists.membership import (
    BadAddress,
    Membership,
    delivery_for,
    has_role,
    not_a_member,
    one_address,
)
from lists.models import HeldMessage, MailingList, Pending, Role
from lists.outbox import send_notice
from lists.posting import Poster
from lists.wording import LISTS, said

log = logging.getLogger(__name__)

REPLIES_PER_HOUR = 10  # answers to one address's mailed commands

MAX_COMMANDS = 10  # lines read from a body; signatures and quotes come after them
QUOTED = re.compile(r"^\s*>")
SIGNATURE = re.compile(r"^--\s*$")


class Commands:
    """Carries out mailed commands for lists."""

    def __init__(self, membership: Membership, poster: Poster) -> None:
        self.membership = membership
        self.poster = poster

    def request(
        self, session: Session, mlist: MailingList, message: EmailMessage, sender: str
    ) -> None:
        """Commands to NAME-request@: from the subject, then the body's first lines."""
        results: list[Text | str] = []
        subject, body = command_lines(message)
        answer = self._one(session, mlist, subject.split(), sender) if subject else None
        if answer is not None:  # a subject that is no command is just a subject
            results += [f"> {subject}", answer]
        for line in body:
            results.append(f"> {line}")
            answer = self._one(session, mlist, line.split(), sender)
            if answer is None:
                results.append(
                    LISTS.lazy_gettext("Unknown command; write 'help' for the list of commands.")
                )
                break
            results.append(answer)
        if not results:
            results.append(notices.help_text(mlist))
        self._reply(session, mlist, sender, results)

    def join(self, session: Session, mlist: MailingList, sender: str) -> None:
        """Mail to NAME-join@: a subscription request for the sender."""
        self.membership.request(session, mlist, sender, "subscribe")

    def leave(self, session: Session, mlist: MailingList, sender: str) -> None:
        """Mail to NAME-leave@: an unsubscription request for the sender."""
        self.membership.request(session, mlist, sender, "unsubscribe")

    def confirm(
        self,
        session: Session,
        mlist: MailingList,
        token: str,
        message: EmailMessage,
        sender: str,
    ) -> None:
        """A reply to a confirmation request, an approval request or a held-post notice."""
        held = session.scalar(
            select(HeldMessage).where(HeldMessage.token == token, HeldMessage.list_id == mlist.id)
        )
        if held is not None:
            self._moderate(session, mlist, held, message, sender)
            return
        pending = session.scalar(select(Pending).where(Pending.token == token))
        word = first_word(message)
        if pending is not None and pending.action == "approve" and word in ("reject", "deny"):
            answer = self.membership.reject_request(session, token, sender)
        else:
            answer = self.membership.confirm(session, token, sender)
        self._reply(session, mlist, sender, [answer])

    def _moderate(
        self,
        session: Session,
        mlist: MailingList,
        held: HeldMessage,
        message: EmailMessage,
        sender: str,
    ) -> None:
        if not has_role(session, mlist, sender, Role.MODERATOR, Role.OWNER):
            return  # not a moderator: say nothing, a held post is none of their business
        action = first_word(message)
        if action not in ("approve", "reject", "discard"):
            answer = LISTS.lazy_gettext(
                "Reply with approve, reject or discard as the first word of the body."
            )
        else:
            answer = self.poster.moderate(session, held, action)
        self._reply(session, mlist, sender, [answer])

    @staticmethod
    def _reply(session: Session, mlist: MailingList, sender: str, lines: list[Text | str]) -> None:
        """Answer a command mail, at most `REPLIES_PER_HOUR` times an hour per address.

        The sender of a command is only what its From says: someone forging a victim's
        address on a hundred command mails must not make the list mail the victim a
        hundred replies. The commands themselves still run (confirmations have their own
        limit); only the answers stop.
        """
        if not allow_in(session, "command-reply", sender, REPLIES_PER_HOUR, timedelta(hours=1)):
            log.warning("too many replies to %s from %s: not answering", sender, mlist.address)
            return
        answers = [said(mlist, line) for line in lines]  # in the list's language
        send_notice(session, notices.command_results(mlist, sender, answers), "", mlist.id)

    def _one(
        self, session: Session, mlist: MailingList, words: list[str], sender: str
    ) -> Text | str | None:
        verb = words[0].lower() if words else ""
        if verb in ("subscribe", "join"):
            return self.membership.request(session, mlist, sender, "subscribe")
        if verb in ("unsubscribe", "leave", "remove", "signoff"):
            return self.membership.request(session, mlist, sender, "unsubscribe")
        if verb == "confirm" and len(words) > 1:
            return self.membership.confirm(session, words[1], sender)
        if verb == "help":
            return notices.help_text(mlist)
        if verb == "set" and len(words) >= 3:
            return self._set(session, mlist, sender, words[1].lower(), words[2].lower())
        if verb in ("end", "stop", "thanks"):
            return LISTS.lazy_gettext("Done.")
        return None

    def _set(
        self, session: Session, mlist: MailingList, sender: str, option: str, value: str
    ) -> Text:
        """A setting changes only once the member's own address confirms it: the From of
        a command is as easy to forge as anyone's."""
        if delivery_for(option, value) is None:
            return LISTS.lazy_gettext("Usage: set digest plain|mime|off, or set nomail on|off.")
        if not has_role(session, mlist, sender, Role.MEMBER):
            return not_a_member(mlist, sender)
        return self.membership.request(session, mlist, sender, f"set {option} {value}")


def command_lines(message: EmailMessage) -> tuple[str, list[str]]:
    """The subject (without Re:) and the body lines that may be commands: up to a
    signature or quoted text, at most MAX_COMMANDS."""
    lines: list[str] = []
    subject = " ".join(str(message.get("Subject", "")).split())
    subject = re.sub(r"^(re|aw|sv)\s*:\s*", "", subject, flags=re.IGNORECASE)
    for line in _body(message).splitlines():
        if SIGNATURE.match(line) or QUOTED.match(line):
            break
        if line.strip():
            lines.append(line.strip())
        if len(lines) >= MAX_COMMANDS:
            break
    return subject, lines


def first_word(message: EmailMessage) -> str:
    """The first word of the body (a moderator's or owner's answer), lower-cased."""
    for line in _body(message).splitlines():
        if line.strip() and not QUOTED.match(line):
            return line.split()[0].lower().strip(".,!")
    return ""


def _body(message: EmailMessage) -> str:
    part = message.get_body(preferencelist=("plain",))
    if part is None:
        return ""
    try:
        return str(part.get_content())[:20_000]
    except (LookupError, ValueError):
        return ""


def command_sender(message: EmailMessage, envelope_from: str) -> str | None:
    """The one address a command acts for and is answered at: the From's, when From names
    exactly one plain address (the envelope sender when there is no From); None for
    anything else, which is not answered."""
    try:
        header = message["From"]
        addresses = getattr(header, "addresses", ()) if header else ()
    except (IndexError, ValueError):
        return None
    if header and len(addresses) != 1:
        return None
    text = addresses[0].addr_spec if addresses else envelope_from
    try:
        return one_address(text)
    except BadAddress:
        return None
