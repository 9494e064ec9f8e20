"""Retention ages mail by when the archive received it, not by what its sender wrote.

A real `arsip serve` takes the mail over SMTP on loopback; the operator's commands are the
real `arsip` command line. A sender who writes `Date: 01 Jan 1990` must not get a message
deleted by a 7-year policy on the next sweep, nor slip out of a hold on this year's mail.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from archiver.mailfiles import mbox_entry
from tests.support import JOURNAL, RunningService

FORGED_DATE = "Mon, 01 Jan 1990 09:00:00 +0000"


def dated_1990(message_id: str) -> bytes:
    """A message whose Date: header claims 1990."""
    return (
        f"From: mallory@example.com\r\nTo: bob@example.com\r\nSubject: old news {message_id}\r\n"
        f"Date: {FORGED_DATE}\r\nMessage-ID: <{message_id}>\r\n\r\nNothing old about it.\r\n"
    ).encode()


def archived_ids(service: RunningService) -> set[str]:
    found = json.loads(service.run_cli("search", "--json", "--limit", "100").stdout)
    return {result["message_id"] for result in found["results"]}


def test_a_forged_old_date_does_not_age_mail_received_now(
    service: RunningService, tmp_path: Path
) -> None:
    before = datetime.now(UTC).replace(microsecond=0)
    with service.smtp() as client:
        client.sendmail("mallory@example.com", [JOURNAL], dated_1990("forged@example.com"))
    # Imported mail has no arrival time the archive can vouch for: it keeps its Date:.
    old_mbox = tmp_path / "old.mbox"
    old_mbox.write_bytes(mbox_entry(dated_1990("imported@example.com"), "", datetime.now(UTC)))
    assert service.run_cli("import", str(old_mbox)).returncode == 0
    service.wait_until_indexed()

    added = service.run_cli("retention", "add", "--name", "seven-years", "--keep", "7y")
    assert added.returncode == 0, added.stderr
    swept = service.run_cli("retention", "apply")
    assert swept.returncode == 0, swept.stderr
    assert archived_ids(service) == {"forged@example.com"}

    # A hold on this year's mail covers it, whatever its Date: says.
    today = before.date().isoformat()
    held = service.run_cli(
        "hold",
        "add",
        "--name",
        "this-year",
        "--reason",
        "Case 7",
        "--custodian",
        "bob@example.com",
        "--since",
        today,
    )
    assert held.returncode == 0, held.stderr
    explained = service.run_cli("retention", "explain", "--json", "forged@example.com")
    [item] = json.loads(explained.stdout)
    assert item["date"].startswith("1990-01-01")
    assert datetime.fromisoformat(item["counts_from"]) >= before
    assert item["counts_from"] == item["received_at"]
    assert "arrival" in item["counted_by"]
    assert item["holds"] == ["this-year"]
    assert item["policies"][0]["until"][:4] == str(before.year + 7)
    text = service.run_cli("retention", "explain", "forged@example.com").stdout
    assert "retention counts from" in text and "arrival" in text
