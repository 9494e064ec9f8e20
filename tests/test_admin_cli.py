"""An administrator runs lists and accounts from the command line: deleting a list (and,
on request, its archive, except what legal holds keep), deleting accounts, changing
roles without ever losing the last administrator, and password reset links."""

from __future__ import annotations

import os
import subprocess
from datetime import UTC, datetime

from sqlalchemy import func, select

from archiver.accounts import ApiToken, User, authenticate
from archiver.archive import RawMessage
from archiver.audit import AuditEntry
from archiver.core import Core
from archiver.models import Message
from archiver.password_reset import RESET_PATH, reset_password, user_for_reset
from lists.models import HeldMessage, MailingList, Member, Pending
from tests.support import ARSIP, run_arsip, simple_message

KEPT = "kept@lists.example.com"
PURGED = "gone@lists.example.com"
NOW = datetime(2026, 2, 2, 12, 0, tzinfo=UTC)


def arsip(core: Core, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return run_arsip(core.settings, *args, stdin=stdin)


def post(list_address: str, message_id: str, sender: str = "alice@example.com") -> bytes:
    """A post to the list at `list_address`, with its List-Id."""
    list_id = f"List-Id: <{list_address.replace('@', '.')}>\r\n"
    return simple_message(message_id, subject=message_id, sender=sender, extra_headers=list_id)


def file_into_list(core: Core, list_address: str, *messages: bytes) -> None:
    """Archive `messages` into the archive of the list at `list_address`, as its
    pipeline does."""
    list_id = list_address.replace("@", ".")
    with core.sessions.begin() as session:
        core.archive.archive_batch(
            session, [RawMessage(data, "", [], NOW, "import", list_id=list_id) for data in messages]
        )


def archived_ids(core: Core, list_address: str) -> set[str]:
    list_id = list_address.replace("@", ".")
    with core.sessions() as session:
        return set(session.scalars(select(Message.message_id).where(Message.list_id == list_id)))


def audit_entries(core: Core, action: str) -> list[AuditEntry]:
    with core.sessions() as session:
        query = select(AuditEntry).where(AuditEntry.action == action).order_by(AuditEntry.seq)
        return list(session.scalars(query))


def make_list(core: Core, address: str) -> int:
    """A list with an owner, two members, one pending confirmation and one held post;
    returns its id."""
    assert arsip(core, "lists", "create", address, "--owner", "olga@example.com").returncode == 0
    added = arsip(core, "lists", "add-member", address, "ann@example.com", "bob@example.com",
                  "--no-confirm")  # fmt: skip
    assert added.returncode == 0, added.stderr
    assert arsip(core, "lists", "add-member", address, "carl@example.com").returncode == 0
    with core.sessions.begin() as session:
        mlist = session.scalar(select(MailingList).where(MailingList.name == address.split("@")[0]))
        assert mlist is not None
        session.add(
            HeldMessage(
                token=f"held-{mlist.id}",
                list_id=mlist.id,
                sender="stranger@example.net",
                subject="Buy now",
                message_id="spam@example.net",
                reason="not a member",
                data=b"Subject: Buy now\r\n\r\nhi\r\n",
            )
        )
        return mlist.id


def rows_of(core: Core, list_id: int) -> dict[str, int]:
    with core.sessions() as session:
        return {
            model.__name__: session.scalar(
                select(func.count()).select_from(model).where(model.list_id == list_id)
            )
            or 0
            for model in (Member, Pending, HeldMessage)
        }


def test_a_deleted_list_leaves_its_archive_unless_purged_and_a_purge_spares_held_mail(
    core: Core,
) -> None:
    kept_id, purged_id = make_list(core, KEPT), make_list(core, PURGED)
    file_into_list(core, KEPT, post(KEPT, "k1@example.com"), post(KEPT, "k2@example.com"))
    file_into_list(
        core,
        PURGED,
        post(PURGED, "p1@example.com"),
        post(PURGED, "p2@example.com"),
        post(PURGED, "p3@example.com", sender="dave@example.com"),
    )
    journaled = post(PURGED, "p4@example.com")  # a post the journal also brought in
    with core.sessions.begin() as session:
        core.archive.archive_batch(
            session,
            [
                RawMessage(journaled, "", [], NOW, "import", list_id=PURGED.replace("@", ".")),
                RawMessage(
                    journaled,
                    "alice@example.com",
                    ["bob@example.com"],
                    NOW,
                    "smtp",
                    journal=True,
                    journal_source=True,
                ),
            ],
        )
    hold = arsip(core, "hold", "add", "--name", "lawsuit", "--reason", "Dave v. Co",
                 "--custodian", "dave@example.com")  # fmt: skip
    assert hold.returncode == 0, hold.stderr

    asked = arsip(core, "lists", "delete", KEPT, stdin="n\n")
    assert asked.returncode == 1
    assert "Delete the list kept@lists.example.com with 3 members and 1 held post?" in asked.stdout
    assert rows_of(core, kept_id)["Member"] == 3  # nothing happened

    deleted = arsip(core, "lists", "delete", KEPT, stdin="y\n")
    assert deleted.returncode == 0, deleted.stderr
    assert (
        "deleted the list kept@lists.example.com: 3 members, 1 held post, "
        "1 pending confirmation" in deleted.stdout
    )
    assert "its 2 archived messages stay in the archive" in deleted.stdout
    assert rows_of(core, kept_id) == {"Member": 0, "Pending": 0, "HeldMessage": 0}
    assert archived_ids(core, KEPT) == {"k1@example.com", "k2@example.com"}

    purged = arsip(core, "lists", "delete", PURGED, "--purge", "--yes")
    assert purged.returncode == 0, purged.stderr
    assert "purged 2 archived messages" in purged.stdout
    assert "kept 1 message under legal hold: lawsuit (1)" in purged.stdout
    assert "kept 1 message the journal also brought in" in purged.stdout
    assert archived_ids(core, PURGED) == {"p3@example.com", "p4@example.com"}
    assert rows_of(core, purged_id) == {"Member": 0, "Pending": 0, "HeldMessage": 0}
    with core.sessions() as session:
        assert session.scalars(select(MailingList.name)).all() == []

    deletions = audit_entries(core, "message.delete")
    assert {entry.target for entry in deletions} == {"p1@example.com", "p2@example.com"}
    assert all(entry.details["list"] == PURGED for entry in deletions)
    recorded = {entry.target: entry.details for entry in audit_entries(core, "list.delete")}
    assert recorded[KEPT]["purge"] is None and recorded[KEPT]["archived_kept"] == 2
    assert recorded[PURGED]["purge"]["deleted"] == 2
    assert recorded[PURGED]["purge"]["per_hold"] == {"lawsuit": 1}
    assert arsip(core, "audit", "verify").returncode == 0

    unknown = arsip(core, "lists", "delete", PURGED, "--yes")
    assert unknown.returncode == 1
    assert unknown.stderr.strip() == f"Error: no list {PURGED}; `arsip lists list` shows them"


def test_accounts_are_deleted_and_change_role_but_the_last_administrator_stays(
    core: Core,
) -> None:
    assert arsip(core, "users", "add", "boss@example.com", "--role", "admin").returncode == 0
    assert arsip(core, "users", "add", "ann@example.com").returncode == 0
    assert arsip(core, "users", "token", "ann@example.com").returncode == 0

    for refused in (
        arsip(core, "users", "delete", "boss@example.com", "--yes"),
        arsip(core, "users", "role", "boss@example.com", "user"),
    ):
        assert refused.returncode == 1
        assert refused.stderr.strip() == (
            "Error: boss@example.com is the last administrator; make another account admin first"
        )
    bad_role = arsip(core, "users", "role", "ann@example.com", "owner")
    assert bad_role.returncode == 2 and "Traceback" not in bad_role.stderr

    promoted = arsip(core, "users", "role", "ann@example.com", "admin")
    assert promoted.stdout.strip() == "ann@example.com is now admin"
    assert arsip(core, "users", "role", "ann@example.com", "admin").stdout.strip() == (
        "ann@example.com was already admin"
    )
    assert arsip(core, "users", "role", "boss@example.com", "auditor").returncode == 0

    with core.sessions() as session:
        ann = session.scalar(select(User).where(User.email == "ann@example.com"))
        assert ann is not None
    kept = arsip(core, "users", "delete", "ann@example.com")  # ann is the only admin now
    assert kept.returncode == 1 and "last administrator" in kept.stderr
    assert arsip(core, "users", "role", "boss@example.com", "admin").returncode == 0
    declined = arsip(core, "users", "delete", "ann@example.com", stdin="n\n")
    assert declined.returncode == 1 and "Delete the account ann@example.com?" in declined.stdout
    deleted = arsip(core, "users", "delete", "ann@example.com", stdin="y\n")
    assert deleted.returncode == 0, deleted.stderr
    assert "deleted the account ann@example.com" in deleted.stdout

    with core.sessions() as session:
        assert session.scalar(select(User).where(User.email == "ann@example.com")) is None
        assert session.scalars(select(ApiToken).where(ApiToken.user_id == ann.id)).all() == []
    assert [e.target for e in audit_entries(core, "user.token")] == ["ann@example.com"]
    [gone] = audit_entries(core, "user.delete")
    assert (gone.target, gone.details["tokens"]) == ("ann@example.com", 1)
    roles = [(e.target, e.details["after"]) for e in audit_entries(core, "user.role")]
    assert roles == [
        ("ann@example.com", "admin"),
        ("boss@example.com", "auditor"),
        ("boss@example.com", "admin"),
    ]
    again = arsip(core, "users", "delete", "ann@example.com", "--yes")
    assert again.returncode == 1
    assert again.stderr.strip() == (
        "Error: no account for ann@example.com; `arsip users list` shows them"
    )


def test_a_reset_link_sets_a_new_password_once_and_dies_with_the_old_password(
    core: Core,
) -> None:
    secret = core.settings.signing_key()
    added = arsip(core, "users", "add", "ann@example.com", "--password-stdin", stdin="old pw\n")
    assert added.returncode == 0
    printed = subprocess.run(
        [ARSIP, "users", "reset-link", "ann@example.com"],
        env={
            **os.environ,
            "ARSIP_DATA_DIR": str(core.settings.data_dir),
            "ARSIP_DATABASE_URL": core.settings.database_url,
            "ARSIP_BASE_URL": "https://archive.example.com/",
        },
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert printed.returncode == 0, printed.stderr
    link = printed.stdout.strip()
    assert link.startswith(f"https://archive.example.com{RESET_PATH}")
    assert "works once, for 24 hours" in printed.stderr
    token = link.rsplit("/", 1)[1]

    with core.sessions.begin() as session:
        assert user_for_reset(session, secret, token, max_age=-1) is None  # expired
        assert user_for_reset(session, secret, token[:-2] + "xx") is None  # tampered
        assert user_for_reset(session, "another key", token) is None
        assert reset_password(session, secret, token, "new pw") is not None
    with core.sessions.begin() as session:
        assert reset_password(session, secret, token, "third pw") is None  # used once
        assert authenticate(session, "ann@example.com", "new pw") is not None
        assert authenticate(session, "ann@example.com", "old pw") is None

    unused = arsip(core, "users", "reset-link", "ann@example.com").stdout.strip().rsplit("/")[-1]
    assert arsip(core, "users", "password", "ann@example.com", stdin="changed\n").returncode == 0
    with core.sessions.begin() as session:
        assert user_for_reset(session, secret, unused) is None  # the password moved on
    assert [e.target for e in audit_entries(core, "user.reset-link")] == ["ann@example.com"] * 2

    assert arsip(core, "users", "disable", "ann@example.com").returncode == 0
    refused = arsip(core, "users", "reset-link", "ann@example.com")
    assert refused.returncode == 1 and "is disabled" in refused.stderr
