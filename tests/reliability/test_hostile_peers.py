"""Hostile peers: relay probes, smuggled end-of-data markers, oversized commands, clients
that hold sessions open, connection floods, subscription bombing and forged tokens.

One service (with a list and a smarthost sink) serves the whole module; its SMTP timeout is
a few seconds and each client address may hold a few connections, so that the limits are
reached quickly.
"""

from __future__ import annotations

import email
import http.cookiejar
import json
import re
import secrets
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from email.message import EmailMessage
from email.policy import default

import pytest
from sqlalchemy import select

from archiver.models import Message
from lists.commands import REPLIES_PER_HOUR
from tests.support import (
    JOURNAL,
    LIST_DOMAIN,
    RunningService,
    SmarthostSink,
    eventually,
    service_env,
    simple_message,
)

# The tests of this file share the service and its smarthost (a module fixture):
# `make test` keeps them in one test process (`--dist loadgroup`), so it is set up once.
pytestmark = pytest.mark.xdist_group("test_hostile_peers")


LIST = f"dev@{LIST_DOMAIN}"
OWNER = "owner@example.com"
ANN = "ann@example.org"
STRANGER = "stranger@example.net"
TIMEOUT = 3  # seconds of silence before the intake closes a session
PER_CLIENT = 5  # connections one address may hold


@pytest.fixture(scope="module")
def sink() -> Iterator[SmarthostSink]:
    with SmarthostSink() as running:
        yield running


@pytest.fixture(scope="module")
def peers(
    tmp_path_factory: pytest.TempPathFactory, sink: SmarthostSink
) -> Iterator[RunningService]:
    root = tmp_path_factory.mktemp("peers")
    env = service_env(
        root / "var",
        ARSIP_SMARTHOST=sink.address,
        ARSIP_SMTP_TIMEOUT=str(TIMEOUT),
        ARSIP_MAX_CONNECTIONS_PER_CLIENT=str(PER_CLIENT),
    )
    service = RunningService(env, root / "serve.log").start()
    service.run_cli("lists", "create", LIST, "--owner", OWNER, check=True)
    service.run_cli("lists", "add-member", LIST, ANN, "--no-confirm", check=True)
    yield service
    service.close()


def post(sender: str, to: str, subject: str, body: str = "Hello list.\n") -> bytes:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = to
    message["Subject"] = subject
    message["Message-ID"] = f"<{secrets.token_hex(8)}@example.org>"
    message.set_content(body)
    return message.as_bytes()


def send(service: RunningService, sender: str, to: str, data: bytes) -> None:
    with service.smtp() as client:
        client.sendmail(sender, [to], data)


def settled(service: RunningService) -> None:
    """The spool is drained and the outbox has had time to deliver what it will."""
    service.wait_until_archived()
    time.sleep(1.5)


def connect(service: RunningService) -> tuple[socket.socket, bytes]:
    """A raw connection and the first thing the server says on it."""
    sock = socket.create_connection(("127.0.0.1", service.smtp_port), timeout=30)
    return sock, sock.recv(4096)


def closed_by_server(sock: socket.socket) -> bool:
    """Whether the server has closed the connection (reading until it does, or 60 s)."""
    sock.settimeout(60)
    try:
        while sock.recv(4096):
            pass
    except TimeoutError:
        return False
    except OSError:  # a reset is the server closing the connection too
        return True
    return True


def dialogue(service: RunningService, raw: bytes) -> str:
    """Send raw bytes in one session (ending with QUIT) and return everything answered."""
    sock, greeting = connect(service)
    with sock:
        sock.sendall(raw)
        answered = greeting
        while not re.search(rb"^221 ", answered, re.MULTILINE):
            chunk = sock.recv(65536)
            if not chunk:
                break
            answered += chunk
    return answered.decode(errors="replace")


# -- open relay -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "address",
    [
        "user@other.example",
        "USER@OTHER.EXAMPLE",
        "user@other.example.",
        f"user%other.example@{LIST_DOMAIN}",
        f"dev%other.example@{LIST_DOMAIN}",
        f'"user@other.example"@{LIST_DOMAIN}',
        f"<@{LIST_DOMAIN}:user@other.example>",
        f"<@{LIST_DOMAIN},@relay.example:user@other.example>",
        "user@[127.0.0.1]",
        "dev@[IPv6:::1]",
        f"dev@{LIST_DOMAIN}.other.example",
        f"DEV@{LIST_DOMAIN.upper()}.OTHER.EXAMPLE.",
        f"other.example!user@{LIST_DOMAIN}",
        f"{LIST_DOMAIN}!dev@other.example",
        f"dev@{LIST_DOMAIN}@other.example",
    ],
)
def test_relay_probes_in_every_address_form_get_550(peers: RunningService, address: str) -> None:
    with peers.smtp() as client:
        client.ehlo("prober.test")
        client.mail("spammer@other.example")
        target = address if address.startswith("<") else f"<{address}>"
        code, reply = client.docmd(f"RCPT TO:{target}")
        # 550 from the recipient policy, or 553 for what aiosmtpd cannot even read
        assert code in (550, 553), (address, reply)
        assert reply[:5] in (b"5.7.1", b"5.1.1", b"5.1.3"), reply


@pytest.mark.parametrize("address", [LIST, LIST.upper(), f'"dev"@{LIST_DOMAIN}', JOURNAL])
def test_addresses_that_truly_are_ours_are_accepted(peers: RunningService, address: str) -> None:
    with peers.smtp() as client:
        client.ehlo("client.test")
        client.mail(ANN)
        assert client.rcpt(address)[0] == 250


# -- SMTP smuggling -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "fake_end",
    [b"\n.\n", b"\r.\n", b"\n.\r\n", b"\r.\r", b"\r\n.\r", b"\r\n.\n", b"\n.\r"],
    ids=["LF.LF", "CR.LF", "LF.CRLF", "CR.CR", "CRLF.CR", "CRLF.LF", "LF.CR"],
)
def test_a_smuggled_end_of_data_does_not_split_the_message(
    peers: RunningService, fake_end: bytes
) -> None:
    tag = secrets.token_hex(6)
    smuggled = (
        b"MAIL FROM:<admin@other.example>\r\nRCPT TO:<" + JOURNAL.encode() + b">\r\nDATA\r\n"
        b"From: admin@other.example\r\nMessage-ID: <smuggled-" + tag.encode() + b"@x>\r\n"
        b"Subject: smuggled\r\n\r\nI am a second message.\r\n"
    )
    raw = (
        b"EHLO smuggler.test\r\nMAIL FROM:<alice@example.com>\r\nRCPT TO:<"
        + JOURNAL.encode()
        + b">\r\nDATA\r\n"
        + simple_message(f"carrier-{tag}@example.com", body="first line")
        + fake_end
        + smuggled
        + b".\r\nQUIT\r\n"
    )
    answered = dialogue(peers, raw)
    assert len(re.findall(r"^250 2\.0\.0 Ok: queued", answered, re.MULTILINE)) == 1, answered
    peers.wait_until_archived()
    with peers.core().sessions() as session:
        ids = set(
            session.scalars(select(Message.message_id).where(Message.message_id.contains(tag)))
        )
    assert ids == {f"carrier-{tag}@example.com"}


# -- oversized commands ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "command",
    [
        b"HELO " + b"h" * 10_000,
        b"EHLO " + b"h" * 10_000,
        b"MAIL FROM:<" + b"a" * 10_000 + b"@example.com>",
        b"RCPT TO:<" + b"a" * 10_000 + b"@" + LIST_DOMAIN.encode() + b">",
        b"NOOP " + b"\xff\x00" * 50_000,
    ],
    ids=["HELO", "EHLO", "MAIL", "RCPT", "NOOP"],
)
def test_an_oversized_command_gets_500_and_the_session_goes_on(
    peers: RunningService, command: bytes
) -> None:
    answered = dialogue(
        peers,
        b"EHLO client.test\r\nMAIL FROM:<alice@example.com>\r\n" + command + b"\r\n"
        b"RSET\r\nNOOP\r\nQUIT\r\n",
    )
    replies = [line for line in answered.splitlines() if line[:3].isdigit()]
    codes = [line[:3] for line in replies if line[3:4] == " "]
    # greeting, EHLO, MAIL, the oversized command, RSET, NOOP, QUIT
    assert codes[0] == "220" and codes[-1] == "221", answered
    assert codes[3].startswith("5"), answered
    assert codes[4:6] == ["250", "250"], answered


# -- slow clients and connection floods -----------------------------------------------------


def test_a_silent_client_is_disconnected_by_the_timeout(peers: RunningService) -> None:
    sock, greeting = connect(peers)
    with sock:
        assert greeting.startswith(b"220")
        assert closed_by_server(sock)


def test_a_client_trickling_one_byte_at_a_time_is_disconnected(peers: RunningService) -> None:
    sock, greeting = connect(peers)
    with sock:
        assert greeting.startswith(b"220")
        sock.settimeout(1)
        closed = False
        for byte in (b"NOOP" + b"x" * 200)[:120]:  # never a whole line
            try:
                sock.sendall(bytes([byte]))
                if sock.recv(4096) == b"":
                    closed = True
                    break
            except TimeoutError:
                continue
            except OSError:
                closed = True
                break
        assert closed


def hold_connections(service: RunningService, count: int) -> list[socket.socket]:
    """`count` greeted connections, once the server has let go of any earlier ones."""
    for _ in range(100):
        held = [connect(service) for _ in range(count)]
        if all(greeting.startswith(b"220") for _, greeting in held):
            return [sock for sock, _ in held]
        for sock, _ in held:
            sock.close()
        time.sleep(0.2)
    raise AssertionError("the server never greeted enough connections")


def test_too_many_connections_from_one_address_get_421(peers: RunningService) -> None:
    held = hold_connections(peers, PER_CLIENT)
    try:
        extra, greeting = connect(peers)
        with extra:
            assert greeting.startswith(b"421 4.7.0"), greeting
            assert closed_by_server(extra)
        # the sessions held still work
        held[0].sendall(b"NOOP\r\n")
        assert held[0].recv(4096).startswith(b"250")
    finally:
        for sock in held:
            sock.close()
    # and a place that is given back can be taken again
    for sock in hold_connections(peers, PER_CLIENT):
        sock.close()


def test_idle_sessions_time_out_and_make_room_for_new_clients(peers: RunningService) -> None:
    held = hold_connections(peers, PER_CLIENT)
    try:
        for sock in held:  # nobody says anything: the server's timeout frees every session
            assert closed_by_server(sock)
        with peers.smtp() as client:
            assert client.noop()[0] == 250
    finally:
        for sock in held:
            sock.close()


# -- subscription bombing and forged tokens -------------------------------------------------


def parsed(data: bytes) -> EmailMessage:
    return email.message_from_bytes(data, policy=default)  # type: ignore[return-value]


def web_subscribe(service: RunningService, address: str, times: int) -> None:
    """Ask `times` times on the list's web page for `address` to be subscribed."""
    base = f"http://127.0.0.1:{service.settings.web_port}"
    opener = urllib.request.build_opener(
        urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar())
    )
    page = opener.open(f"{base}/lists/{LIST}/", timeout=30).read().decode()
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)  # type: ignore[union-attr]
    form = urllib.parse.urlencode({"csrf_token": token, "email": address}).encode()
    for _ in range(times):
        opener.open(f"{base}/lists/{LIST}/subscribe", data=form, timeout=30).read()


def confirmations_to(sink: SmarthostSink, address: str) -> list[EmailMessage]:
    return [
        message
        for message in map(parsed, (data for _, data in sink.messages_to(address)))
        if "dev-confirm+" in str(message.get("Reply-To", ""))
    ]


def test_subscription_bombing_sends_the_victim_only_a_few_confirmations(
    peers: RunningService, sink: SmarthostSink
) -> None:
    victim = "victim@example.com"
    for _ in range(6):
        send(peers, victim, f"dev-join@{LIST_DOMAIN}", post(victim, "x", "join"))
        send(peers, victim, f"dev-request@{LIST_DOMAIN}", post(victim, "x", "subscribe"))
    web_subscribe(peers, victim, 6)
    settled(peers)
    confirmations = confirmations_to(sink, victim)
    assert len(confirmations) <= 3, [(m["Subject"], m["Date"]) for m in confirmations]
    assert len(sink.messages_to(victim)) <= 10
    assert victim not in peers.run_cli("lists", "members", LIST).stdout


def test_forged_command_mails_get_the_victim_only_a_few_replies(
    peers: RunningService, sink: SmarthostSink
) -> None:
    victim = "inbox-victim@example.com"
    for _ in range(25):
        send(peers, victim, f"dev-request@{LIST_DOMAIN}", post(victim, "x", "help"))
    sink.wait_for(victim)
    settled(peers)
    assert 1 <= len(sink.messages_to(victim)) <= REPLIES_PER_HOUR


def test_a_forged_confirmation_token_is_refused(peers: RunningService, sink: SmarthostSink) -> None:
    newcomer = "forger@example.com"
    forged = secrets.token_hex(16)
    address = f"dev-confirm+{forged}@{LIST_DOMAIN}"
    send(peers, newcomer, address, post(newcomer, address, f"Re: confirm {forged}"))
    send(
        peers,
        newcomer,
        f"dev-request@{LIST_DOMAIN}",
        post(newcomer, "x", "commands", f"confirm {forged}\n"),
    )
    base = f"http://127.0.0.1:{peers.settings.web_port}/lists/confirm/"
    for token in (forged, "0" * 32, "../" + forged, forged.upper(), ""):
        url = base + urllib.parse.quote(token)
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(urllib.request.Request(url, method="POST"), timeout=30)
        assert refused.value.code in (400, 404, 405), url
        if token:
            with pytest.raises(urllib.error.HTTPError) as unknown:
                urllib.request.urlopen(url, timeout=30)
            assert unknown.value.code == 404
    sink.wait_for(newcomer)
    settled(peers)
    answers = [parsed(data).get_body().get_content() for _, data in sink.messages_to(newcomer)]
    assert answers and all("unknown or has expired" in text for text in answers), answers
    members = json.loads(peers.run_cli("lists", "members", LIST, "--json").stdout)
    assert newcomer not in {member["address"] for member in members}


def test_a_forged_moderation_token_is_refused(peers: RunningService, sink: SmarthostSink) -> None:
    subject = f"Buy now {secrets.token_hex(4)}"
    send(peers, STRANGER, LIST, post(STRANGER, LIST, subject))
    settled(peers)
    [held] = [
        h
        for h in json.loads(peers.run_cli("lists", "held", LIST, "--json").stdout)
        if h["sender"] == STRANGER
    ]
    notice = eventually(
        lambda: next(
            (
                message
                for message in map(parsed, (data for _, data in sink.messages_to(OWNER)))
                if subject in str(message["Subject"]) or subject in message.as_string()
            ),
            None,
        ),
        what=f"the moderators' notice of {subject!r}",
    )
    real = re.search(r"dev-confirm\+([0-9A-Za-z_-]+)@", str(notice["Reply-To"])).group(1)  # type: ignore[union-attr]
    forgeries = [secrets.token_hex(16), real[:-1] + ("0" if real[-1] != "0" else "1")]
    for forged in forgeries:
        if forged == real:
            continue
        address = f"dev-confirm+{forged}@{LIST_DOMAIN}"
        send(peers, OWNER, address, post(OWNER, address, "Re: held", "approve\n"))
    settled(peers)
    still = json.loads(peers.run_cli("lists", "held", LIST, "--json").stdout)
    assert held["id"] in {h["id"] for h in still}
    assert not any(subject in str(parsed(d)["Subject"]) for _, d in sink.messages_to(ANN))
