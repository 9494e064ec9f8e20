"""Pipeline handlers that change a post, each on a message built in the test."""

from __future__ import annotations

from datetime import UTC, datetime
from email.message import EmailMessage
from email.policy import SMTP

from lists.models import MailingList
from lists.pipeline import Footer, ListHeaders, ReplyTo
from lists.pipeline.base import Delivery


def delivery(message: EmailMessage, **settings: object) -> Delivery:
    defaults: dict[str, object] = {
        "name": "dev",
        "domain": "lists.example.com",
        "display_name": "Developers",
        "footer": "",
        "reply_to": "none",
        "reply_to_address": "",
        "personalize": True,
        "archive": "public",
    }
    mlist = MailingList(**{**defaults, **settings})
    return Delivery(
        mlist=mlist,
        message=message,
        sender="ann@example.org",
        session=None,  # type: ignore[arg-type]  (these handlers touch no database)
        archive=None,  # type: ignore[arg-type]
        public_url="https://lists.test",
        received_at=datetime.now(UTC),
    )


def alternative() -> EmailMessage:
    message = EmailMessage(policy=SMTP)
    message["From"] = "Ann <ann@example.org>"
    message["To"] = "dev@lists.example.com"
    message["Subject"] = "Plans"
    message.set_content("Plain words.\n")
    message.add_alternative("<html><body><p>Rich words.</p></body></html>", subtype="html")
    message.add_attachment(b"a,b\n1,2\n", maintype="text", subtype="csv", filename="t.csv")
    return message


def test_the_footer_ends_the_text_and_html_bodies_but_not_attachments() -> None:
    post = delivery(alternative())
    Footer().process(post)
    plain = post.message.get_body(preferencelist=("plain",))
    html = post.message.get_body(preferencelist=("html",))
    assert plain.get_content().rstrip().endswith("send an email to dev-leave@lists.example.com")
    content = html.get_content()
    assert content.index("dev-leave@lists.example.com") < content.lower().index("</body>")
    attachment = next(post.message.iter_attachments())
    assert attachment.get_content() == "a,b\n1,2\n"


def test_list_headers_point_to_the_lists_addresses() -> None:
    post = delivery(alternative())
    ListHeaders().process(post)
    message = post.message
    assert message["List-Id"] == "Developers <dev.lists.example.com>"
    assert message["List-Help"] == "<mailto:dev-request@lists.example.com?subject=help>"
    assert message["List-Archive"] == "<https://lists.test/lists/dev@lists.example.com>"
    assert "List-Unsubscribe" not in message  # written per recipient for personal delivery
    assert message["X-Loop"] == "dev@lists.example.com"


def test_reply_to_follows_the_lists_policy() -> None:
    to_list = delivery(alternative(), reply_to="list")
    ReplyTo().process(to_list)
    assert to_list.message["Reply-To"] == "dev@lists.example.com"
    explicit = delivery(alternative(), reply_to="explicit", reply_to_address="team@example.com")
    ReplyTo().process(explicit)
    assert explicit.message["Reply-To"] == "team@example.com"
    untouched = delivery(alternative())
    ReplyTo().process(untouched)
    assert "Reply-To" not in untouched.message
