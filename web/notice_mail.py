"""Mail the web UI writes itself (address confirmations, password-reset links), queued
in the list engine's outbox with its notices, so it goes out through the smarthost (or
into `var/outgoing/`) with the same retries as every other notice."""

from __future__ import annotations

from email.message import EmailMessage
from email.utils import formatdate, make_msgid

from sqlalchemy.orm import Session

from lists.outbox import send_notice
from web.deps import get_core


def notice_mail(to: str, subject: str, body: str) -> EmailMessage:
    """A plain-text notice from this service to `to`, marked as sent automatically."""
    hostname = get_core().settings.hostname
    mail = EmailMessage()
    mail["From"] = f"noreply@{hostname}"
    mail["To"] = to
    mail["Subject"] = subject
    mail["Date"] = formatdate(localtime=False)
    mail["Message-ID"] = make_msgid(domain=hostname)
    mail["Auto-Submitted"] = "auto-generated"
    # Unencoded, so a link stays whole on one line for every reader (well below the
    # 998-character line limit).
    mail.set_content(body, cte="7bit" if body.isascii() else "8bit")
    return mail


def queue_notice(session: Session, mail: EmailMessage) -> None:
    """Queue `mail` for delivery in the caller's transaction (with a null sender: nobody
    should answer or bounce to it)."""
    send_notice(session, mail, "", None)
