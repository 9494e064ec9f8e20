"""Journeys through the web UI in headless Chromium, against a running `arsip serve`."""

from __future__ import annotations

import email
import re
from email.policy import default

from tests.browser import screenshot
from tests.support import LIST_DOMAIN, SmarthostSink
from tests.test_lists import OWNER, post, send

LIST = f"dev@{LIST_DOMAIN}"


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
        page.click("button")
        assert "member" in page.inner_text("main")
        screenshot(page, "confirmed")
        assert newcomer in service.run_cli("lists", "members", LIST).stdout
        assert loopback_browser.blocked == []
