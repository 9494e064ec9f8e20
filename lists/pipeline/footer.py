"""The list's footer, at the end of the text and HTML bodies (not inside attachments)."""

from __future__ import annotations

import html
from email.message import EmailMessage

from lists.pipeline.base import Delivery


def footer_text(delivery: Delivery) -> str:
    """The footer: the list's own text, or where to post and how to leave."""
    mlist = delivery.mlist
    return mlist.footer or (
        f"{mlist.display_name or mlist.name} mailing list -- {mlist.address}\n"
        f"To unsubscribe send an email to {mlist.address_for('leave')}"
    )


class Footer:
    name = "footer"

    def process(self, delivery: Delivery) -> None:
        text = footer_text(delivery)
        for part in _bodies(delivery.message):
            try:
                content = part.get_content()
            except (LookupError, ValueError):
                continue  # an undecodable body is left as it came
            if part.get_content_subtype() == "html":
                addition = "<hr><pre>" + html.escape(text) + "</pre>"
                lower = content.lower()
                at = lower.rfind("</body>")
                content = content[:at] + addition + content[at:] if at >= 0 else content + addition
                part.set_content(content, subtype="html")
            else:
                separator = "" if content.endswith("\n") else "\n"
                part.set_content(content + separator + "_" * 50 + "\n" + text + "\n")


def _bodies(message: EmailMessage) -> list[EmailMessage]:
    """The text/plain and text/html parts that are the message's body."""
    if not message.is_multipart():
        return [message] if message.get_content_maintype() == "text" else []
    found = []
    for part in message.walk():
        if part.is_multipart() or part.get_content_disposition() == "attachment":
            continue
        if part.get_content_type() in ("text/plain", "text/html"):
            found.append(part)
    return found
