"""The mail the reading journeys read: a thread that a search finds three times, a list's
posts over two months, a message with a picture, a PDF and a log file attached, a long
HTML newsletter, and a message whose address and subject are one long word."""

from __future__ import annotations

import io
from email.message import EmailMessage
from email.policy import SMTP

from PIL import Image, ImageDraw
from pypdf import PdfWriter
from pypdf.generic import DecodedStreamObject, DictionaryObject, NameObject

from tests.support import JOURNAL, LIST_DOMAIN, RunningService, run_arsip

USER = "bob@example.com"
ADMIN = "admin@example.com"  # an administrator, and an owner of LIST
PASSWORD = "correct horse battery staple"
LIST = f"dev@{LIST_DOMAIN}"
THREAD = ["forecast1@example.com", "forecast2@example.com", "forecast3@example.com"]
FILES = "files@example.com"
NEWSLETTER = "newsletter@example.com"
LONG = "long@example.com"
LONG_ADDRESS = "quarterly.financial.forecast.distribution.group.for.everyone" + "@example.com"
LOG_LINES = [
    f"2026-02-03 09:{n:02d}:00 worker {n} finished the nightly forecast" for n in range(60)
]


def mail(
    message_id: str,
    subject: str,
    sender: str,
    to: str,
    date: str,
    text: str,
    *,
    reply_to: str | None = None,
) -> EmailMessage:
    message = EmailMessage(policy=SMTP)
    message["From"], message["To"], message["Subject"] = sender, to, subject
    message["Date"], message["Message-ID"] = date, f"<{message_id}>"
    if reply_to:
        message["In-Reply-To"] = message["References"] = f"<{reply_to}>"
    message.set_content(text)
    return message


def png() -> bytes:
    """A small chart: blue bars on white."""
    picture = Image.new("RGB", (240, 160), "white")
    draw = ImageDraw.Draw(picture)
    for i, height in enumerate((60, 90, 120, 80, 140)):
        draw.rectangle((20 + i * 44, 150 - height, 50 + i * 44, 150), fill=(40, 90, 180))
    out = io.BytesIO()
    picture.save(out, format="PNG")
    return out.getvalue()


def pdf() -> bytes:
    """A one-page PDF with a black box and a line of text on it."""
    writer = PdfWriter()
    page = writer.add_blank_page(300, 400)
    content = DecodedStreamObject()
    content.set_data(b"0 0 0 rg 40 250 220 100 re f BT /F1 18 Tf 40 200 Td (Forecast 2026) Tj ET")
    font = DictionaryObject(
        {
            NameObject("/Type"): NameObject("/Font"),
            NameObject("/Subtype"): NameObject("/Type1"),
            NameObject("/BaseFont"): NameObject("/Helvetica"),
        }
    )
    page[NameObject("/Resources")] = DictionaryObject(
        {NameObject("/Font"): DictionaryObject({NameObject("/F1"): writer._add_object(font)})}
    )
    page[NameObject("/Contents")] = writer._add_object(content)
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def messages() -> tuple[list[EmailMessage], list[EmailMessage]]:
    """The journal's mail, and the list's posts."""
    alice, carol = "Alice Hartono <alice@example.com>", "Carol <carol@example.com>"
    first = mail(THREAD[0], "Quarterly forecast", alice, USER, "Mon, 02 Feb 2026 09:00:00 +0000",
                 "The quarterly forecast is attached in the shared folder.")  # fmt: skip
    second = mail(THREAD[1], "Re: Quarterly forecast", f"Bob <{USER}>", alice,
                  "Mon, 02 Feb 2026 10:00:00 +0000",
                  "Thanks, the forecast looks right.\n\n> The quarterly forecast is attached.",
                  reply_to=THREAD[0])  # fmt: skip
    third = mail(THREAD[2], "Re: Quarterly forecast", carol, f"{USER}, alice@example.com",
                 "Mon, 02 Feb 2026 11:00:00 +0000", "One question on the forecast's second page.",
                 reply_to=THREAD[1])  # fmt: skip
    files = mail(FILES, "Files for the forecast review", alice, USER,
                 "Tue, 03 Feb 2026 09:00:00 +0000", "A chart, the report and the log.")  # fmt: skip
    files.add_attachment(png(), maintype="image", subtype="png", filename="chart.png")
    files.add_attachment(pdf(), maintype="application", subtype="pdf", filename="report.pdf")
    files.add_attachment("\n".join(LOG_LINES), subtype="plain", filename="nightly.log")
    newsletter = mail(NEWSLETTER, "The long newsletter", alice, USER,
                      "Wed, 04 Feb 2026 09:00:00 +0000", "The text version.")  # fmt: skip
    paragraphs = "".join(f"<p>Paragraph {n} of the newsletter.</p>" for n in range(120))
    newsletter.add_alternative(f"<html><body><h1>News</h1>{paragraphs}</body></html>", "html")
    long = mail(LONG, "Re: " + "forecast-" * 20, f"Group <{LONG_ADDRESS}>",
                f"{USER}, {LONG_ADDRESS}", "Thu, 05 Feb 2026 09:00:00 +0000",
                "A line with a very long word: " + "x" * 300)  # fmt: skip
    posts = [
        mail(f"post{n}@example.com", subject, alice, LIST, date, "A post about the forecast.")
        for n, (subject, date) in enumerate(
            [
                ("Offsite planning", "Thu, 15 Jan 2026 09:00:00 +0000"),
                ("Build times", "Fri, 16 Jan 2026 09:00:00 +0000"),
                ("Release notes", "Tue, 03 Feb 2026 12:00:00 +0000"),
            ]
        )
    ]
    posts.append(mail("post3@example.com", "Re: Release notes", carol, LIST,
                      "Tue, 03 Feb 2026 13:00:00 +0000", "Looks good.",
                      reply_to="post2@example.com"))  # fmt: skip
    return [first, second, third, files, newsletter, long], posts


def fill(service: RunningService) -> None:
    """Give `service` a user, an administrator, a public list and the mail above, and wait
    until it is found."""
    for email, role in ((USER, "user"), (ADMIN, "admin")):
        added = run_arsip(service.settings, "users", "add", email, "--role", role,
                          "--password-stdin", stdin=PASSWORD + "\n")  # fmt: skip
        assert added.returncode == 0, added.stderr
    service.add_list(LIST, ADMIN, ("alice@example.com", "carol@example.com"))
    journal, posts = messages()
    with service.smtp() as client:
        for message in journal:
            client.sendmail("sender@example.net", [JOURNAL], message.as_bytes())
        for post in posts:
            client.sendmail(post["From"].addresses[0].addr_spec, [LIST], post.as_bytes())
    service.wait_until_found("", count=len(journal) + len(posts))
