"""What a list owner and a forged mail can do to a list, and to everyone else, over SMTP
and HTTP to a running `arsip serve`: owners' patterns cannot stall the service, a form
or a command names exactly one address, a forged From changes nobody's settings and
posts as nobody, and a forged bounce counts against nobody."""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.parse
import urllib.request

import pytest
from sqlalchemy import select, update

from tests.support import (
    ANN,
    BOB,
    JOURNAL,
    LIST,
    LIST_DOMAIN,
    STRANGER,
    RunningService,
    SmarthostSink,
    simple_message,
)
from tests.test_lists import parsed, post, send

BACKTRACKER = "^(a+)+$"  # catastrophic for a backtracking engine on "aaa...a@..."


def held_senders(service: RunningService) -> list[str]:
    return [
        h["sender"] for h in json.loads(service.run_cli("lists", "held", LIST, "--json").stdout)
    ]


def test_an_owners_catastrophic_ban_pattern_stalls_nobody(
    lists_service: RunningService, sink: SmarthostSink
) -> None:
    banned = lists_service.run_cli("lists", "ban", LIST, BACKTRACKER)
    assert banned.returncode == 0, banned.stderr
    poster = "a" * 40 + "@example.com"
    send(lists_service, poster, LIST, post(poster, LIST, "Forty a's"))
    # mail of everyone else, behind the post in the same worker
    with lists_service.smtp() as client:
        client.sendmail("carol@example.com", [JOURNAL], simple_message("after-the-post@x"))
    lists_service.wait_until_archived()
    assert held_senders(lists_service) == [poster]  # decided: not banned, held as a stranger
    assert lists_service.run_cli("show", "after-the-post@x").returncode == 0


def test_a_pattern_the_service_cannot_run_is_refused_when_saved(
    lists_service: RunningService,
) -> None:
    refused = lists_service.run_cli("lists", "ban", LIST, r"^(a)\1@")
    assert refused.returncode == 2
    assert "back-references" in refused.stderr and "Traceback" not in refused.stderr
    shown = json.loads(lists_service.run_cli("lists", "show", LIST, "--json").stdout)
    assert shown["address"] == LIST


def test_a_stored_pattern_the_service_cannot_run_matches_nothing(
    lists_service: RunningService, sink: SmarthostSink
) -> None:
    from lists.models import Ban, MailingList

    with lists_service.core().sessions.begin() as session:  # written before the check existed
        session.add(Ban(list_id=None, pattern=r"^(a)\1"))
        session.execute(
            update(MailingList).values(
                header_matches=[{"header": "Subject", "pattern": r"(?<=x)y", "action": "discard"}]
            )
        )
    send(lists_service, ANN, LIST, post(ANN, LIST, "xy marks the spot"))
    (copy,) = sink.wait_for(ANN)
    assert parsed(copy)["Subject"] == "[dev] xy marks the spot"
    assert "is not supported and matches nothing" in lists_service.log_path.read_text()


class Browser:
    """A visitor's browser on the service's web port, keeping the session cookie (by hand:
    the service marks it Secure, for the https address links in mail carry)."""

    def __init__(self, service: RunningService) -> None:
        self.base = f"http://127.0.0.1:{service.settings.web_port}"
        self.cookies: dict[str, str] = {}

    def _open(self, path: str, data: bytes | None = None) -> tuple[int, str]:
        request = urllib.request.Request(f"{self.base}{path}", data)
        if self.cookies:
            request.add_header("Cookie", "; ".join(f"{k}={v}" for k, v in self.cookies.items()))
        opener = urllib.request.build_opener(NoRedirects())
        try:
            response = opener.open(request, timeout=30)
        except urllib.error.HTTPError as error:
            response = error
        with response:
            for header in response.headers.get_all("Set-Cookie") or []:
                name, _, value = header.split(";", 1)[0].partition("=")
                self.cookies[name.strip()] = value.strip()
            return response.status, response.read().decode()

    def get(self, path: str) -> str:
        return self._open(path)[1]

    def post(self, path: str, form: dict[str, str]) -> tuple[int, str]:
        return self._open(path, urllib.parse.urlencode(form).encode())


class NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None


def pending_requests(service: RunningService) -> list[tuple[str, str]]:
    from lists.models import Pending

    with service.core().sessions() as session:
        return [(p.address, p.action) for p in session.scalars(select(Pending))]


@pytest.mark.parametrize(
    "entered",
    [
        "victim@example.com, me@example.net",
        "victim@example.com\r\nBcc: me@example.net",
        "Victim <victim@example.com>",
    ],
)
def test_the_subscribe_form_takes_exactly_one_address(
    lists_service: RunningService, sink: SmarthostSink, entered: str
) -> None:
    browser = Browser(lists_service)
    page = browser.get(f"/lists/{LIST}/")
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)  # type: ignore[union-attr]
    for form in ("subscribe", "unsubscribe-request"):
        status, answer = browser.post(
            f"/lists/{LIST}/{form}", {"csrf_token": token, "email": entered}
        )
        assert status == 400, answer
        assert "Nothing was sent" in answer
    # one address is still welcome
    status, _ = browser.post(
        f"/lists/{LIST}/subscribe", {"csrf_token": token, "email": "victim@example.com"}
    )
    assert status == 303
    assert pending_requests(lists_service) == [("victim@example.com", "subscribe")]
    sink.wait_for("victim@example.com")
    assert sink.messages_to("me@example.net") == []


def test_a_mailed_command_from_several_addresses_does_nothing(
    lists_service: RunningService, sink: SmarthostSink
) -> None:
    join = f"dev-join@{LIST_DOMAIN}"
    send(lists_service, STRANGER, join, post(f"victim@example.com, {STRANGER}", join, "join"))
    lists_service.wait_until_archived()
    assert pending_requests(lists_service) == []
    assert sink.received == []


def delivery_of(service: RunningService, address: str) -> str:
    members = json.loads(service.run_cli("lists", "members", LIST, "--json").stdout)
    return next(m for m in members if m["address"] == address)["delivery"]


def test_a_forged_set_command_changes_nothing_until_the_member_confirms(
    lists_service: RunningService, sink: SmarthostSink
) -> None:
    request = f"dev-request@{LIST_DOMAIN}"
    # the attacker's own envelope, the member's From
    send(lists_service, STRANGER, request, post(BOB, request, "set nomail on"))
    asking = [parsed(d) for d in sink.wait_for(BOB, count=2)]
    assert delivery_of(lists_service, BOB) == "regular"
    assert sink.messages_to(STRANGER) == []
    (confirmation,) = [m for m in asking if str(m["Subject"]).startswith("confirm ")]
    assert "set nomail on" in confirmation.get_body().get_content()
    # only bob's own reply (he has the token) applies it
    reply_to = str(confirmation["Reply-To"])
    send(lists_service, BOB, reply_to, post(BOB, reply_to, f"Re: {confirmation['Subject']}"))
    sink.wait_for(BOB, count=3)
    assert delivery_of(lists_service, BOB) == "nomail"


def test_leaving_by_a_forged_mail_needs_the_members_confirmation(
    lists_service: RunningService, sink: SmarthostSink
) -> None:
    request = f"dev-request@{LIST_DOMAIN}"
    send(lists_service, STRANGER, request, post(BOB, request, "unsubscribe"))
    sink.wait_for(BOB, count=2)
    assert delivery_of(lists_service, BOB) == "regular"
    assert sink.messages_to(STRANGER) == []
