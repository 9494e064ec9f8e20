"""What a list owner and a forged mail can do to a list, and to everyone else, over SMTP
and HTTP to a running `arsip serve`: owners' patterns cannot stall the service, a form
or a command names exactly one address, a forged From changes nobody's settings and
posts as nobody, and a forged bounce counts against nobody."""

from __future__ import annotations

import json

from sqlalchemy import update

from tests.support import (
    ANN,
    JOURNAL,
    LIST,
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
