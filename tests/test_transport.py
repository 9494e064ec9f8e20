"""The outbound transport against a real SMTP sink on loopback, and the maildir stand-in."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Session
from aiosmtpd.smtp import Envelope as SinkEnvelope

from archiver.config import HostPort
from lists.transport import (
    Envelope,
    MaildirTransport,
    Outcome,
    SmtpTransport,
    transport_for,
)
from tests.support import free_ports, simple_message

SENDER = "list-bounces@lists.example.com"


class Sink:
    """An aiosmtpd handler that keeps every transaction and misbehaves on request.

    Recipients at refused.test get a 550, at later.test a 451, and at drop.test the
    connection is reset instead of answered.
    """

    def __init__(self) -> None:
        self.transactions: list[tuple[str, tuple[str, ...], bytes]] = []
        self.sessions = 0
        self.data_reply: str | None = None
        self.drop_next_mail = False
        self._lock = threading.Lock()

    async def handle_EHLO(
        self, server: SMTP, session: Session, envelope: SinkEnvelope, hostname: str, responses: list
    ) -> list[str]:
        session.host_name = hostname  # aiosmtpd leaves this to a handler with this hook
        with self._lock:
            self.sessions += 1
        return responses

    async def handle_MAIL(
        self, server: SMTP, session: Session, envelope: SinkEnvelope, address: str, options: list
    ) -> str:
        if self.drop_next_mail:
            self.drop_next_mail = False
            return _hang_up(server)
        envelope.mail_from = address
        return "250 2.1.0 OK"

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: SinkEnvelope, address: str, options: list
    ) -> str:
        domain = address.rpartition("@")[2]
        if domain == "refused.test":
            return "550 5.1.1 no such user"
        if domain == "later.test":
            return "451 4.2.0 mailbox busy"
        if domain == "drop.test":
            return _hang_up(server)
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: SinkEnvelope) -> str:
        if self.data_reply:
            return self.data_reply
        with self._lock:
            self.transactions.append(
                (envelope.mail_from, tuple(envelope.rcpt_tos), envelope.original_content)
            )
        return "250 2.0.0 queued"


def _hang_up(server: SMTP) -> str:
    """Reset the connection; the reply aiosmtpd then tries to write goes nowhere."""
    server.transport.abort()
    return "250 never seen"


@contextmanager
def running_sink(**options: Any) -> Iterator[tuple[Sink, int]]:
    """A sink on a free loopback port, stopped on the way out."""
    handler = Sink()
    (port,) = free_ports(1)
    controller = Controller(handler, hostname="127.0.0.1", port=port, **options)
    controller.start()
    try:
        yield handler, port
    finally:
        controller.stop()


@pytest.fixture
def sink() -> Iterator[tuple[Sink, int]]:
    """A sink that offers SMTPUTF8, like the smarthosts Arsip is meant for."""
    with running_sink(enable_SMTPUTF8=True) as running:
        yield running


def run(coroutine: Any) -> Any:
    return asyncio.run(coroutine)


async def send_and_close(transport: SmtpTransport, envelopes: list[Envelope]) -> list:
    try:
        return await transport.send(envelopes)
    finally:
        await transport.close()


def summary(outcomes: list[Outcome]) -> list[tuple[str, int]]:
    return [(outcome.recipient, outcome.code) for outcome in outcomes]


def test_every_envelope_reaches_the_sink_over_a_pool_of_connections(sink) -> None:
    handler, port = sink
    body = ".a line that starts with a dot\r\nGrüße aus Köln\r\n".encode()
    envelopes = [
        Envelope(
            SENDER,
            (f"member{n}@example.com", f"other{n}@example.org"),
            simple_message(f"{n}@lists.example.com", body=body.decode()),
        )
        for n in range(200)
    ]
    transport = SmtpTransport("127.0.0.1", port, connections=4)

    results = run(send_and_close(transport, envelopes))

    assert len(results) == 200
    for envelope, outcomes in zip(envelopes, results, strict=True):
        assert [outcome.recipient for outcome in outcomes] == list(envelope.recipients)
        assert all(outcome.delivered and outcome.code == 250 for outcome in outcomes)
    expected = sorted((SENDER, e.recipients, e.data) for e in envelopes)
    assert sorted(handler.transactions) == expected
    assert handler.sessions == 4


def test_refused_recipients_get_their_own_outcome(sink) -> None:
    handler, port = sink
    recipients = ("ann@example.com", "gone@refused.test", "busy@later.test", "bob@example.com")
    envelope = Envelope(SENDER, recipients, simple_message("mixed@lists.example.com"))

    (outcomes,) = run(send_and_close(SmtpTransport("127.0.0.1", port), [envelope]))

    assert summary(outcomes) == list(zip(recipients, [250, 550, 451, 250], strict=True))
    assert outcomes[0].message == outcomes[3].message == "2.0.0 queued"
    assert outcomes[1].permanent and "5.1.1" in outcomes[1].message
    assert outcomes[2].temporary and "4.2.0" in outcomes[2].message
    assert handler.transactions == [(SENDER, ("ann@example.com", "bob@example.com"), envelope.data)]


def test_a_refusal_at_data_applies_to_every_accepted_recipient(sink) -> None:
    handler, port = sink
    handler.data_reply = "554 5.6.0 content rejected"
    recipients = ("ann@example.com", "gone@refused.test", "bob@example.com")
    envelope = Envelope(SENDER, recipients, simple_message("spam@lists.example.com"))

    (outcomes,) = run(send_and_close(SmtpTransport("127.0.0.1", port), [envelope]))

    assert summary(outcomes) == list(zip(recipients, [554, 550, 554], strict=True))
    assert outcomes[0].message == "5.6.0 content rejected"
    assert outcomes[1].message == "5.1.1 no such user"


def test_no_accepted_recipient_means_no_data(sink) -> None:
    handler, port = sink
    refused = Envelope(
        SENDER, ("gone@refused.test", "busy@later.test"), simple_message("n@lists.example.com")
    )
    fine = Envelope(SENDER, ("ann@example.com",), simple_message("f@lists.example.com"))
    transport = SmtpTransport("127.0.0.1", port, connections=1)

    first, second = run(send_and_close(transport, [refused, fine]))

    assert summary(first) == [("gone@refused.test", 550), ("busy@later.test", 451)]
    assert summary(second) == [("ann@example.com", 250)]
    assert handler.transactions == [(SENDER, ("ann@example.com",), fine.data)]
    assert handler.sessions == 1


def test_a_dead_smarthost_gives_code_zero_not_an_exception() -> None:
    (port,) = free_ports(1)
    envelopes = [
        Envelope(SENDER, ("ann@example.com", "bob@example.com"), simple_message("a@x")),
        Envelope("", ("cat@example.com",), simple_message("b@x")),
    ]

    results = run(send_and_close(SmtpTransport("127.0.0.1", port, timeout=5), envelopes))

    outcomes = [outcome for envelope in results for outcome in envelope]
    assert [o.recipient for o in outcomes] == [
        "ann@example.com",
        "bob@example.com",
        "cat@example.com",
    ]
    assert all(o.code == 0 and o.temporary and f"127.0.0.1:{port}" in o.message for o in outcomes)


def test_a_silent_smarthost_times_out_with_code_zero() -> None:
    listener = socket.create_server(("127.0.0.1", 0))  # connections queue up, nobody answers
    try:
        port = listener.getsockname()[1]
        envelope = Envelope(SENDER, ("ann@example.com",), simple_message("t@x"))
        transport = SmtpTransport("127.0.0.1", port, timeout=0.5)

        ((outcome,),) = run(send_and_close(transport, [envelope]))
    finally:
        listener.close()

    assert outcome.code == 0 and outcome.temporary
    assert "Timed out" in outcome.message


def test_a_dropped_connection_is_reopened_for_the_next_envelope(sink) -> None:
    handler, port = sink
    before = Envelope(SENDER, ("ann@example.com",), simple_message("1@lists.example.com"))
    dropped = Envelope(
        SENDER,
        ("bob@example.com", "gone@refused.test", "cut@drop.test", "dan@example.com"),
        simple_message("2@lists.example.com"),
    )
    after = Envelope(SENDER, ("eve@example.com",), simple_message("3@lists.example.com"))
    transport = SmtpTransport("127.0.0.1", port, connections=1)

    first, second, third = run(send_and_close(transport, [before, dropped, after]))

    assert summary(first) == [("ann@example.com", 250)]
    assert [o.code for o in second] == [0, 550, 0, 0]
    assert second[0].message and second[0].temporary
    assert summary(third) == [("eve@example.com", 250)]
    assert [recipients for _sender, recipients, _data in handler.transactions] == [
        ("ann@example.com",),
        ("eve@example.com",),
    ]
    assert handler.sessions == 2


def test_a_connection_lost_before_mail_is_answered_is_retried_on_a_fresh_one(sink) -> None:
    handler, port = sink
    transport = SmtpTransport("127.0.0.1", port, connections=1)

    async def two_posts() -> tuple[list, list]:
        try:
            first = await transport.send([Envelope(SENDER, ("ann@example.com",), b"A\r\n")])
            handler.drop_next_mail = True
            second = await transport.send([Envelope(SENDER, ("bob@example.com",), b"B\r\n")])
            return first, second
        finally:
            await transport.close()

    (first,), (second,) = run(two_posts())

    assert summary(first) == [("ann@example.com", 250)]
    assert summary(second) == [("bob@example.com", 250)]
    assert handler.sessions == 2


def test_a_connection_the_smarthost_closed_while_idle_is_reopened() -> None:
    with running_sink(timeout=0.2) as (handler, port):  # the sink hangs up after 0.2 s idle
        transport = SmtpTransport("127.0.0.1", port, connections=1)

        async def two_posts_apart() -> list[list]:
            try:
                first = await transport.send([Envelope(SENDER, ("ann@example.com",), b"A\r\n")])
                await asyncio.sleep(0.6)
                second = await transport.send([Envelope(SENDER, ("bob@example.com",), b"B\r\n")])
                return [*first, *second]
            finally:
                await transport.close()

        first, second = run(two_posts_apart())

    assert summary(first) == [("ann@example.com", 250)]
    assert summary(second) == [("bob@example.com", 250)]
    assert handler.sessions == 2


def test_connections_are_renewed_after_their_message_allowance(sink) -> None:
    handler, port = sink
    envelopes = [
        Envelope(SENDER, (f"m{n}@example.com",), simple_message(f"{n}@lists.example.com"))
        for n in range(7)
    ]
    transport = SmtpTransport("127.0.0.1", port, connections=1, max_messages_per_connection=3)

    results = run(send_and_close(transport, envelopes))

    assert all(outcome.delivered for outcomes in results for outcome in outcomes)
    assert len(handler.transactions) == 7
    assert handler.sessions == 3


def test_an_address_that_would_be_rewritten_is_not_sent(sink) -> None:
    handler, port = sink
    recipients = ("ann@example.com", "bob@example.com,eve@example.com", "x\r\nRSET@example.com")
    envelope = Envelope(SENDER, recipients, simple_message("odd@lists.example.com"))

    (outcomes,) = run(send_and_close(SmtpTransport("127.0.0.1", port), [envelope]))

    assert summary(outcomes) == list(zip(recipients, [250, 553, 553], strict=True))
    assert handler.transactions == [(SENDER, ("ann@example.com",), envelope.data)]


def test_maildir_transport_writes_one_file_per_envelope(tmp_path: Path) -> None:
    outgoing = tmp_path / "outgoing"
    many = tuple(f"member-with-a-long-name-{n}@example.com" for n in range(5))
    envelopes = [
        Envelope(SENDER, ("ann@example.com", "bob@example.com"), simple_message("1@x")),
        Envelope("", many, simple_message("2@x")),
    ]
    transport = transport_for(None, outgoing)
    assert isinstance(transport, MaildirTransport)

    results = run(transport.send(envelopes))
    run(transport.close())

    assert [summary(outcomes) for outcomes in results] == [
        [("ann@example.com", 250), ("bob@example.com", 250)],
        [(recipient, 250) for recipient in many],
    ]
    assert sorted(path.name for path in outgoing.iterdir()) == ["cur", "new", "tmp"]
    assert list((outgoing / "tmp").iterdir()) == []
    files = sorted((outgoing / "new").iterdir(), key=lambda path: path.read_bytes())
    assert len(files) == 2
    contents = sorted(path.read_bytes() for path in files)
    assert contents[0] == (
        b"Return-Path: <>\r\nX-Arsip-Recipients: "
        + b",\r\n ".join(recipient.encode() for recipient in many)
        + b"\r\n"
        + envelopes[1].data
    )
    assert contents[1] == (
        b"Return-Path: <list-bounces@lists.example.com>\r\n"
        b"X-Arsip-Recipients: ann@example.com, bob@example.com\r\n" + envelopes[0].data
    )
    assert all(max(map(len, content.split(b"\r\n"))) <= 998 for content in contents)


def test_a_configured_smarthost_gets_smtp() -> None:
    transport = transport_for(HostPort("127.0.0.1", 2525), Path("/nonexistent"), connections=2)
    assert isinstance(transport, SmtpTransport)
    assert (transport.host, transport.port) == ("127.0.0.1", 2525)


def test_a_non_ascii_address_waits_for_a_smarthost_with_smtputf8() -> None:
    recipients = ("jörg@example.de", "ann@example.com")
    envelope = Envelope(SENDER, recipients, "Grüße\r\n".encode())
    for smtputf8, codes in ((True, [250, 250]), (False, [553, 250])):
        with running_sink(enable_SMTPUTF8=smtputf8) as (handler, port):
            (outcomes,) = run(send_and_close(SmtpTransport("127.0.0.1", port), [envelope]))

        assert [outcome.code for outcome in outcomes] == codes
        delivered = tuple(r for r, code in zip(recipients, codes, strict=True) if code == 250)
        assert handler.transactions == [(SENDER, delivered, envelope.data)]
    assert "5.6.7" in outcomes[0].message
