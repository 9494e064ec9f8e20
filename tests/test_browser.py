"""Journeys through the web UI in headless Chromium, against a running `arsip serve`."""

from __future__ import annotations

import email
import os
import re
import subprocess
from datetime import UTC, datetime
from email.policy import default

from archiver.mailfiles import mbox_entry
from tests.browser import screenshot
from tests.support import ARSIP, JOURNAL, LIST_DOMAIN, ROOT, RunningService, SmarthostSink
from tests.test_lists import OWNER, post, send

LIST = f"dev@{LIST_DOMAIN}"

# The reply in the results: the subject of its conversation, or its sender among the
# conversation's other matches.
REPLY_IN_RESULTS = (
    'ol.results a:text-is("Re: Quarterly forecast"), ol.results .also a:text-is("Bob")'
)


def test_joining_a_list_through_the_link_in_the_confirmation_mail(
    make_service, loopback_browser
) -> None:
    with SmarthostSink() as sink:
        service = make_service(ARSIP_SMARTHOST=sink.address)
        service.run_cli("lists", "create", LIST, "--owner", OWNER, check=True)
        newcomer = "erin@example.com"
        send(service, newcomer, f"dev-join@{LIST_DOMAIN}", post(newcomer, "x", "join"))
        (mail,) = sink.wait_for(newcomer)
        body = email.message_from_bytes(mail, policy=default).get_body().get_content()
        link = re.search(r"http://127\.0\.0\.1:\d+/lists/confirm/\w+", body).group(0)  # type: ignore[union-attr]

        page = loopback_browser.page()
        page.goto(link)
        assert "joins" in page.inner_text("main") and LIST in page.inner_text("main")
        screenshot(page, "confirm-subscription")
        assert newcomer not in service.run_cli("lists", "members", LIST).stdout  # not on GET
        page.click("main button")
        assert "member" in page.inner_text("main")
        screenshot(page, "confirmed")
        assert newcomer in service.run_cli("lists", "members", LIST).stdout
        assert loopback_browser.blocked == []


HOSTILE = (
    "From: Mallory <mallory@example.net>\r\nTo: alice@example.com\r\n"
    "Subject: Invoice with surprises\r\nDate: Tue, 03 Feb 2026 09:00:00 +0000\r\n"
    "Message-ID: <hostile@example.net>\r\nMIME-Version: 1.0\r\n"
    "Content-Type: text/html; charset=utf-8\r\n\r\n"
    "<html><body><p>Dear customer, your invoice.</p>"
    "<script>parent.__pwned = 1; document.title = 'pwned';</script>"
    '<img src=x onerror="parent.__pwned = 2">'
    '<img src="https://tracker.example/pixel.png">'
    '<a href="javascript:parent.__pwned=3">pay</a>'
    "<style>body { background: url(https://tracker.example/bg.png) }</style>"
    "</body></html>\r\n"
)


def thread_of_two() -> list[bytes]:
    first = (
        "From: Alice <alice@example.com>\r\nTo: bob@example.com\r\n"
        "Subject: Quarterly forecast\r\nDate: Mon, 02 Feb 2026 10:00:00 +0000\r\n"
        "Message-ID: <forecast1@example.com>\r\n\r\nThe quarterly forecast looks good.\r\n"
    )
    reply = (
        "From: Bob <bob@example.com>\r\nTo: alice@example.com\r\n"
        "Subject: Re: Quarterly forecast\r\nDate: Mon, 02 Feb 2026 11:00:00 +0000\r\n"
        "Message-ID: <forecast2@example.com>\r\nIn-Reply-To: <forecast1@example.com>\r\n\r\n"
        "Agreed.\r\n\r\n> The quarterly forecast looks good.\r\n"
    )
    return [first.encode(), reply.encode()]


def test_log_in_search_open_a_message_and_its_thread_and_hostile_mail_stays_inert(
    make_service, loopback_browser
) -> None:
    service = make_service()
    password = "correct horse battery staple"
    added = subprocess_input(service, ["users", "add", "alice@example.com"], password)
    assert added.returncode == 0, added.stderr
    with service.smtp() as client:
        for data in [*thread_of_two(), HOSTILE.encode()]:
            client.sendmail("sender@example.net", [JOURNAL], data)
    service.wait_until_found("", count=3)

    base = f"http://127.0.0.1:{service.settings.web_port}"
    page = loopback_browser.page()
    page.goto(f"{base}/login")
    page.fill("input[name=email]", "alice@example.com")
    page.fill("input[name=password]", password)
    page.click("main button[type=submit]")
    page.fill("header input[name=q]", '"quarterly forecast"')
    page.click("header button[type=submit]")
    assert "2 messages" in page.inner_text("main")
    screenshot(page, "search")
    # The two messages are one conversation: the reply is its entry or one of its
    # other matches, whichever ranks first.
    page.locator(REPLY_IN_RESULTS).first.click()
    assert "Agreed." in page.inner_text("main")
    screenshot(page, "message")
    page.click('main a:text-is("Thread")')
    tree = page.inner_text("main")
    assert tree.index("The quarterly forecast looks good") < tree.index("Agreed.")
    screenshot(page, "thread")

    page.goto(f"{base}/messages/hostile@example.net")
    page.wait_for_load_state("networkidle")
    frame = page.frame(name="html-body")
    assert frame is not None and "your invoice" in frame.inner_text("body")
    for link in frame.query_selector_all("a"):
        link.click(no_wait_after=True, timeout=2000)
    assert page.evaluate("() => window.__pwned === undefined")
    assert frame.evaluate("() => document.title") != "pwned"
    assert loopback_browser.blocked == []  # not even an attempt to reach the tracker
    screenshot(page, "hostile-message")


def subprocess_input(service: RunningService, args: list[str], text: str):
    """Run `arsip ARGS --password-stdin` for this service with `text` as the password."""
    return subprocess.run(
        [ARSIP, *args, "--password-stdin"],
        env={**os.environ, **service.env},
        cwd=ROOT,
        input=text + "\n",
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_a_moderator_approves_a_held_post_in_the_browser_and_members_get_it(
    make_service, loopback_browser
) -> None:
    with SmarthostSink() as sink:
        service = make_service(ARSIP_SMARTHOST=sink.address)
        password = "owner passphrase of some length"
        assert subprocess_input(service, ["users", "add", OWNER], password).returncode == 0
        service.run_cli("lists", "create", LIST, "--owner", OWNER, check=True)
        service.run_cli("lists", "add-member", LIST, "ann@example.org", "--no-confirm", check=True)
        stranger = "stranger@example.net"
        send(service, stranger, LIST, post(stranger, LIST, "Conference next week"))
        sink.wait_for(OWNER)  # the moderation notice

        base = f"http://127.0.0.1:{service.settings.web_port}"
        page = loopback_browser.page()
        page.goto(f"{base}/lists/{LIST}/held")
        page.fill("input[name=email]", OWNER)  # sent to log in first, and back afterwards
        page.fill("input[name=password]", password)
        page.click("main button[type=submit]")
        assert "Conference next week" in page.inner_text("main")
        screenshot(page, "held-posts")
        page.click("main button[value=approve]")
        assert "approved" in page.inner_text("main")
        (delivered,) = sink.wait_for("ann@example.org")
        subject = email.message_from_bytes(delivered, policy=default)["Subject"]
        assert subject == "[dev] Conference next week"
        assert loopback_browser.blocked == []


def test_an_administrator_adds_a_retention_policy_and_previews_a_sweep(
    make_service, loopback_browser
) -> None:
    service = make_service()
    password = "administrator passphrase"
    added = subprocess_input(
        service, ["users", "add", "root@example.org", "--role", "admin"], password
    )
    assert added.returncode == 0, added.stderr
    old = (
        "From: alice@example.com\r\nTo: bob@example.com\r\nSubject: Old news\r\n"
        "Date: Mon, 02 Feb 2015 10:00:00 +0000\r\nMessage-ID: <old-news@example.com>\r\n\r\n"
        "Long ago.\r\n"
    )
    # Imported, so retention counts from its Date: (mail received now counts from now).
    mbox = service.settings.data_dir.parent / "old.mbox"
    sent = datetime(2015, 2, 2, tzinfo=UTC)
    mbox.write_bytes(mbox_entry(old.encode(), "alice@example.com", sent))
    service.run_cli("import", str(mbox), check=True)
    service.wait_until_found("")

    base = f"http://127.0.0.1:{service.settings.web_port}"
    page = loopback_browser.page()
    page.goto(f"{base}/admin/retention")
    page.fill("input[name=email]", "root@example.org")  # sent to log in first
    page.fill("input[name=password]", password)
    page.click("main button[type=submit]")
    page.fill("main input[name=name]", "everything")
    page.fill("main input[name=keep]", "7y")
    page.click("main >> text=Add policy")
    assert "Policy everything: keep everything for 7y." in page.inner_text("main")
    page.click("main >> text=Preview (dry run)")
    assert "A sweep now would delete 1 message" in page.inner_text("#preview")
    screenshot(page, "retention-preview")
    assert "old-news@example.com" in service.run_cli("search", "--json", "").stdout
    assert loopback_browser.blocked == []
