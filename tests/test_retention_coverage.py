"""What an administrator is told about the rules they save: how many messages a policy or
a hold covers now, a warning when that is none (a mistyped scope) or when a longer policy
keeps a policy's messages anyway, and which messages a dry run would delete, listed and
exported as mbox. On SQLite with whoosh and PostgreSQL with its own full-text search."""

from __future__ import annotations

import json
import mailbox
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from archiver import audit
from archiver.core import Core
from archiver.retention.coverage import hold_coverage, policy_coverage
from archiver.retention.models import LegalHold
from archiver.retention.rules import add_hold, add_policy
from archiver.search.backend import SearchBackend
from tests.support import run_arsip
from tests.test_retention import OPERATOR, archive, archived, mail
from tests.test_web_retention import years_ago

T = TypeVar("T")

LIST_ID = "dev.lists.example.com"
CUSTODIAN = "carol@example.com"


@pytest.fixture
def filled(core: Core) -> Core:
    """Two old list posts, three old messages (one from a custodian) and a new one."""
    posts = {"list-1@x": 3, "list-2@x": 2}
    archive(
        core,
        *(mail(mid, years_ago(age), List_Id=f"<{LIST_ID}>") for mid, age in posts.items()),
        list_id=LIST_ID,
    )
    others = {"old-1@x": 4, "old-3@x": 2, "new-1@x": 0.1}
    archive(core, mail("old-2@x", years_ago(3), sender=CUSTODIAN))
    archive(core, *(mail(mid, years_ago(age)) for mid, age in others.items()))
    return core


def arsip(core: Core, command: str, *more: str) -> subprocess.CompletedProcess[str]:
    """`arsip COMMAND MORE...`: the words of `command`, then `more` as they are."""
    return run_arsip(core.settings, *command.split(), *more)


def test_a_policy_for_a_list_by_its_address_says_what_it_covers(filled: Core) -> None:
    dev = arsip(filled, "retention add --name dev --keep 10y --scope list:dev@lists.example.com")
    assert dev.returncode == 0, dev.stderr
    assert "It covers 2 messages now." in dev.stdout
    assert dev.stderr == ""

    typo = arsip(filled, "retention add --name typo --keep 1y --scope list:dev@example.org")
    assert typo.returncode == 0
    assert "It covers 0 messages now." in typo.stdout
    assert "warning: Its scope matches no message now: check it for a typo" in typo.stderr
    listed = json.loads(arsip(filled, "retention list --json").stdout)
    assert [policy["name"] for policy in listed["policies"]] == ["dev", "typo"]


def test_a_shorter_policy_is_told_which_longer_policy_keeps_its_messages(filled: Core) -> None:
    arsip(filled, f"retention add --name dev --keep 10y --scope list:{LIST_ID}")
    short = arsip(filled, "retention add --name short --keep 1y")
    assert "It covers 6 messages now." in short.stdout
    assert (
        "warning: 2 of its 6 messages are kept longer by policy dev (10y): "
        "the longest retention wins." in short.stderr
    )
    assert "It decides nothing now" not in short.stderr

    longest = arsip(filled, "retention add --name all --keep 50y")
    assert "It keeps 6 messages of policy short (1y) longer than that policy would." in (
        longest.stdout
    )
    assert "It keeps 2 messages of policy dev (10y) longer" in longest.stdout
    assert longest.stderr == ""
    moot = with_backend(filled, lambda session, backend: policy_coverage(session, backend, "dev"))
    assert moot.moot == moot.messages == 2
    assert any("It decides nothing now" in str(note.text) for note in moot.notes(scoped=True))


def test_a_hold_says_how_many_messages_it_covers_and_warns_when_none(filled: Core) -> None:
    placed = arsip(filled, "hold add --name carol --reason Case-12 --custodian", CUSTODIAN)
    assert placed.returncode == 0, placed.stderr
    assert "hold carol placed" in placed.stdout and "It covers 1 message now." in placed.stdout
    future = arsip(filled, "hold add --name dave --reason Case-13 --custodian dave@example.com")
    assert future.returncode == 0
    assert "warning: It covers no message now: check its query and custodians" in future.stderr
    assert "covers matching mail that arrives later" in future.stderr
    arsip(filled, "hold add --name lists --reason Case-14 --query list:dev@lists.example.com")
    arsip(filled, "hold release lists")

    text = arsip(filled, "hold list --all").stdout
    assert "carol\tactive, covers 1 message\tCase-12" in text
    assert "dave\tactive, covers 0 messages\tCase-13" in text
    assert "lists\treleased " in text
    listed = json.loads(arsip(filled, "hold list --all --json").stdout)
    assert {item["name"]: item["messages"] for item in listed} == {
        "carol": 1,
        "dave": 0,
        "lists": None,
    }


def with_backend(core: Core, ask: Callable[[Session, SearchBackend], T]) -> T:
    """`ask` a question of the archive's rules, with a session and the search backend."""
    backend = core.search_backend()
    try:
        with core.sessions() as session:
            return ask(session, backend)
    finally:
        backend.close()


def test_a_hold_protects_exactly_the_messages_it_is_said_to_cover(filled: Core) -> None:
    """The count comes from the rules the sweep applies: a sweep that may delete
    everything old leaves exactly the counted messages of a query, custodian and dates."""
    people = [CUSTODIAN, "alice@example.com"]
    dates = {"since": years_ago(3.5), "until": years_ago(1)}
    with filled.sessions.begin() as session:
        add_policy(session, OPERATOR, "everything", "30d")
        add_hold(session, OPERATOR, "narrow", "Case 15", "numbers", people, **dates)
    counted = with_backend(
        filled,
        lambda session, backend: (
            hold_coverage(session, backend, session.scalars(select(LegalHold)).one()).messages
        ),
    )
    arsip(filled, "retention apply")
    assert counted == 4  # list-1, list-2, old-2, old-3; not old-1 (too old) nor new-1
    assert archived(filled) == {"list-1@x", "list-2@x", "old-2@x", "old-3@x"}


def test_the_dry_run_lists_and_exports_what_it_would_delete(filled: Core, tmp_path: Path) -> None:
    arsip(filled, "retention add --name everything --keep 1y")
    arsip(filled, "hold add --name carol --reason Case-12 --custodian", CUSTODIAN)

    listed = arsip(filled, "retention apply --dry-run --list")
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    # Oldest first, with date, sender, subject, list and Message-ID.
    assert [line.split("\t")[-1] for line in lines[:4]] == [
        "<old-1@x>",
        "<list-1@x>",
        "<list-2@x>",
        "<old-3@x>",
    ]
    first = lines[0].split("\t")
    assert first[1:4] == ["alice@example.com", "report old-1@x", ""]
    assert f"\t{LIST_ID}\t<list-1@x>" in listed.stdout
    assert "messages 1-4 of 4" in listed.stdout
    assert "would delete 4 messages in total; 1 kept by holds" in listed.stdout

    as_json = json.loads(arsip(filled, "retention apply --dry-run --list --json").stdout)
    assert {item["message_id"] for item in as_json["messages"]} == {
        "old-1@x",
        "list-1@x",
        "list-2@x",
        "old-3@x",
    }

    out = tmp_path / "doomed.mbox"
    exported = arsip(filled, "retention apply --dry-run --export mbox -o", str(out))
    assert exported.returncode == 0, exported.stderr
    assert f"wrote the 4 messages it would delete to {out}" in exported.stderr
    ids = {message["Message-ID"] for message in mailbox.mbox(str(out))}
    assert ids == {"<old-1@x>", "<list-1@x>", "<list-2@x>", "<old-3@x>"}
    assert len(archived(filled)) == 6  # a dry run deletes nothing
    with filled.sessions() as session:
        entries = session.scalars(
            select(audit.AuditEntry).where(audit.AuditEntry.action == "export")
        ).all()
    assert [(entry.target, entry.details["messages"]) for entry in entries] == [(str(out), 4)]


def test_listing_or_exporting_needs_a_dry_run(filled: Core, tmp_path: Path) -> None:
    out = str(tmp_path / "x.mbox")
    for args in (
        ("--list",),
        ("--export", "mbox", "-o", out),
        ("--dry-run", "--export", "mbox"),
        ("--dry-run", "-o", out),
    ):
        refused = arsip(filled, "retention apply", *args)
        assert refused.returncode == 2, args
        assert "Traceback" not in refused.stderr
    assert len(archived(filled)) == 6
    assert not Path(out).exists()
