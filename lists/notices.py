"""The mail a list writes itself: confirmation requests, welcomes, moderation notices,
rejections, command results. Plain text, one function each, so the wording lives in one
place and tests can read it."""

from __future__ import annotations

from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime, make_msgid

from lists.models import MailingList, utcnow

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
    return message


def requested(action: str, list_address: str) -> str:
    """What a confirmation's `action` does, as the rest of "asked to ...".

    `subscribe`, `unsubscribe`, or a mailed setting kept as its words (`set nomail on`).
    """
    if action == "subscribe":
        return f"join the list {list_address}"
    if action == "unsubscribe":
        return f"leave the list {list_address}"
    return f"change the delivery from {list_address} ({action})"


def confirm_request(
    mlist: MailingList, address: str, token: str, action: str, url: str
) -> EmailMessage:
    """Ask `address` to confirm a subscription, an unsubscription or a change of its
    settings that it (or someone using its address) asked for."""
    confirm = mlist.address_for(f"confirm+{token}")
    body = (
        f"Someone, probably you, asked to {requested(action, mlist.address)}\n"
        f"for the address {address}.\n\n"
        f"To confirm, reply to this message (keep the subject), or open:\n\n    {url}\n\n"
        "If you did not ask for this, ignore this message: nothing happens without your\n"
        "confirmation, and the request expires in a few days.\n"
    )
    return notice(mlist, address, f"confirm {token}", body, sender=confirm, reply_to=confirm)


def welcome(mlist: MailingList, address: str, settings_page: str) -> EmailMessage:
    """Tell a new member they are in, how to leave, and where to change their settings.

    `settings_page` is where a link to the member's own settings can be asked for, not a
    signed link: a welcome mail is kept for years, a signed link should not work that long.
    """
    body = (
        f"Welcome to {mlist.address}! {mlist.description}\n\n"
        f"To post, write to {mlist.address}.\n"
        f"To leave, write to {mlist.address_for('leave')}.\n"
        f"To change your settings (digest, no mail) or leave on the web, visit\n"
        f"{settings_page}\n"
        "and ask for a link to your settings page.\n"
        f"For help, write 'help' to {mlist.address_for('request')}.\n"
    )
    return notice(mlist, address, f"Welcome to {mlist.address}", body)


def settings_link(mlist: MailingList, address: str, url: str, days: int) -> EmailMessage:
    """Send a member the signed link to their own settings page, asked for on the web."""
    body = (
        f"Someone, probably you, asked for a link to the settings of {address}\n"
        f"on the list {mlist.address}. Open it to choose how the list delivers to you\n"
        "(each post, a digest, or no mail for now) or to leave the list:\n\n"
        f"    {url}\n\n"
        f"The link works for {days} days; anyone who has it can change these settings, so\n"
        "do not pass it on. If you did not ask for it, ignore this message: nothing\n"
        "changes unless a button on that page is pressed.\n"
    )
    return notice(mlist, address, f"Your settings on {mlist.address}", body, unwrapped=True)


def goodbye(mlist: MailingList, address: str) -> EmailMessage:
    """Confirm that an address has left."""
    body = f"{address} is no longer a member of {mlist.address}.\n"
    return notice(mlist, address, f"You have left {mlist.address}", body)


def awaiting_approval(mlist: MailingList, address: str) -> EmailMessage:
    """Tell a confirmed subscriber that an owner must now approve them."""
    body = f"Thank you. An owner of {mlist.address} will look at your request to join.\n"
    return notice(mlist, address, f"Your request to join {mlist.address}", body)


def approval_request(mlist: MailingList, owner: str, address: str, token: str) -> EmailMessage:
    """Ask an owner to approve a confirmed subscription to a moderated list."""
    confirm = mlist.address_for(f"confirm+{token}")
    body = (
        f"{address} has confirmed a request to join {mlist.address}.\n\n"
        "Reply 'approve' to this message to let them in, or 'reject' to refuse.\n"
    )
    return notice(
        mlist, owner, f"Subscription request: {address}", body, sender=confirm, reply_to=confirm
    )


def held_for_moderation(
    mlist: MailingList,
    moderator: str,
    sender: str,
    subject: str,
    reason: str,
    token: str,
    original: bytes,
) -> EmailMessage:
    """Tell a moderator a post is held, why, and how to act on it by reply."""
    confirm = mlist.address_for(f"confirm+{token}")
    body = (
        f"A post to {mlist.address} is held for moderation.\n\n"
        f"    From:    {sender}\n    Subject: {subject}\n    Reason:  {reason}\n\n"
        "Reply to this message with one word in the first line of the body:\n"
        "'approve' to send it to the list, 'reject' to refuse it (the sender is told),\n"
        "or 'discard' to drop it silently. The post is attached.\n"
    )
    return notice(
        mlist,
        moderator,
        f"{mlist.address} post from {sender} requires approval",
        body,
        sender=confirm,
        reply_to=confirm,
        attachment=original,
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
    body = (
        f"A post to {mlist.address} was discarded: the virus scanner found\n"
        f"{signature} in it.\n\n"
        f"    From:       {sender or '(no sender)'}\n"
        f"    Subject:    {subject}\n"
        f"    Message-ID: {message_id}\n"
        f"    Virus:      {signature}\n\n"
        "No member received it, and the sender was not told (the From of such mail is\n"
        "usually forged). The post is not attached to this notice.\n"
    )
    return notice(
        mlist,
        owner,
        f"{mlist.address}: a post from {sender or '(no sender)'} carried a virus",
        body,
        sender=mlist.address_for("owner"),
    )


def post_held(mlist: MailingList, sender: str, subject: str, reason: str) -> EmailMessage:
    """Tell the poster their message waits for a moderator."""
    body = (
        f"Your message to {mlist.address} with the subject\n\n    {subject}\n\n"
        f"is being held until a moderator can review it. Reason: {reason}\n"
    )
    return notice(mlist, sender, f"Your message to {mlist.address} awaits approval", body)


def post_rejected(mlist: MailingList, sender: str, subject: str, reason: str) -> EmailMessage:
    """Tell the poster their message was refused, and why."""
    body = (
        f"Your message to {mlist.address} with the subject\n\n    {subject}\n\n"
        f"was rejected. Reason: {reason}\n"
    )
    return notice(
        mlist,
        sender,
        f"Your message to {mlist.address} was rejected",
        body,
        sender=mlist.address_for("owner"),
    )


def command_results(mlist: MailingList, to: str, lines: list[str]) -> EmailMessage:
    """The results of the commands in a message to -request."""
    body = "The results of your commands:\n\n" + "\n".join(lines) + "\n"
    return notice(mlist, to, f"The results of your commands to {mlist.address}", body)


def help_text(mlist: MailingList) -> str:
    """What -request understands."""
    return (
        f"Commands for {mlist.address} (write them to {mlist.address_for('request')},\n"
        "in the subject or one per line in the body):\n\n"
        "    subscribe            join the list (you will be asked to confirm)\n"
        "    unsubscribe          leave the list (you will be asked to confirm)\n"
        "    confirm TOKEN        confirm a request\n"
        "    set digest plain     get a plain-text digest a day instead of each post\n"
        "    set digest mime      get a MIME digest a day\n"
        "    set digest off       get each post again\n"
        "    set nomail on|off    stop or resume mail without leaving\n"
        "    help                 this text\n"
    )


def delivery_disabled(mlist: MailingList, address: str, score: float) -> EmailMessage:
    """Tell a member (and, copied separately, the owners) that mail to them stopped."""
    body = (
        f"Mail from {mlist.address} to {address} has bounced repeatedly (score {score:.1f}),\n"
        "so the list has stopped sending to it. To resume, write 'set nomail off' to\n"
        f"{mlist.address_for('request')} once the problem is fixed.\n"
    )
    return notice(mlist, address, f"Delivery to {address} from {mlist.address} stopped", body)
