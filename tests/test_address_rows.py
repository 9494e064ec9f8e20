"""Address rows are stored as their own key (migration 0017): an archive upgraded to it, or
taken back down, keeps every address of every message, and whoever may see a message
still does."""

from __future__ import annotations

import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import IntegrityError

from archiver import migrate
from archiver.access import find_message
from archiver.core import Core
from archiver.models import MessageAddress
from archiver.search.viewer import Viewer
from tests.test_retention import archive

CC = [f"reviewer{number}@example.org" for number in range(30)]


def patch_with_long_cc(message_id: str) -> bytes:
    """A patch as list mail carries it: one author, the list, thirty reviewers on Cc."""
    return (
        "From: Ann Author <ann@example.com>\r\nTo: dev@lists.example.org\r\n"
        f"Cc: {', '.join(CC)}\r\nSubject: [PATCH] mm: fix the thing\r\n"
        f"Date: Mon, 02 Feb 2026 09:00:00 +0000\r\nMessage-ID: <{message_id}>\r\n\r\n"
        "--- a/mm/thing.c\r\n+++ b/mm/thing.c\r\n"
    ).encode()


def address_rows(core: Core) -> list[tuple[str, str, str]]:
    rows = "SELECT role, address, name FROM message_addresses ORDER BY role, address"
    with core.engine.connect() as connection:
        return [tuple(row) for row in connection.execute(text(rows))]


def sees(core: Core, address: str, message_id: str) -> bool:
    with core.sessions() as session:
        return find_message(session, Viewer(addresses=frozenset({address})), message_id) is not None


def test_an_archive_keeps_its_addresses_and_access_through_0017_and_back(core: Core) -> None:
    archive(core, patch_with_long_cc("patch-1@example.com"))
    before = address_rows(core)
    assert len(before) >= len(CC) + 2
    assert ("from", "ann@example.com", "Ann Author") in before

    migrate.downgrade(core.engine, "0016")  # back to rows with an id and a unique index
    assert address_rows(core) == before
    migrate.upgrade(core.engine)  # what `arsip db upgrade` runs
    assert migrate.current_revision(core.engine) == migrate.head_revision(core.engine)
    assert address_rows(core) == before

    assert sees(core, "reviewer17@example.org", "patch-1@example.com")
    assert not sees(core, "stranger@example.org", "patch-1@example.com")
    archive(core, patch_with_long_cc("patch-2@example.com"))  # new mail after the upgrade
    assert sees(core, "reviewer29@example.org", "patch-2@example.com")


def test_a_message_names_an_address_in_a_role_once(core: Core) -> None:
    """The key is (message, role, address): the database refuses a second such row, as the
    unique constraint it replaces did."""
    archive(core, patch_with_long_cc("patch-1@example.com"))
    with core.sessions() as session:
        pk = session.scalar(select(MessageAddress.message_pk).limit(1))
    with pytest.raises(IntegrityError), core.sessions.begin() as session:
        session.execute(
            text(
                "INSERT INTO message_addresses (message_pk, role, address, name)"
                " VALUES (:pk, 'cc', 'reviewer3@example.org', 'again')"
            ),
            {"pk": pk},
        )
