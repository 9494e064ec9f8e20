"""Invariant 1 and 2 under fire: kill -9 a real `arsip serve` mid-load, restart, count."""

from __future__ import annotations

import os
import signal
import smtplib
import threading
import time
from collections import Counter

from sqlalchemy import func, select

from archiver.models import Message
from tests.support import JOURNAL, RunningService, children_of, simple_message

SENDERS = 6
PER_SENDER = 400


def wait_gone(pids: list[int], timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    for pid in pids:
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.05)
        else:
            raise AssertionError(f"worker {pid} outlived its parent")


def send_until_refused(port: int, sender: int, acked: list[str], stop: threading.Event) -> None:
    """Send numbered messages; remember only the ones the server acknowledged with 250."""
    n = 0
    while not stop.is_set() and n < PER_SENDER:
        try:
            with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
                while not stop.is_set() and n < PER_SENDER:
                    message_id = f"crash-{sender}-{n}@example.com"
                    body = f"message {n} from sender {sender}\r\n" * 40
                    client.sendmail(
                        "alice@example.com", [JOURNAL], simple_message(message_id, body=body)
                    )
                    acked.append(message_id)
                    n += 1
        except (OSError, smtplib.SMTPException):
            time.sleep(0.05)  # the server is down: try again, as an MTA would
            continue


def test_every_acknowledged_message_survives_kill_9_exactly_once(make_service) -> None:
    service: RunningService = make_service()
    acked: list[str] = []
    stop = threading.Event()
    senders = [
        threading.Thread(target=send_until_refused, args=(service.smtp_port, i, acked, stop))
        for i in range(SENDERS)
    ]
    for thread in senders:
        thread.start()
    try:
        for delay in (0.7, 1.1, 0.9):  # three crashes at different moments of the load
            time.sleep(delay)
            assert service.process is not None
            pid = service.process.pid
            workers = children_of(pid)
            os.kill(pid, signal.SIGKILL)
            service.process.wait()
            service.process = None
            wait_gone(workers)
            service.start()
    finally:
        stop.set()
        for thread in senders:
            thread.join(timeout=60)
    assert len(acked) > 100, "the load never got going"
    service.wait_until_archived(timeout=120)

    with service.core().sessions() as session:
        rows = session.execute(
            select(Message.message_id, func.count()).group_by(Message.message_id)
        )
        counts = Counter({message_id: count for message_id, count in rows})
    missing = [mid for mid in acked if counts[mid] == 0]
    duplicated = [mid for mid, count in counts.items() if count > 1]
    assert not missing, f"{len(missing)} acknowledged messages lost, e.g. {missing[:3]}"
    assert not duplicated, f"archived more than once: {duplicated[:3]}"
    assert service.stats()["spool_pending"] == 0
    print(f"{len(acked)} acknowledged, {sum(counts.values())} archived across three kill -9s")
