"""The SMTP/LMTP intake over real sockets: what it accepts, refuses, and promises."""

from __future__ import annotations

import hashlib
import smtplib
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, select, text
from sqlalchemy.engine import make_url

from archiver.models import SpoolEntry
from tests.support import (
    JOURNAL,
    JOURNAL_DOMAIN,
    LIST_DOMAIN,
    RunningService,
    make_certificate,
    postgres_database,
    shared_service,
    simple_message,
)

# The tests of this file share the service (a module fixture): `make test` keeps them in one
# test process (`--dist loadgroup`), so it is set up once.
pytestmark = pytest.mark.xdist_group("test_intake")


@pytest.fixture(scope="module")
def arsip(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningService]:
    """One service on SQLite for the protocol tests of this file, which each send their own
    mail and count what they add; the PostgreSQL path is covered in test_archive_flow."""
    with shared_service(tmp_path_factory.mktemp("intake")) as service:
        yield service


def rcpt(client: smtplib.SMTP, address: str) -> tuple[int, bytes]:
    """RCPT TO as written (a source route comes with its own angle brackets)."""
    return client.docmd(f"RCPT TO:{address if address.startswith('<') else f'<{address}>'}")


def test_ehlo_advertises_size_8bitmime_smtputf8_and_pipelining(arsip: RunningService) -> None:
    with arsip.smtp() as client:
        client.ehlo("client.test")
        for extension in ("size", "8bitmime", "smtputf8", "pipelining"):
            assert client.has_extn(extension), extension
        assert client.esmtp_features["size"] == str(arsip.settings.max_message_size)


@pytest.mark.parametrize(
    "address",
    [
        "someone@elsewhere.example",
        "victim@gmail.example",
        '"journal@archive.test"@elsewhere.example',
        "victim%elsewhere.example@archive.test",
        "victim%elsewhere.example@" + JOURNAL_DOMAIN,
        "<@archive.test:victim@elsewhere.example>",
        "victim!elsewhere.example@" + JOURNAL_DOMAIN,
        "victim@[127.0.0.1]",
        "JOURNAL@ARCHIVE.TEST.elsewhere.example",
        '"victim@elsewhere.example"@' + JOURNAL_DOMAIN,
    ],
)
def test_foreign_and_routed_addresses_are_refused_so_it_is_no_open_relay(
    arsip: RunningService, address: str
) -> None:
    with arsip.smtp() as client:
        client.ehlo("client.test")
        client.mail("spammer@elsewhere.example")
        code, reply = rcpt(client, address)
        assert code == 550, (address, reply)
        assert reply.startswith(b"5.7.1"), reply


def test_unknown_address_in_an_owned_domain_is_refused(arsip: RunningService) -> None:
    with arsip.smtp() as client:
        client.ehlo("client.test")
        client.mail("alice@example.com")
        code, reply = rcpt(client, f"nobody@{LIST_DOMAIN}")
        assert code == 550 and reply.startswith(b"5.1.1")


def test_journal_addresses_are_accepted_in_any_case(arsip: RunningService) -> None:
    with arsip.smtp() as client:
        client.ehlo("client.test")
        client.mail("alice@example.com")
        assert rcpt(client, JOURNAL.upper())[0] == 250
        assert rcpt(client, f"Bob@{JOURNAL_DOMAIN}")[0] == 250


def test_declared_size_over_the_limit_is_refused_at_mail_from(make_service) -> None:
    arsip = make_service(ARSIP_MAX_MESSAGE_SIZE="10000")
    with arsip.smtp() as client:
        client.ehlo("client.test")
        code, reply = client.docmd("MAIL FROM:<alice@example.com> SIZE=20000")
        assert (code, reply[:5]) == (552, b"5.3.4")


def test_oversized_data_is_refused_and_nothing_is_spooled(make_service) -> None:
    arsip = make_service(ARSIP_MAX_MESSAGE_SIZE="10000")
    big = simple_message("big@example.com") + (b"y" * 76 + b"\r\n") * 200
    with arsip.smtp() as client:
        client.ehlo("client.test")
        client.mail("alice@example.com")  # no SIZE=: the limit must hold during DATA too
        rcpt(client, JOURNAL)
        code, reply = client.data(big)
        assert (code, reply[:5]) == (552, b"5.3.4")
        # The session stays usable after the refusal.
        client.sendmail("alice@example.com", [JOURNAL], simple_message("small@example.com"))
    assert arsip.wait_until_archived()["messages"] == 1


def test_too_many_recipients_get_452(make_service) -> None:
    arsip = make_service(ARSIP_MAX_RECIPIENTS="3")
    with arsip.smtp() as client:
        client.ehlo("client.test")
        client.mail("alice@example.com")
        for n in range(3):
            assert rcpt(client, f"user{n}@{JOURNAL_DOMAIN}")[0] == 250
        code, reply = rcpt(client, f"user9@{JOURNAL_DOMAIN}")
        assert (code, reply[:5]) == (452, b"4.5.3")


def test_250_means_the_message_is_already_durable(arsip: RunningService) -> None:
    before = arsip.wait_until_archived()["messages"]
    with arsip.smtp() as client:
        client.ehlo("client.test")
        client.mail("alice@example.com")
        rcpt(client, JOURNAL)
        code, reply = client.data(simple_message("durable@example.com"))
    assert code == 250
    queue_id = reply.decode().rsplit(" ", 1)[-1]
    with arsip.core().sessions() as session:
        archived_or_spooled = session.scalar(
            select(SpoolEntry.queue_id).where(SpoolEntry.queue_id == queue_id)
        )
    # Either still in the spool (row committed, bytes on disk) or already archived.
    if archived_or_spooled is None:
        assert arsip.stats()["messages"] == before + 1
    assert arsip.wait_until_archived()["messages"] == before + 1


def test_storage_failure_answers_451_and_keeps_nothing(make_service) -> None:
    """The database refuses writes (read-only): no 250, nothing stored, a retry later works."""
    with postgres_database() as url:
        arsip = make_service(url)
        admin = create_engine(url, isolation_level="AUTOCOMMIT")
        name = make_url(url).database

        def set_read_only(flag: str) -> None:
            with admin.connect() as connection:
                connection.execute(
                    text(f'ALTER DATABASE "{name}" SET default_transaction_read_only = {flag}')
                )
                connection.execute(
                    text(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                        "WHERE datname = :name AND pid <> pg_backend_pid()"
                    ),
                    {"name": name},
                )

        set_read_only("on")
        try:
            with arsip.smtp() as client, pytest.raises(smtplib.SMTPDataError) as failed:
                client.sendmail("alice@example.com", [JOURNAL], simple_message("lost@example.com"))
            assert failed.value.smtp_code == 451
            assert failed.value.smtp_error.startswith(b"4.3.0")
        finally:
            set_read_only("off")
        figures = arsip.stats()
        assert figures["spool_pending"] == 0 and figures["messages"] == 0
        # Once storage is back, the retry is accepted.
        with arsip.smtp() as client:
            client.sendmail("alice@example.com", [JOURNAL], simple_message("lost@example.com"))
        assert arsip.wait_until_archived()["messages"] == 1
        arsip.close()
        admin.dispose()


def test_lmtp_gives_one_reply_per_recipient(arsip: RunningService) -> None:
    with arsip.lmtp() as client:
        client.ehlo("client.test")
        client.mail("alice@example.com")
        for address in (JOURNAL, f"bob@{JOURNAL_DOMAIN}", f"carol@{JOURNAL_DOMAIN}"):
            assert client.rcpt(address)[0] == 250
        assert client.rcpt("mallory@elsewhere.example")[0] == 550
        client.putcmd("data")
        assert client.getreply()[0] == 354
        client.send(simple_message("lmtp@example.com") + b".\r\n")
        replies = [client.getreply() for _ in range(3)]
    assert [code for code, _ in replies] == [250, 250, 250]
    arsip.wait_until_archived()
    result = arsip.run_cli("show", "lmtp@example.com", "--json")
    assert '"bob@example.com"' in result.stdout and '"carol@example.com"' in result.stdout


def _raw_session(port: int, payload: bytes) -> bytes:
    """Send `payload` (ending in QUIT) in one go, as a pipelining client would; read to 221."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(payload)
        received = b""
        while b"\r\n221 " not in received and (chunk := sock.recv(65536)):
            received += chunk
    return received


def test_bare_lf_dot_cannot_smuggle_a_second_message(arsip: RunningService) -> None:
    smuggled = (
        b"EHLO client.test\r\nMAIL FROM:<alice@example.com>\r\n"
        b"RCPT TO:<" + JOURNAL.encode() + b">\r\nDATA\r\n"
        b"Subject: first\r\nMessage-ID: <first@example.com>\r\n\r\nbody\n.\n"
        b"MAIL FROM:<mallory@example.com>\r\nRCPT TO:<" + JOURNAL.encode() + b">\r\nDATA\r\n"
        b"Subject: smuggled\r\nMessage-ID: <smuggled@example.com>\r\n\r\nevil\r\n.\r\nQUIT\r\n"
    )
    before = arsip.wait_until_archived()["messages"]
    replies = _raw_session(arsip.smtp_port, smuggled)
    assert replies.count(b"\r\n250 2.0.0") == 1, replies
    assert arsip.wait_until_archived()["messages"] == before + 1
    assert arsip.run_cli("show", "smuggled@example.com").returncode == 1


def test_pipelined_transactions_are_all_acknowledged(arsip: RunningService) -> None:
    commands = b"EHLO client.test\r\n"
    for n in range(5):
        commands += (
            b"MAIL FROM:<alice@example.com>\r\nRCPT TO:<"
            + JOURNAL.encode()
            + b">\r\nDATA\r\n"
            + simple_message(f"pipe{n}@example.com")
            + b".\r\n"
        )
    before = arsip.wait_until_archived()["messages"]
    replies = _raw_session(arsip.smtp_port, commands + b"QUIT\r\n")
    assert replies.count(b"\r\n250 2.0.0 Ok: queued as") == 5
    assert arsip.wait_until_archived()["messages"] == before + 5


def test_starttls_is_offered_when_a_certificate_is_configured(make_service, tmp_path: Path) -> None:
    cert, key = make_certificate(tmp_path)
    arsip = make_service(ARSIP_TLS_CERT=str(cert), ARSIP_TLS_KEY=str(key))
    import ssl

    context = ssl.create_default_context(cafile=str(cert))
    context.check_hostname = False
    with arsip.smtp() as client:
        client.ehlo("client.test")
        assert client.has_extn("starttls")
        client.starttls(context=context)
        client.ehlo("client.test")
        client.sendmail("alice@example.com", [JOURNAL], simple_message("tls@example.com"))
    assert arsip.wait_until_archived()["messages"] == 1


def test_smtputf8_and_8bit_mail_is_taken_as_sent(arsip: RunningService) -> None:
    message = (
        "From: Jürgen <jürgen@example.com>\r\nTo: Zoë <zoë@example.com>\r\n"
        "Subject: Grüße aus Köln\r\nMessage-ID: <utf8@example.com>\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n\r\nSchöne Grüße!\r\n"
    ).encode()
    with arsip.smtp() as client:
        client.ehlo("client.test")
        client.sendmail(
            "jürgen@example.com",
            [f"zoë@{JOURNAL_DOMAIN}"],
            message,
            mail_options=["SMTPUTF8", "BODY=8BITMIME"],
        )
    arsip.wait_until_archived()
    shown = arsip.run_cli("show", "utf8@example.com", "--json")
    assert '"subject": "Grüße aus Köln"' in shown.stdout
    assert '"zoë@example.com"' in shown.stdout
    assert arsip.core().store.get(hashlib.sha256(message).hexdigest()) == message
