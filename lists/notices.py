"""The mail a list writes itself: confirmation requests, welcomes, moderation notices,
rejections, command results. Plain text, one function each, so the wording lives in one
place and tests can read it."""

from __future__ import annotations

from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime, make_msgid

from archiver.languages import Text
from lists.models import MailingList, utcnow
from lists.wording import language_of, said, words

AUTO_HEADERS = {"Auto-Submitted": "auto-replied", "Precedence": "bulk"}
MAX_LINE = 990  # RFC 5321 allows 998 octets a line; a little room for the line ending


def notice(
    mlist: MailingList,
    to: str,
    subject: str,
    body: str,
    sender: str | None = None,
    reply_to: str | None = None,
    attachment: bytes | None = None,
    unwrapped: bool = False,
) -> EmailMessage:
    """A message from the list to `to` (auto-generated: nobody should auto-reply to it).

    `unwrapped` keeps the body unencoded when its lines allow, so a long link stays whole
    on one line for every reader instead of being split by quoted-printable soft breaks.
    """
    message = EmailMessage(policy=SMTP)
    message["From"] = sender or mlist.address_for("request")
    message["To"] = to
    message["Subject"] = subject
    message["Date"] = format_datetime(utcnow())
    message["Message-ID"] = make_msgid(domain=mlist.domain)
    if reply_to:
        message["Reply-To"] = reply_to
    message["List-Id"] = f"<{mlist.list_id}>"
    message["X-Loop"] = mlist.address
    for name, value in AUTO_HEADERS.items():
        message[name] = value
    if unwrapped and max(len(line.encode()) for line in body.splitlines()) <= MAX_LINE:
        message.set_content(body, cte="7bit" if body.isascii() else "8bit")
    else:
        message.set_content(body)
    if attachment is not None:
        message.add_attachment(attachment, maintype="message", subtype="rfc822")
    # RFC 3282; after the content, which setting the content would clear
    message["Content-Language"] = language_of(mlist)
    return message


def requested(mlist: MailingList, action: str) -> str:
    """What a confirmation's `action` does, as the rest of "asked to ...".

    `subscribe`, `unsubscribe`, or a mailed setting kept as its words (`set nomail on`).
    """
    _ = words(mlist).gettext
    if action == "subscribe":
        return _("join the list %(list)s") % {"list": mlist.address}
    if action == "unsubscribe":
        return _("leave the list %(list)s") % {"list": mlist.address}
    return _("change the delivery from %(list)s (%(action)s)") % {
        "list": mlist.address,
        "action": action,
    }


def confirm_request(
    mlist: MailingList, address: str, token: str, action: str, url: str
) -> EmailMessage:
    """Ask `address` to confirm a subscription, an unsubscription or a change of its
    settings that it (or someone using its address) asked for."""
    _ = words(mlist).gettext
    confirm = mlist.address_for(f"confirm+{token}")
    body = _(
        "Someone, probably you, asked to %(request)s\n"
        "for the address %(address)s.\n\n"
        "To confirm, reply to this message (keep the subject), or open:\n\n    %(url)s\n\n"
        "If you did not ask for this, ignore this message: nothing happens without your\n"
        "confirmation, and the request expires in a few days.\n"
    ) % {"request": requested(mlist, action), "address": address, "url": url}
    # The subject stays as it is in every language: a reply to it is the confirmation.
    return notice(mlist, address, f"confirm {token}", body, sender=confirm, reply_to=confirm)


def welcome(mlist: MailingList, address: str, settings_page: str) -> EmailMessage:
    """Tell a new member they are in, how to leave, and where to change their settings.

    `settings_page` is where a link to the member's own settings can be asked for, not a
    signed link: a welcome mail is kept for years, a signed link should not work that long.
    """
    _ = words(mlist).gettext
    body = _(
        "Welcome to %(list)s! %(description)s\n\n"
        "To post, write to %(list)s.\n"
        "To leave, write to %(leave)s.\n"
        "To change your settings (digest, no mail) or leave on the web, visit\n"
        "%(page)s\n"
        "and ask for a link to your settings page.\n"
        "For help, write 'help' to %(request)s.\n"
    ) % {
        "list": mlist.address,
        "description": mlist.description,
        "leave": mlist.address_for("leave"),
        "page": settings_page,
        "request": mlist.address_for("request"),
    }
    return notice(mlist, address, _("Welcome to %(list)s") % {"list": mlist.address}, body)


def settings_link(mlist: MailingList, address: str, url: str, days: int) -> EmailMessage:
    """Send a member the signed link to their own settings page, asked for on the web."""
    _ = words(mlist).gettext
    body = _(
        "Someone, probably you, asked for a link to the settings of %(address)s\n"
        "on the list %(list)s. Open it to choose how the list delivers to you\n"
        "(each post, a digest, or no mail for now) or to leave the list:\n\n"
        "    %(url)s\n\n"
        "The link works for %(days)s days; anyone who has it can change these settings, so\n"
        "do not pass it on. If you did not ask for it, ignore this message: nothing\n"
        "changes unless a button on that page is pressed.\n"
    ) % {"address": address, "list": mlist.address, "url": url, "days": days}
    subject = _("Your settings on %(list)s") % {"list": mlist.address}
    return notice(mlist, address, subject, body, unwrapped=True)


def goodbye(mlist: MailingList, address: str) -> EmailMessage:
    """Confirm that an address has left."""
    _ = words(mlist).gettext
    names = {"address": address, "list": mlist.address}
    body = _("%(address)s is no longer a member of %(list)s.\n") % names
    return notice(mlist, address, _("You have left %(list)s") % names, body)


def awaiting_approval(mlist: MailingList, address: str) -> EmailMessage:
    """Tell a confirmed subscriber that an owner must now approve them."""
    _ = words(mlist).gettext
    names = {"list": mlist.address}
    body = _("Thank you. An owner of %(list)s will look at your request to join.\n") % names
    return notice(mlist, address, _("Your request to join %(list)s") % names, body)


def approval_request(mlist: MailingList, owner: str, address: str, token: str) -> EmailMessage:
    """Ask an owner to approve a confirmed subscription to a moderated list."""
    _ = words(mlist).gettext
    confirm = mlist.address_for(f"confirm+{token}")
    names = {"address": address, "list": mlist.address}
    body = (
        _(
            "%(address)s has confirmed a request to join %(list)s.\n\n"
            "Reply 'approve' to this message to let them in, or 'reject' to refuse.\n"
        )
        % names
    )
    subject = _("Subscription request: %(address)s") % names
    return notice(mlist, owner, subject, body, sender=confirm, reply_to=confirm)


def held_for_moderation(
    mlist: MailingList,
    moderator: str,
    sender: str,
    subject: str,
    reason: Text,
    token: str,
    original: bytes,
    queue: str = "",
) -> EmailMessage:
    """Tell a moderator a post is held, why, and how to act on it: by reply, or on the
    list's held-posts page (`queue`), which shows the post before the decision."""
    _ = words(mlist).gettext
    confirm = mlist.address_for(f"confirm+{token}")
    reason_said = said(mlist, reason)
    names = {"list": mlist.address, "sender": sender, "subject": subject, "reason": reason_said}
    body = (
        _(
            "A post to %(list)s is held for moderation.\n\n"
            "    From:    %(sender)s\n    Subject: %(subject)s\n    Reason:  %(reason)s\n\n"
            "Reply to this message with one word in the first line of the body:\n"
            "'approve' to send it to the list, 'reject' to refuse it (the sender is told),\n"
            "or 'discard' to drop it silently. The post is attached.\n"
        )
        % names
    )
    if queue:
        body += "\n" + _("Or read it and decide on the web:\n\n    %(url)s\n") % {"url": queue}
    return notice(
        mlist,
        moderator,
        _("%(list)s post from %(sender)s requires approval") % names,
        body,
        sender=confirm,
        reply_to=confirm,
        attachment=original,
        unwrapped=True,
    )


def virus_discarded(
    mlist: MailingList,
    owner: str,
    sender: str,
    subject: str,
    message_id: str,
    signature: str,
) -> EmailMessage:
    """Tell an owner a post carrying a virus was dropped; the post is not attached, nor
    quoted beyond its subject, so the notice itself carries nothing harmful."""
    _ = words(mlist).gettext
    names = {
        "list": mlist.address,
        "sender": sender or _("(no sender)"),
        "subject": subject,
        "message_id": message_id,
        "virus": signature,
    }
    body = (
        _(
            "A post to %(list)s was discarded: the virus scanner found\n"
            "%(virus)s in it.\n\n"
            "    From:       %(sender)s\n"
            "    Subject:    %(subject)s\n"
            "    Message-ID: %(message_id)s\n"
            "    Virus:      %(virus)s\n\n"
            "No member received it, and the sender was not told (the From of such mail is\n"
            "usually forged). The post is not attached to this notice.\n"
        )
        % names
    )
    return notice(
        mlist,
        owner,
        _("%(list)s: a post from %(sender)s carried a virus") % names,
        body,
        sender=mlist.address_for("owner"),
    )


def post_held(mlist: MailingList, sender: str, subject: str, reason: Text) -> EmailMessage:
    """Tell the poster their message waits for a moderator."""
    _ = words(mlist).gettext
    names = {"list": mlist.address, "subject": subject, "reason": said(mlist, reason)}
    body = (
        _(
            "Your message to %(list)s with the subject\n\n    %(subject)s\n\n"
            "is being held until a moderator can review it. Reason: %(reason)s\n"
        )
        % names
    )
    return notice(mlist, sender, _("Your message to %(list)s awaits approval") % names, body)


def post_rejected(
    mlist: MailingList, sender: str, subject: str, reason: Text | str
) -> EmailMessage:
    """Tell the poster their message was refused, and why (a rule's reason, or what the
    moderator typed)."""
    _ = words(mlist).gettext
    names = {"list": mlist.address, "subject": subject, "reason": said(mlist, reason)}
    body = (
        _(
            "Your message to %(list)s with the subject\n\n    %(subject)s\n\n"
            "was rejected. Reason: %(reason)s\n"
        )
        % names
    )
    return notice(
        mlist,
        sender,
        _("Your message to %(list)s was rejected") % names,
        body,
        sender=mlist.address_for("owner"),
    )


def command_results(mlist: MailingList, to: str, lines: list[str]) -> EmailMessage:
    """The results of the commands in a message to -request."""
    _ = words(mlist).gettext
    body = _("The results of your commands:") + "\n\n" + "\n".join(lines) + "\n"
    subject = _("The results of your commands to %(list)s") % {"list": mlist.address}
    return notice(mlist, to, subject, body)


def help_text(mlist: MailingList) -> str:
    """What -request understands (the commands themselves are English in every language:
    they are what the list reads)."""
    _ = words(mlist).gettext
    return _(
        "Commands for %(list)s (write them to %(request)s,\n"
        "in the subject or one per line in the body):\n\n"
        "    subscribe            join the list (you will be asked to confirm)\n"
        "    unsubscribe          leave the list (you will be asked to confirm)\n"
        "    confirm TOKEN        confirm a request\n"
        "    set digest plain     get a plain-text digest a day instead of each post\n"
        "    set digest mime      get a MIME digest a day\n"
        "    set digest off       get each post again\n"
        "    set nomail on|off    stop or resume mail without leaving\n"
        "    help                 this text\n"
    ) % {"list": mlist.address, "request": mlist.address_for("request")}


def delivery_disabled(mlist: MailingList, address: str, score: float) -> EmailMessage:
    """Tell a member (and, copied separately, the owners) that mail to them stopped."""
    _ = words(mlist).gettext
    names = {
        "list": mlist.address,
        "address": address,
        "score": f"{score:.1f}",
        "request": mlist.address_for("request"),
    }
    body = (
        _(
            "Mail from %(list)s to %(address)s has bounced repeatedly (score %(score)s),\n"
            "so the list has stopped sending to it. To resume, write 'set nomail off' to\n"
            "%(request)s once the problem is fixed.\n"
        )
        % names
    )
    subject = _("Delivery to %(address)s from %(list)s stopped") % names
    return notice(mlist, address, subject, body)
