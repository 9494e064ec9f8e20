"""Mailing lists, told as their members and owners live them: over SMTP to a running
`arsip serve`, with an aiosmtpd sink on loopback standing in for the smarthost."""

from __future__ import annotations

import email
import functools
import json
import re
import smtplib
import time
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.policy import default

import pytest
from sqlalchemy import update

from tests.support import (
    ANN,
    BOB,
    LIST,
    LIST_DOMAIN,
    OWNER,
    STRANGER,
    RunningService,
    SmarthostSink,
    eventually,
    signed_verp,
)


def post(sender: str, to: str, subject: str, body: str = "Hello list.\n", **headers: str) -> bytes:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = to
    message["Subject"] = subject
    message["Message-ID"] = f"<{time.monotonic_ns()}@example.org>"
    for name, value in headers.items():
        message[name.replace("_", "-")] = value
    message.set_content(body)
    return message.as_bytes()


def send(service: RunningService, sender: str, to: str, data: bytes) -> None:
    with service.smtp() as client:
        client.sendmail(sender, [to], data)


def parsed(data: bytes) -> EmailMessage:
    return email.message_from_bytes(data, policy=default)  # type: ignore[return-value]


def set_by_mail(service: RunningService, sink: SmarthostSink, member: str, command: str) -> str:
    """Mail `command` (`set digest mime`) to the list's -request address from `member`, and
    confirm it from the member's address as the confirmation request asks; returns the
    answer to the confirmation, once all three mails (the command's answer, the request,
    that answer) have arrived."""
    request = f"dev-request@{LIST_DOMAIN}"
    before = len(sink.messages_to(member))
    send(service, member, request, post(member, request, command))
    arrived = [parsed(d) for d in sink.wait_for(member, count=before + 2)[before:]]
    (asking,) = [m for m in arrived if str(m["Subject"]).startswith("confirm ")]
    assert command in asking.get_body().get_content()
    reply_to = str(asking["Reply-To"])
    send(service, member, reply_to, post(member, reply_to, f"Re: {asking['Subject']}"))
    answer = parsed(sink.wait_for(member, count=before + 3)[-1])
    return answer.get_body().get_content()


def test_member_post_reaches_every_member_with_list_headers(
    lists_service: RunningService, sink: SmarthostSink
) -> None:
    send(lists_service, ANN, LIST, post(ANN, LIST, "Release plan"))
    for member in (ANN, BOB):
        (data,) = sink.wait_for(member)
        message = parsed(data)
        assert message["Subject"] == "[dev] Release plan"
        assert message["List-Id"] == f"dev <dev.{LIST_DOMAIN}>"
        assert message["List-Post"] == f"<mailto:{LIST}>"
        assert message["Precedence"] == "list"
        unsubscribe = str(message["List-Unsubscribe"])
        assert unsubscribe.startswith("<https://lists.test/lists/")
        assert f"mailto:dev-leave@{LIST_DOMAIN}" in unsubscribe
        assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        assert "To unsubscribe send an email to" in message.get_body().get_content()
    senders = {s for s, _ in sink.messages_to(BOB)}
    assert senders == {signed_verp(lists_service, BOB)}  # VERP, signed for bob
    # and the post is in the archive, as the members got it
    found = lists_service.wait_until_found("list:dev.lists.example.com")
    assert found["results"][0]["subject"] == "[dev] Release plan"


def test_a_reply_keeps_a_single_prefix(lists_service: RunningService, sink: SmarthostSink) -> None:
    send(lists_service, BOB, LIST, post(BOB, LIST, "Re: [dev] Release plan"))
    (data,) = sink.wait_for(ANN)
    assert parsed(data)["Subject"] == "Re: [dev] Release plan"


def test_subscription_needs_the_confirmation_of_the_address_itself(
    lists_service: RunningService, sink: SmarthostSink
) -> None:
    newcomer = "carol@example.com"
    send(lists_service, newcomer, f"dev-join@{LIST_DOMAIN}", post(newcomer, "x", "join"))
    (request,) = sink.wait_for(newcomer)
    confirmation = parsed(request)
    reply_to = str(confirmation["Reply-To"])
    token = re.search(r"dev-confirm\+([0-9a-f]+)@", reply_to).group(1)  # type: ignore[union-attr]
    assert token in confirmation["Subject"]
    assert "https://lists.test/lists/confirm/" in confirmation.get_body().get_content()
    # someone else replying does not subscribe carol
    send(lists_service, STRANGER, reply_to, post(STRANGER, reply_to, f"Re: confirm {token}"))
    sink.wait_for(STRANGER)
    assert newcomer not in lists_service.run_cli("lists", "members", LIST).stdout
    # carol's own reply does
    send(lists_service, newcomer, reply_to, post(newcomer, reply_to, f"Re: confirm {token}"))
    welcome = sink.wait_for(newcomer, count=3)
    assert any("Welcome to" in parsed(d)["Subject"] for d in welcome)
    members = json.loads(lists_service.run_cli("lists", "members", LIST, "--json").stdout)
    assert {"address": newcomer, "role": "member"}.items() <= next(
        m for m in members if m["address"] == newcomer
    ).items()
    # the token is single-use
    send(lists_service, newcomer, reply_to, post(newcomer, reply_to, f"Re: confirm {token}"))
    again = sink.wait_for(newcomer, count=4)
    assert "unknown or has expired" in parsed(again[-1]).get_body().get_content()


def test_a_strangers_post_is_held_until_a_moderator_approves_it_by_reply(
    lists_service: RunningService, sink: SmarthostSink
) -> None:
    send(lists_service, STRANGER, LIST, post(STRANGER, LIST, "Buy now"))
    (notice_data,) = sink.wait_for(OWNER)
    notice = parsed(notice_data)
    assert "requires approval" in notice["Subject"]
    assert "not a member" in notice.get_body().get_content()
    # the moderators can read it on the web before they decide
    assert f"https://lists.test/lists/{LIST}/held" in notice.get_body().get_content()
    held = json.loads(lists_service.run_cli("lists", "held", LIST, "--json").stdout)
    assert [h["sender"] for h in held] == [STRANGER]
    assert not sink.messages_to(ANN)
    reply_to = str(notice["Reply-To"])
    # a non-moderator's "approve" does nothing
    send(lists_service, BOB, reply_to, post(BOB, reply_to, "Re: held", "approve\n"))
    # the owner's does
    send(lists_service, OWNER, reply_to, post(OWNER, reply_to, "Re: held", "approve\n"))
    (data,) = sink.wait_for(ANN)
    assert parsed(data)["Subject"] == "[dev] Buy now"
    assert json.loads(lists_service.run_cli("lists", "held", LIST, "--json").stdout) == []


def test_an_unknown_address_in_a_list_domain_is_refused_at_rcpt(
    shared_lists_service: RunningService,
) -> None:
    with shared_lists_service.smtp() as client:
        client.ehlo()
        client.mail(ANN)
        assert client.rcpt(f"nobody@{LIST_DOMAIN}")[0] == 550
        code, text = client.rcpt(f"dev-nonsense@{LIST_DOMAIN}")
        assert code == 550 and b"5.1.1" in text
        assert client.rcpt(f"dev-request@{LIST_DOMAIN}")[0] == 250
        assert client.rcpt(LIST)[0] == 250


def test_the_cli_reports_bad_input_in_one_line(shared_lists_service: RunningService) -> None:
    # As processes of their own: the list commands' one real run of the console script.
    run = functools.partial(shared_lists_service.run_cli, process=True)
    missing = run("lists", "show", f"nope@{LIST_DOMAIN}")
    assert missing.returncode == 1 and "no list" in missing.stderr
    bad = run("lists", "create", "not an address")
    assert bad.returncode == 2
    twice = run("lists", "create", LIST)
    assert twice.returncode == 1 and "exists already" in twice.stderr


def test_refused_members_count_as_bounces(
    lists_service: RunningService, sink: SmarthostSink
) -> None:
    gone = "gone@refused.test"
    lists_service.run_cli("lists", "add-member", LIST, gone, "--no-confirm", check=True)
    send(lists_service, ANN, LIST, post(ANN, LIST, "Anyone there?"))
    sink.wait_for(BOB)

    def score() -> float:
        members = json.loads(lists_service.run_cli("lists", "members", LIST, "--json").stdout)
        return next(m for m in members if m["address"] == gone)["bounce_score"]

    eventually(lambda: score() >= 1, what=lambda: f"the refusal to count: {score()}")
    assert score() == pytest.approx(1.0, abs=0.01)


def test_smtplib_sees_list_addresses_as_local(shared_lists_service: RunningService) -> None:
    with pytest.raises(smtplib.SMTPRecipientsRefused):
        send(shared_lists_service, ANN, "someone@elsewhere.example", post(ANN, "x", "relay?"))


def test_leaving_by_mail_needs_confirmation_too(
    lists_service: RunningService, sink: SmarthostSink
) -> None:
    send(lists_service, BOB, f"dev-leave@{LIST_DOMAIN}", post(BOB, "x", "bye"))
    (request,) = sink.wait_for(BOB)
    reply_to = str(parsed(request)["Reply-To"])
    assert BOB in lists_service.run_cli("lists", "members", LIST).stdout
    send(lists_service, BOB, reply_to, post(BOB, reply_to, "Re: confirm"))
    goodbye = sink.wait_for(BOB, count=3)
    assert any("You have left" in parsed(d)["Subject"] for d in goodbye)
    assert BOB not in lists_service.run_cli("lists", "members", LIST).stdout


def test_confirmation_mail_to_one_address_is_rate_limited(
    lists_service: RunningService, sink: SmarthostSink
) -> None:
    victim = "victim@example.com"
    for _ in range(5):
        send(lists_service, victim, f"dev-join@{LIST_DOMAIN}", post(victim, "x", "join"))
    lists_service.wait_until_archived()
    lists_service.wait_until_sent()
    assert len(sink.messages_to(victim)) == 3


def test_announce_lists_take_posts_from_owners_only(make_service, sink: SmarthostSink) -> None:
    service = make_service(ARSIP_SMARTHOST=sink.address)
    news = f"news@{LIST_DOMAIN}"
    service.run_cli("lists", "create", news, "--posting", "announce", "--owner", OWNER, check=True)
    service.run_cli("lists", "add-member", news, ANN, "--no-confirm", check=True)
    send(service, ANN, news, post(ANN, news, "From a member"))
    send(service, OWNER, news, post(OWNER, news, "From the owner"))
    messages = [parsed(d)["Subject"] for d in sink.wait_for(ANN, count=2)]
    assert "[news] From the owner" in messages
    assert "[news] From a member" not in messages
    held = json.loads(service.run_cli("lists", "held", news, "--json").stdout)
    assert [h["sender"] for h in held] == [ANN]


def test_a_post_that_is_a_command_is_held(
    lists_service: RunningService, sink: SmarthostSink
) -> None:
    send(lists_service, ANN, LIST, post(ANN, LIST, "unsubscribe", "unsubscribe\n"))
    sink.wait_for(OWNER)
    held = json.loads(lists_service.run_cli("lists", "held", LIST, "--json").stdout)
    assert held and "request" in held[0]["reason"]


def test_every_member_gets_the_post_after_a_smarthost_outage(make_service) -> None:
    from sqlalchemy import update

    from lists.models import OutboxRecipient

    sink = SmarthostSink()  # not started yet: the smarthost is down
    service = make_service(ARSIP_SMARTHOST=sink.address)
    service.run_cli("lists", "create", LIST, "--owner", OWNER, check=True)
    service.run_cli("lists", "add-member", LIST, ANN, BOB, "--no-confirm", check=True)
    send(service, ANN, LIST, post(ANN, LIST, "During the outage"))
    core = service.core()

    def tried() -> int:
        with core.sessions() as session:
            return session.query(OutboxRecipient).filter(OutboxRecipient.attempts > 0).count()

    eventually(lambda: tried() >= 2, what=lambda: f"both copies to be tried: {service.log()}")
    with sink:
        with core.sessions.begin() as session:  # let the retry time come at once
            session.execute(update(OutboxRecipient).values(next_attempt_at=datetime.now(UTC)))
        for member in (ANN, BOB):
            (data,) = sink.wait_for(member)
            assert parsed(data)["Subject"] == "[dev] During the outage"


def test_a_digest_member_gets_a_digest_instead_of_each_post(
    lists_service: RunningService, sink: SmarthostSink
) -> None:
    assert "plain_digest" in set_by_mail(lists_service, sink, BOB, "set digest plain")
    long_text = "All the details of the plan follow.\n" + "word " * 7000 + "\n"  # past 30 KB
    send(lists_service, ANN, LIST, post(ANN, LIST, "Long plan", long_text))
    sink.wait_for(ANN)
    (digest,) = sink.wait_for(BOB, count=4)[3:]
    message = parsed(digest)
    assert message["Subject"] == "dev Digest, Vol 1, Issue 1"
    assert "Long plan" in message.get_body().get_content()


def test_dmarc_strict_senders_are_rewritten_to_the_list(make_service, sink) -> None:
    from tests.support import TinyDns

    dns = TinyDns({"_dmarc.strict.example": ["v=DMARC1; p=reject"]})
    try:
        service = make_service(
            ARSIP_SMARTHOST=sink.address, ARSIP_DNS_SERVER=f"127.0.0.1:{dns.port}"
        )
        service.run_cli(
            "lists", "create", LIST, "--owner", OWNER, "--nonmember", "accept", check=True
        )
        service.run_cli("lists", "add-member", LIST, ANN, "--no-confirm", check=True)
        strict = "Dana <dana@strict.example>"
        send(service, "dana@strict.example", LIST, post(strict, LIST, "Strict"))
        send(service, BOB, LIST, post(BOB, LIST, "Relaxed"))
        received = {parsed(d)["Subject"]: parsed(d) for d in sink.wait_for(ANN, count=2)}
        rewritten = received["[dev] Strict"]
        assert rewritten["From"].addresses[0].addr_spec == LIST
        assert "Dana" in str(rewritten["From"])
        assert rewritten["Reply-To"].addresses[0].addr_spec == "dana@strict.example"
        assert received["[dev] Relaxed"]["From"].addresses[0].addr_spec == BOB
    finally:
        dns.close()


def test_list_archives_are_readable_by_everyone_or_only_members(
    make_service, sink: SmarthostSink
) -> None:
    service = make_service(ARSIP_SMARTHOST=sink.address)
    secret = f"board@{LIST_DOMAIN}"
    service.run_cli("lists", "create", LIST, "--owner", OWNER, check=True)
    service.run_cli("lists", "create", secret, "--archive", "private", "--owner", OWNER, check=True)
    for address in (LIST, secret):
        service.run_cli("lists", "add-member", address, ANN, "--no-confirm", check=True)
    send(service, OWNER, LIST, post(OWNER, LIST, "Open zebra news"))
    send(service, OWNER, secret, post(OWNER, secret, "Closed zebra news"))
    sink.wait_for(ANN, count=2)
    service.wait_until_found("subject:closed")

    def subjects(who: str) -> list[str]:
        found = json.loads(service.run_cli("search", "--json", "--as", who, "zebra").stdout)
        return sorted(r["subject"] for r in found["results"])

    assert subjects(ANN) == ["[board] Closed zebra news", "[dev] Open zebra news"]
    assert subjects("outsider@example.com") == ["[dev] Open zebra news"]


def test_a_moderated_list_needs_an_owner_after_the_confirmation(
    make_service, sink: SmarthostSink
) -> None:
    service = make_service(ARSIP_SMARTHOST=sink.address)
    club = f"club@{LIST_DOMAIN}"
    service.run_cli(
        "lists", "create", club, "--subscription", "moderate", "--owner", OWNER, check=True
    )
    newcomer = "dora@example.com"
    send(service, newcomer, f"club-join@{LIST_DOMAIN}", post(newcomer, "x", "join"))
    reply_to = str(parsed(sink.wait_for(newcomer)[0])["Reply-To"])
    send(service, newcomer, reply_to, post(newcomer, reply_to, "Re: confirm"))
    approval = parsed(sink.wait_for(OWNER)[0])
    assert newcomer in approval["Subject"]
    assert newcomer not in service.run_cli("lists", "members", club).stdout
    owner_reply = str(approval["Reply-To"])
    send(service, OWNER, owner_reply, post(OWNER, owner_reply, "Re: request", "approve\n"))
    welcome = sink.wait_for(newcomer, count=4)
    assert any("Welcome to" in parsed(d)["Subject"] for d in welcome)
    assert newcomer in service.run_cli("lists", "members", club).stdout


def test_a_closed_list_takes_no_subscriptions_by_mail(make_service, sink: SmarthostSink) -> None:
    service = make_service(ARSIP_SMARTHOST=sink.address)
    staff = f"staff@{LIST_DOMAIN}"
    service.run_cli(
        "lists", "create", staff, "--subscription", "closed", "--owner", OWNER, check=True
    )
    send(service, ANN, f"staff-join@{LIST_DOMAIN}", post(ANN, "x", "join"))
    service.wait_until_archived()
    service.wait_until_sent()
    assert sink.messages_to(ANN) == []
    assert ANN not in service.run_cli("lists", "members", staff).stdout


def test_the_daily_digest_goes_to_mime_digest_members(
    lists_service: RunningService, sink: SmarthostSink
) -> None:
    from lists.engine import ListEngine

    set_by_mail(lists_service, sink, BOB, "set digest mime")
    for subject in ("First", "Second"):
        send(lists_service, ANN, LIST, post(ANN, LIST, subject))
    sink.wait_for(ANN, count=2)
    assert ListEngine(lists_service.core()).send_digests() == 1  # the scheduler's daily job
    digest = parsed(sink.wait_for(BOB, count=4)[3])
    assert digest["Subject"] == "dev Digest, Vol 1, Issue 1"
    parts = [p for p in digest.walk() if p.get_content_type() == "message/rfc822"]
    assert [p.get_payload(0)["Subject"] for p in parts] == ["[dev] First", "[dev] Second"]


def test_a_digest_no_scheduler_sent_at_its_hour_goes_out_when_one_takes_over(
    lists_service: RunningService, sink: SmarthostSink
) -> None:
    from lists.engine import ListEngine
    from lists.models import DigestEntry, utcnow

    set_by_mail(lists_service, sink, BOB, "set digest mime")
    send(lists_service, ANN, LIST, post(ANN, LIST, "Waiting"))
    sink.wait_for(ANN)
    engine = ListEngine(lists_service.core())
    assert engine.send_digests(missed_only=True) == 0  # collected since the last daily run
    with lists_service.core().sessions.begin() as session:
        session.execute(update(DigestEntry).values(added_at=utcnow() - timedelta(days=2)))
    assert engine.send_digests(missed_only=True) == 1
    assert parsed(sink.wait_for(BOB, count=4)[3])["Subject"] == "dev Digest, Vol 1, Issue 1"


def dsn(recipient: str, status: str = "5.1.1") -> bytes:
    """A delivery status notification (RFC 3464) for `recipient`, as an MTA writes it."""
    return (
        "From: MAILER-DAEMON@mx.example.net\r\n"
        f"To: dev-bounces@{LIST_DOMAIN}\r\n"
        "Subject: Undelivered Mail Returned to Sender\r\n"
        "MIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="b"\r\n\r\n'
        "--b\r\nContent-Type: text/plain\r\n\r\nThe mail could not be delivered.\r\n"
        "--b\r\nContent-Type: message/delivery-status\r\n\r\n"
        "Reporting-MTA: dns; mx.example.net\r\n\r\n"
        f"Final-Recipient: rfc822; {recipient}\r\nAction: failed\r\nStatus: {status}\r\n"
        "Diagnostic-Code: smtp; 550 5.1.1 User unknown\r\n"
        "--b--\r\n"
    ).encode()


def test_a_member_whose_mail_keeps_bouncing_stops_getting_it(
    lists_service: RunningService, sink: SmarthostSink
) -> None:
    from sqlalchemy import func, select, update

    from lists.models import BounceRecord, Member

    core = lists_service.core()
    verp = signed_verp(lists_service, BOB)
    for day in range(7):  # a bounce a day for a week: the score climbs past 5
        with core.sessions.begin() as session:  # as if a day had passed since the last one
            session.execute(
                update(Member)
                .where(Member.address == BOB, Member.last_bounce_at.is_not(None))
                .values(last_bounce_at=datetime.now(UTC) - timedelta(days=1, minutes=1))
            )
        with lists_service.smtp() as client:
            client.sendmail("", [verp], dsn(BOB))

        def recorded() -> int:
            with core.sessions() as session:
                return session.scalar(select(func.count()).select_from(BounceRecord))

        eventually(lambda seen=day: recorded() > seen, what=f"bounce {day + 1} to be recorded")
    notice = parsed(sink.wait_for(OWNER)[0])
    assert "stopped" in notice["Subject"] and BOB in notice["Subject"]
    members = json.loads(lists_service.run_cli("lists", "members", LIST, "--json").stdout)
    bob = next(m for m in members if m["address"] == BOB)
    assert bob["disabled"] == "bounce" and bob["bounce_score"] >= 5
    send(lists_service, ANN, LIST, post(ANN, LIST, "After the bounces"))
    sink.wait_for(ANN)
    lists_service.wait_until_sent()
    assert not any(
        parsed(d)["Subject"] == "[dev] After the bounces" for _, d in sink.messages_to(BOB)
    )


def test_bounces_of_one_day_count_once(lists_service: RunningService) -> None:
    verp = signed_verp(lists_service, BOB)
    for _ in range(3):
        with lists_service.smtp() as client:
            client.sendmail("", [verp], dsn(BOB))
    lists_service.wait_until_archived()
    members = json.loads(lists_service.run_cli("lists", "members", LIST, "--json").stdout)
    assert next(m for m in members if m["address"] == BOB)["bounce_score"] == 1.0


def test_finished_deliveries_are_forgotten_after_a_week(
    lists_service: RunningService, sink: SmarthostSink
) -> None:
    from sqlalchemy import func, select, update

    from lists.engine import ListEngine
    from lists.models import OutboxMessage, OutboxRecipient

    send(lists_service, ANN, LIST, post(ANN, LIST, "Old news"))
    sink.wait_for(BOB)
    core = lists_service.core()
    lists_service.wait_until_sent()
    long_ago = datetime.now(UTC) - timedelta(days=8)
    with core.sessions.begin() as session:
        session.execute(update(OutboxRecipient).values(done_at=long_ago))
        session.execute(update(OutboxMessage).values(created_at=long_ago))
    assert ListEngine(core).purge_outbox() >= 2
    with core.sessions() as session:
        assert session.scalar(select(func.count()).select_from(OutboxMessage)) == 0


def test_owners_change_settings_ban_and_moderate_from_the_cli(
    lists_service: RunningService, sink: SmarthostSink
) -> None:
    run = lists_service.run_cli
    run("lists", "set", LIST, "--reply-to", "list", "--prefix", "[DEV]", check=True)
    shown = json.loads(run("lists", "show", LIST, "--json").stdout)
    assert (shown["reply_to"], shown["subject_prefix"]) == ("list", "[DEV]")
    run("lists", "ban", LIST, "^bob@", check=True)
    run("lists", "moderate-member", LIST, ANN, check=True)
    send(lists_service, ANN, LIST, post(ANN, LIST, "Moderated"))
    send(lists_service, BOB, LIST, post(BOB, LIST, "Banned"))
    rejection = parsed(sink.wait_for(BOB)[0])
    assert "rejected" in rejection["Subject"] and "banned" in rejection.get_body().get_content()
    sink.wait_for(OWNER)
    held = json.loads(run("lists", "held", LIST, "--json").stdout)
    assert [h["sender"] for h in held] == [ANN]
    approved = run("lists", "moderate", LIST, str(held[0]["id"]), "approve")
    assert approved.returncode == 0, approved.stderr
    delivered = [parsed(d) for d in sink.wait_for(ANN, count=2)]
    post_copy = next(m for m in delivered if m["Subject"] == "[DEV] Moderated")
    assert post_copy["Reply-To"] == LIST
    assert run("lists", "unban", LIST, "^bob@").returncode == 0
    assert run("lists", "set", LIST, "--reply-to", "nonsense").returncode == 2
