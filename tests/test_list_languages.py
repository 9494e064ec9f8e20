"""The mail a list writes, in its language: the list's own setting, else the service's
`ARSIP_DEFAULT_LANGUAGE` (test_web_languages checks that the catalogues are whole)."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

import pytest

from lists import notices
from lists.digests import DigestInfo, plain_digest
from lists.models import MailingList
from tests.support import LIST, LIST_DOMAIN, OWNER, RunningService, SmarthostSink
from tests.test_lists import parsed, post, send

ROOT = Path(__file__).parent.parent
PACKAGES = ("lists", "web")
DAY = datetime(2026, 12, 7, tzinfo=UTC)


@pytest.mark.parametrize("language", ["en", "id"])
def test_every_list_mail_fills_every_placeholder(language: str) -> None:
    mlist = MailingList(name="dev", domain=LIST_DOMAIN, description="Development.")
    mlist.language = language
    mails = [
        notices.confirm_request(mlist, "ann@example.org", "abc", "subscribe", "https://x/c"),
        notices.welcome(mlist, "ann@example.org", "https://x/s"),
        notices.settings_link(mlist, "ann@example.org", "https://x/l", 7),
        notices.goodbye(mlist, "ann@example.org"),
        notices.awaiting_approval(mlist, "ann@example.org"),
        notices.approval_request(mlist, OWNER, "ann@example.org", "abc"),
        notices.held_for_moderation(
            mlist, OWNER, "s@example.net", "Hi", "why", "abc", b"x", "https://x/held"
        ),
        notices.virus_discarded(mlist, OWNER, "", "Hi", "<m@x>", "Eicar-Test-Signature"),
        notices.post_held(mlist, "s@example.net", "Hi", "why"),
        notices.post_rejected(mlist, "s@example.net", "Hi", "why"),
        notices.command_results(mlist, "s@example.net", [notices.help_text(mlist)]),
        notices.delivery_disabled(mlist, "ann@example.org", 5.5),
    ]
    for mail in mails:
        text = str(mail["Subject"]) + mail.get_body().get_content()
        assert "%(" not in text and LIST in text
        assert mail["Content-Language"] == language
    welcome = mails[1].get_body().get_content()
    assert ("Selamat datang" in welcome) == (language == "id")
    info = DigestInfo("dev", LIST, f"dev-request@{LIST_DOMAIN}", 1, 2, DAY, language=language)
    digest = plain_digest(info, [post("ann@example.org", LIST, "Hi")]).get_content()
    assert ("Topik Hari Ini:" in digest) == (language == "id")
    assert "dev Digest, Vol 1, Issue 2" in digest  # Mailman's subject, that filters expect


def test_a_list_writes_in_the_default_language_unless_it_has_its_own(
    make_service, sink: SmarthostSink, database_url: str
) -> None:
    service: RunningService = make_service(
        database_url, ARSIP_SMARTHOST=sink.address, ARSIP_DEFAULT_LANGUAGE="id"
    )
    service.add_list(LIST, OWNER)
    english = f"en@{LIST_DOMAIN}"
    service.add_list(english, OWNER, language="en")
    newcomer = "carol@example.com"
    send(service, newcomer, f"dev-join@{LIST_DOMAIN}", post(newcomer, "x", "join"))
    (request,) = sink.wait_for(newcomer)
    confirmation = parsed(request)
    assert confirmation["Content-Language"] == "id"
    assert "Seseorang, mungkin Anda, meminta untuk bergabung dengan milis" in (
        confirmation.get_body().get_content()
    )
    token = re.search(r"confirm \w+", str(confirmation["Subject"]))  # replies still work
    reply_to = str(confirmation["Reply-To"])
    send(service, newcomer, reply_to, post(newcomer, reply_to, f"Re: {token.group(0)}"))
    answers = [parsed(data) for data in sink.wait_for(newcomer, count=3)]
    assert any(str(m["Subject"]) == f"Selamat datang di {LIST}" for m in answers)
    send(service, newcomer, f"en-join@{LIST_DOMAIN}", post(newcomer, "x", "join"))
    latest = parsed(sink.wait_for(newcomer, count=4)[-1])
    assert latest["Content-Language"] == "en"
    assert "Someone, probably you, asked to join the list" in latest.get_body().get_content()
