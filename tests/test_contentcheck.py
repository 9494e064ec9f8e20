"""The content checks' clients against real spamd and clamd, and against daemons that
misbehave: silent, talking nonsense, or gone. A daemon's trouble must cost one time
limit, never a lost or stalled message."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest
from sqlalchemy import select

from archiver.contentcheck.checker import ContentChecker
from archiver.contentcheck.daemons import DaemonAddress
from archiver.models import ContentCheck, Message
from tests.daemons import GTUBE, infected_message
from tests.support import JOURNAL, free_ports, simple_message


def gtube_message() -> bytes:
    return simple_message("gtube@example.com", subject="Cheap watches", body=f"{GTUBE}\r\n")


def eicar_message() -> bytes:
    return infected_message("eicar@example.net")


class MisbehavingDaemon:
    """A loopback server that accepts connections and then stays silent, or answers
    `reply` and hangs up; it counts the connections it got."""

    def __init__(self, reply: bytes | None = None) -> None:
        self.reply = reply
        self.connections = 0
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.address = DaemonAddress("127.0.0.1", self.listener.getsockname()[1])
        self._held: list[socket.socket] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                connection, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            if self.reply is None:
                self._held.append(connection)  # never answers
            else:
                connection.recv(65536)
                connection.sendall(self.reply)
                connection.close()

    def close(self) -> None:
        self.listener.close()
        for connection in self._held:
            connection.close()


@pytest.fixture
def silent() -> Iterator[MisbehavingDaemon]:
    daemon = MisbehavingDaemon()
    yield daemon
    daemon.close()


def test_spamd_scores_gtube_as_spam_and_names_the_rule(spamd: DaemonAddress) -> None:
    [spam, ham] = ContentChecker(spamd, None).check([gtube_message(), simple_message("ham@x")])
    assert spam.is_spam and spam.spam_score is not None and spam.spam_score > 100
    assert "GTUBE" in spam.spam_rules
    assert not ham.is_spam and ham.spam_score is not None
    assert spam.unchecked == ham.unchecked == ()


def test_clamd_finds_the_eicar_file_in_an_attachment(clamd: DaemonAddress) -> None:
    [infected, clean] = ContentChecker(None, clamd).check([eicar_message(), gtube_message()])
    assert infected.virus and "eicar" in infected.virus.lower()
    assert clean.virus is None and clean.unchecked == ()


def test_a_message_larger_than_spamd_takes_is_not_scored_and_not_unchecked(
    spamd: DaemonAddress,
) -> None:
    big = simple_message("big@x", body="word " * 200_000)
    [verdict] = ContentChecker(spamd, None, spam_max_size=100_000).check([big])
    assert verdict.spam_score is None and verdict.unchecked == ()


def test_a_silent_daemon_costs_one_time_limit_then_is_left_alone(
    silent: MisbehavingDaemon, caplog: pytest.LogCaptureFixture
) -> None:
    checker = ContentChecker(silent.address, None, timeout=1)
    first = checker.check([simple_message(f"m{n}@x") for n in range(3)])
    assert all(verdict.unchecked == ("spamd",) for verdict in first)
    tried = silent.connections
    second = checker.check([simple_message("later@x")])
    assert second[0].unchecked == ("spamd",)
    assert silent.connections == tried, "a failed daemon was asked again at once"
    assert "spamd at 127.0.0.1" in caplog.text and "no answer in time" in caplog.text


@pytest.mark.parametrize(
    "reply",
    [b"SPAMD/1.1 76 Bad header line\r\n", b"HTTP/1.1 400 Bad Request\r\n\r\n", b""],
    ids=["refusal", "another-protocol", "hang-up"],
)
def test_a_daemon_that_answers_nonsense_leaves_the_message_unchecked(reply: bytes) -> None:
    daemon = MisbehavingDaemon(reply)
    try:
        [verdict] = ContentChecker(daemon.address, None).check([gtube_message()])
    finally:
        daemon.close()
    assert verdict.unchecked == ("spamd",) and verdict.spam_score is None


def test_a_daemon_that_is_gone_is_reported_unavailable() -> None:
    nobody = DaemonAddress("127.0.0.1", free_ports(1)[0])
    checker = ContentChecker(nobody, nobody)
    assert checker.availability() == {"spamd": False, "clamd": False}
    [verdict] = checker.check([simple_message("x@x")])
    assert verdict.unchecked == ("spamd", "clamd")


def test_journal_copies_are_archived_whatever_the_daemons_say(
    make_service, spamd: DaemonAddress, clamd: DaemonAddress
) -> None:
    service = make_service(ARSIP_SPAMD=str(spamd), ARSIP_CLAMD=str(clamd))
    with service.smtp() as client:
        client.sendmail("alice@example.com", [JOURNAL], gtube_message())
        client.sendmail("mallory@example.net", [JOURNAL], eicar_message())
        client.sendmail("alice@example.com", [JOURNAL], simple_message("clean@example.com"))
    assert service.wait_until_archived()["messages"] == 3
    verdicts = _verdicts(service)
    assert verdicts["gtube@example.com"].spam
    assert verdicts["eicar@example.net"].virus
    assert not verdicts["clean@example.com"].spam and not verdicts["clean@example.com"].virus


def test_a_silent_daemon_does_not_hold_up_the_archive(
    make_service, silent: MisbehavingDaemon
) -> None:
    service = make_service(ARSIP_SPAMD=str(silent.address), ARSIP_CHECK_TIMEOUT="1")
    with service.smtp() as client:
        for number in range(5):
            client.sendmail("alice@example.com", [JOURNAL], simple_message(f"s{number}@x"))
    assert service.wait_until_archived(timeout=60)["messages"] == 5
    assert {v.unchecked for v in _verdicts(service).values()} == {"spamd"}
    assert "spamd at 127.0.0.1" in service.log()


def _verdicts(service) -> dict[str, ContentCheck]:
    with service.core().sessions() as session:
        rows = session.execute(
            select(Message.message_id, ContentCheck).join(
                ContentCheck, ContentCheck.message_pk == Message.id
            )
        ).all()
    return {message_id: check for message_id, check in rows}
