"""Arsip behind a real Postfix, configured as the README's "Connecting your mail server"
section says.

Two private Postfix instances run on loopback ports of their own. The front one is the
company's mail server: it holds the `example.com` mailboxes, journals every message with
`recipient_bcc_maps` and `sender_bcc_maps` to Arsip over LMTP, and hands the list domain
to Arsip. The back one is Arsip's smarthost and stands for the outside world: it holds the
members' mailboxes (`example.org`, `example.net`) and routes bounces for the list domain
back to Arsip. Mail is sent through the front one with smtplib and swaks.
"""

from __future__ import annotations

import json
import pwd
import shutil
import smtplib
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from email.message import EmailMessage

import pytest

from tests.reliability import postfix
from tests.reliability.postfix import README_LMTP, Postfix, parse_main_cf, readme_config
from tests.support import LIST_DOMAIN, RunningService, TinyDns, free_ports, signed_verp

JOURNAL_DOMAINS = "archive.example.com=example.com"  # as in the README
LIST = f"dev@{LIST_DOMAIN}"
OWNER = "owner@example.com"
ALICE, BOB, CAROL = "alice@example.com", "bob@example.com", "carol@example.com"
ANN, BEN, GONE = "ann@example.org", "ben@example.net", "gone@example.net"


@dataclass
class Mta:
    arsip: RunningService
    front: Postfix
    back: Postfix


def mailboxes(*addresses: str) -> list[str]:
    """A virtual_mailbox_maps table: each address gets the maildir `domain/local/`."""
    return [f"{a} {a.split('@')[1]}/{a.split('@')[0]}/" for a in addresses]


def virtual_delivery(domains: str) -> dict[str, str]:
    """main.cf lines that give an instance maildirs of its own (test scaffolding, not
    Arsip's concern), delivered as the postfix user."""
    user = pwd.getpwnam("postfix")
    return {
        "virtual_mailbox_domains": domains,
        "virtual_mailbox_maps": "hash:/etc/postfix/mailboxes",
        "virtual_uid_maps": f"static:{user.pw_uid}",
        "virtual_gid_maps": f"static:{user.pw_gid}",
    }


def to_arsip(lines: list[str], arsip: RunningService) -> list[str]:
    """The README's transport lines, pointed at this Arsip's LMTP port."""
    return [line.replace(README_LMTP, f"127.0.0.1:{arsip.lmtp_port}") for line in lines]


@pytest.fixture
def mta(make_service) -> Iterator[Mta]:
    """Arsip between a front and a back Postfix, with the list dev@ (members ANN, BEN)."""
    if reason := postfix.available():
        pytest.skip(reason)
    front_port, back_port = free_ports(2)
    dns = TinyDns({})  # DMARC look-ups stay on loopback: every domain has no policy
    arsip = make_service(
        ARSIP_JOURNAL_DOMAINS=JOURNAL_DOMAINS,
        ARSIP_SMARTHOST=f"127.0.0.1:{back_port}",
        ARSIP_DNS_SERVER=f"127.0.0.1:{dns.port}",
    )
    arsip.run_cli("lists", "create", LIST, "--owner", OWNER, check=True)
    arsip.run_cli("lists", "add-member", LIST, ANN, BEN, "--no-confirm", check=True)

    company = readme_config(
        "Postfix: keep Bcc recipients with `recipient_bcc_maps` and `sender_bcc_maps`",
        "Postfix: mailing-list domains",
    )
    front = Postfix(
        "front",
        front_port,
        {**parse_main_cf(company["main.cf"]), **virtual_delivery("example.com")},
        {
            "archive_bcc": company["/etc/postfix/archive_bcc"],
            "transport": to_arsip(company["/etc/postfix/transport"], arsip),
            "mailboxes": mailboxes(ALICE, BOB, CAROL, OWNER),
        },
    )
    smarthost = readme_config("Postfix: Arsip's smarthost")
    back = Postfix(
        "back",
        back_port,
        {
            **parse_main_cf(smarthost["main.cf"]),
            **virtual_delivery("example.org, example.net"),
            # Like a remote site, take mail for unknown users and bounce it afterwards.
            "smtpd_reject_unlisted_recipient": "no",
        },
        {
            "transport": to_arsip(smarthost["/etc/postfix/transport"], arsip),
            "mailboxes": mailboxes(ANN, BEN),
        },
    )
    try:
        front.start()
        back.start()
        yield Mta(arsip, front, back)
    finally:
        front.stop()
        back.stop()
        dns.close()


def members(arsip: RunningService) -> dict[str, dict]:
    listing = json.loads(arsip.run_cli("lists", "members", LIST, "--json", check=True).stdout)
    return {m["address"]: m for m in listing}


def show(arsip: RunningService, message_id: str) -> dict | None:
    shown = arsip.run_cli("show", message_id, "--json")
    return json.loads(shown.stdout) if shown.returncode == 0 else None


def test_a_journaled_message_is_archived_with_its_bcc_recipients(mta: Mta) -> None:
    message = EmailMessage()
    message["From"] = f"Alice <{ALICE}>"
    message["To"] = BOB
    message["Bcc"] = CAROL
    message["Subject"] = "Quarterly numbers"
    message["Message-ID"] = "<q3-numbers@example.com>"
    message.set_content("Carol, keep this to yourself.\n")
    with smtplib.SMTP("127.0.0.1", mta.front.port, timeout=30) as client:
        client.send_message(message)  # the Bcc header stays behind; carol is in the envelope

    # the mail server delivers as usual, and carol's copy does not name her
    (to_bob,) = mta.front.wait_for(BOB)
    (to_carol,) = mta.front.wait_for(CAROL)
    assert to_carol["Bcc"] is None and to_bob["Bcc"] is None

    deadline = time.monotonic() + 30
    while (archived := show(mta.arsip, "q3-numbers@example.com")) is None or not {
        BOB,
        CAROL,
    } <= set(archived["envelope_recipients"]):
        if time.monotonic() > deadline:
            raise AssertionError(f"{archived}\n{mta.front.log()}\n{mta.arsip.log()}")
        time.sleep(0.2)
    assert archived["envelope_from"] == ALICE
    # the sender's copy (sender_bcc_maps) names the sender too
    assert archived["envelope_recipients"] == [ALICE, BOB, CAROL]
    assert archived["bcc"] == [] and archived["source"] == "lmtp"
    # one message, however many journal copies Postfix made
    assert mta.arsip.wait_until_archived()["messages"] == 1
    assert "to=<carol@archive.example.com>" in mta.front.log()


def test_a_list_post_sent_with_swaks_reaches_every_members_maildir(mta: Mta) -> None:
    if not shutil.which("swaks"):
        pytest.skip("swaks is not installed (make test-mta installs Debian's swaks)")
    sent = subprocess.run(
        [
            "swaks",
            "--server", f"127.0.0.1:{mta.front.port}",
            "--from", ANN,
            "--to", LIST,
            "--header", "Subject: Release plan",
            "--header", "Message-Id: <release-plan@example.org>",
            "--body", "The release is on Friday.",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )  # fmt: skip
    assert sent.returncode == 0, sent.stdout + sent.stderr

    for member in (ANN, BEN):
        (copy,) = mta.back.wait_for(member)
        assert copy["Subject"] == "[dev] Release plan"
        assert copy["List-Id"] == f"dev <dev.{LIST_DOMAIN}>"
        assert copy["List-Post"] == f"<mailto:{LIST}>"
        assert copy["Precedence"] == "list"
        assert f"mailto:dev-leave@{LIST_DOMAIN}" in str(copy["List-Unsubscribe"])
        assert copy["Delivered-To"] == member
        assert copy["Return-Path"] == f"<{signed_verp(mta.arsip, member)}>"  # VERP
        assert "The release is on Friday." in copy.get_body().get_content()


def test_a_bounce_from_the_smarthost_raises_the_members_bounce_score(mta: Mta) -> None:
    mta.arsip.run_cli("lists", "add-member", LIST, GONE, "--no-confirm", check=True)
    post = EmailMessage()
    post["From"] = ANN
    post["To"] = LIST
    post["Subject"] = "Anyone there?"
    post["Message-ID"] = "<anyone-there@example.org>"
    post.set_content("Roll call.\n")
    with smtplib.SMTP("127.0.0.1", mta.front.port, timeout=30) as client:
        client.send_message(post)

    mta.back.wait_for(BEN)
    deadline = time.monotonic() + 45
    while (score := members(mta.arsip)[GONE]["bounce_score"]) < 1:
        if time.monotonic() > deadline:
            raise AssertionError(
                f"no bounce for {GONE}\nback:\n{mta.back.log()}\narsip:\n{mta.arsip.log()}"
            )
        time.sleep(0.3)
    assert score == pytest.approx(1.0, abs=0.01)
    assert members(mta.arsip)[BEN]["bounce_score"] == 0
    # the smarthost took the mail, then bounced it: the score came from its DSN, which
    # went back to the member's VERP address at Arsip
    log = mta.back.log().splitlines()
    assert any(f"to=<{GONE}>" in line and "status=bounced" in line for line in log)
    verp = f"to=<{signed_verp(mta.arsip, GONE)}>"
    assert any(verp in line and "status=sent" in line for line in log)
    assert not mta.back.messages(GONE)
