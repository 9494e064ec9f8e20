"""What a list owner and a forged mail can do to a list, and to everyone else, over SMTP
and HTTP to a running `arsip serve`: owners' patterns cannot stall the service, a form
or a command names exactly one address, a forged From changes nobody's settings and
posts as nobody, and a forged bounce counts against nobody."""

from __future__ import annotations

import base64
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
    OWNER,
    STRANGER,
    RunningService,
    SmarthostSink,
    TinyDns,
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
    ruled = lists_service.run_cli("lists", "header-rule", LIST, "Subject", BACKTRACKER)
    assert ruled.returncode == 0, ruled.stderr
    poster = "a" * 40 + "@example.com"
    send(lists_service, poster, LIST, post(poster, LIST, "Forty a's"))
    send(lists_service, ANN, LIST, post(ANN, LIST, "a" * 40 + "!"))
    # mail of everyone else, behind the posts in the same worker
    with lists_service.smtp() as client:
        client.sendmail("carol@example.com", [JOURNAL], simple_message("after-the-post@x"))
    lists_service.wait_until_archived()
    assert held_senders(lists_service) == [poster]  # decided: not banned, held as a stranger
    (copy,) = sink.wait_for(BOB)  # decided: the header rule did not match, the post went out
    assert parsed(copy)["Subject"] == "[dev] " + "a" * 40 + "!"
    assert lists_service.run_cli("show", "after-the-post@x").returncode == 0


def test_a_pattern_the_service_cannot_run_is_refused_when_saved(
    lists_service: RunningService,
) -> None:
    for command in (("ban", LIST, r"^(a)\1@"), ("header-rule", LIST, "Subject", r"(?=x)")):
        refused = lists_service.run_cli("lists", *command)
        assert refused.returncode == 2
        assert "back-references" in refused.stderr and "Traceback" not in refused.stderr
    shown = json.loads(lists_service.run_cli("lists", "show", LIST, "--json").stdout)
    assert shown["header_rules"] == []
    bans = lists_service.run_cli("lists", "unban", LIST, r"^(a)\1@")
    assert bans.returncode == 1  # it was never saved


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


def test_a_post_in_a_members_name_from_another_envelope_is_held(
    lists_service: RunningService, sink: SmarthostSink
) -> None:
    send(lists_service, STRANGER, LIST, post(ANN, LIST, "Forged in ann's name"))
    send(lists_service, ANN, LIST, post(ANN, LIST, "Really from ann"))
    (copy,) = sink.wait_for(BOB)
    assert parsed(copy)["Subject"] == "[dev] Really from ann"
    assert held_senders(lists_service) == [ANN]
    held = json.loads(lists_service.run_cli("lists", "held", LIST, "--json").stdout)
    assert "envelope sender is another address" in held[0]["reason"]
    assert not any("held" in str(parsed(d)["Subject"]) for _, d in sink.messages_to(ANN))


def test_the_old_header_from_check_is_an_owners_choice(
    lists_service: RunningService, sink: SmarthostSink
) -> None:
    shown = json.loads(lists_service.run_cli("lists", "show", LIST, "--json").stdout)
    assert shown["trust_header_from"] is False
    lists_service.run_cli("lists", "set", LIST, "--trust-header-from", check=True)
    send(lists_service, STRANGER, LIST, post(ANN, LIST, "Header From believed"))
    (copy,) = sink.wait_for(BOB)
    assert parsed(copy)["Subject"] == "[dev] Header From believed"


SIGNED = "dana@signed.example"


def dkim_key() -> tuple[bytes, str]:
    """A new RSA key: the private key for signing, and the DKIM TXT record publishing it."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return private, f"v=DKIM1; k=rsa; p={base64.b64encode(public).decode()}"


def test_a_members_dkim_signed_post_goes_out_whatever_the_envelope(
    make_service, sink: SmarthostSink
) -> None:
    import dkim

    private, record = dkim_key()
    chunks = tuple(record[i : i + 200] for i in range(0, len(record), 200))
    dns = TinyDns({"mail._domainkey.signed.example": [chunks]})
    try:
        service = make_service(
            ARSIP_SMARTHOST=sink.address, ARSIP_DNS_SERVER=f"127.0.0.1:{dns.port}"
        )
        service.run_cli("lists", "create", LIST, "--owner", OWNER, check=True)
        service.run_cli("lists", "add-member", LIST, ANN, SIGNED, "--no-confirm", check=True)
        signed = post(SIGNED, LIST, "Signed by my domain")
        signature = dkim.sign(
            signed,
            b"mail",
            b"signed.example",
            private,
            include_headers=[b"from", b"to", b"subject", b"message-id"],
        )
        # forwarded by a server that rewrites the envelope sender (SRS), as many do
        send(service, "srs0=abc@forwarder.example", LIST, signature + signed)
        # the same signature on a post whose subject was changed on the way holds nothing
        forged = post(SIGNED, LIST, "Changed on the way")
        send(service, "srs0=abc@forwarder.example", LIST, signature + forged)
        (copy,) = sink.wait_for(ANN)
        assert parsed(copy)["Subject"] == "[dev] Signed by my domain"
        service.wait_until_archived()  # the changed post too, which the members never see
        assert held_senders(service) == [SIGNED]
        assert dns.queries["mail._domainkey.signed.example"] >= 1
    finally:
        dns.close()


def bounce_report(recipient: str, message_id: str, to: str) -> bytes:
    """An RFC 3464 report that `recipient` did not get `message_id`, returning its headers."""
    return (
        "From: MAILER-DAEMON@mx.example.net\r\n"
        f"To: {to}\r\n"
        "Subject: Undelivered Mail Returned to Sender\r\n"
        "MIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="b"\r\n\r\n'
        "--b\r\nContent-Type: text/plain\r\n\r\nThe mail could not be delivered.\r\n"
        "--b\r\nContent-Type: message/delivery-status\r\n\r\n"
        "Reporting-MTA: dns; mx.example.net\r\n\r\n"
        f"Final-Recipient: rfc822; {recipient}\r\nAction: failed\r\nStatus: 5.1.1\r\n"
        "Diagnostic-Code: smtp; 550 5.1.1 User unknown\r\n\r\n"
        "--b\r\nContent-Type: text/rfc822-headers\r\n\r\n"
        f"From: {ANN}\r\nTo: {LIST}\r\nSubject: [dev] Hello\r\nMessage-ID: <{message_id}>\r\n"
        "--b--\r\n"
    ).encode()


def bounce_score(service: RunningService, address: str) -> float:
    members = json.loads(service.run_cli("lists", "members", LIST, "--json").stdout)
    return next(m for m in members if m["address"] == address)["bounce_score"]


def test_a_forged_bounce_scores_nothing_against_a_member(
    lists_service: RunningService, sink: SmarthostSink
) -> None:
    unsigned_verp = f"dev-bounces+bob=example.net@{LIST_DOMAIN}"
    plain = f"dev-bounces@{LIST_DOMAIN}"
    with lists_service.smtp() as client:
        # to the address the issue names, with a report a forger can write
        client.sendmail("", [unsigned_verp], bounce_report(BOB, "never-sent@example.org", plain))
        # to the plain bounce address, about a message the list never sent
        client.sendmail("", [plain], bounce_report(BOB, "never-sent@example.org", plain))
        # prose naming bob, to a VERP address with a made-up signature
        forged_signature = f"dev-bounces+abcdefghijklm.bob=example.net@{LIST_DOMAIN}"
        client.sendmail("", [forged_signature], b"Subject: failure\r\n\r\nbob@example.net: 550\r\n")
    lists_service.wait_until_archived()
    assert bounce_score(lists_service, BOB) == 0


def test_a_report_about_a_post_the_list_sent_counts_without_a_signature(
    lists_service: RunningService, sink: SmarthostSink
) -> None:
    """Mail sent before VERP addresses were signed bounces to the unsigned address or the
    plain bounce address: a report about a post the outbox did send still counts."""

    data = post(ANN, LIST, "Hello")
    message_id = parsed(data)["Message-ID"].strip("<>")
    send(lists_service, ANN, LIST, data)
    sink.wait_for(BOB)
    lists_service.wait_until_sent()
    unsigned_verp = f"dev-bounces+bob=example.net@{LIST_DOMAIN}"
    with lists_service.smtp() as client:
        client.sendmail("", [unsigned_verp], bounce_report(BOB, message_id, unsigned_verp))
    lists_service.wait_until_archived()
    assert bounce_score(lists_service, BOB) == 1.0
    assert bounce_score(lists_service, ANN) == 0
