"""Who may hand in mail: only journal sources reach the journal, list addresses and
postmaster@ are open to everyone, and no copy widens who sees another message.

Over loopback against a real `arsip serve` whose one journal source is 127.0.0.1: a
client on 127.0.0.2 plays an outsider (Linux routes all of 127.0.0.0/8 to loopback).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import smtplib
import ssl
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

import pytest
from aiosmtpd.smtp import MISSING, Envelope, Session
from sqlalchemy import select, update

from archiver.archive import RawMessage, legacy_dedupe_key
from archiver.config import Settings
from archiver.core import Core
from archiver.intake import AUTH_NEEDS_TLS, IntakeHandler
from archiver.models import Message, MessageAddress, SpoolEntry
from archiver.parse import parse_message
from archiver.routing import RecipientPolicy
from archiver.spool import Incoming
from tests.support import (
    JOURNAL,
    JOURNAL_DOMAIN,
    LIST_DOMAIN,
    ORIGINAL_DOMAIN,
    RunningService,
    make_certificate,
    simple_message,
)

OUTSIDER = "127.0.0.2"
PUBLIC_LIST = f"pub@{LIST_DOMAIN}"


@pytest.fixture
def guarded(make_service, database_url: str) -> RunningService:
    """A service on SQLite and PostgreSQL whose only journal source is 127.0.0.1, with a
    public list pub@."""
    service = make_service(database_url, ARSIP_JOURNAL_CLIENTS="127.0.0.1")
    service.run_cli("lists", "create", PUBLIC_LIST, check=True)
    return service


def outsider(service: RunningService) -> smtplib.SMTP:
    """An SMTP client that reaches the service from an address that is no journal source."""
    return smtplib.SMTP("127.0.0.1", service.smtp_port, timeout=30, source_address=(OUTSIDER, 0))


def rcpt(client: smtplib.SMTP, address: str) -> tuple[int, bytes]:
    return client.docmd(f"RCPT TO:<{address}>" if address else "RCPT TO:<>")


def show(service: RunningService, message_id: str) -> dict:
    result = service.run_cli("show", message_id, "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def web_status(service: RunningService, path: str) -> int:
    """The status code an anonymous visitor gets for `path`."""
    url = f"http://127.0.0.1:{service.settings.web_port}{path}"
    deadline = time.monotonic() + 30
    while True:
        try:
            with urllib.request.urlopen(url, timeout=10) as response:
                return response.status
        except urllib.error.HTTPError as error:
            return error.code
        except OSError:  # the web processes are still starting
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def test_an_outsider_is_refused_at_the_journal_but_may_write_to_a_list(
    guarded: RunningService,
) -> None:
    with outsider(guarded) as client:
        client.ehlo("outside.test")
        client.mail("mallory@elsewhere.example")
        for journal in (JOURNAL, f"bob@{JOURNAL_DOMAIN}", f"BOB@{JOURNAL_DOMAIN.upper()}"):
            code, reply = rcpt(client, journal)
            assert (code, reply[:5]) == (550, b"5.7.1"), (journal, reply)
        assert rcpt(client, PUBLIC_LIST)[0] == 250
        assert not client.has_extn("auth")  # no journal logins are configured
    with guarded.smtp() as client:  # the journal source itself
        client.ehlo("mta.test")
        client.mail("alice@example.com")
        assert rcpt(client, JOURNAL)[0] == 250
        assert rcpt(client, f"bob@{JOURNAL_DOMAIN}")[0] == 250


def test_a_list_id_header_on_journal_mail_files_nothing_into_that_list(
    guarded: RunningService,
) -> None:
    forged = simple_message(
        "forged-announcement@example.com",
        subject="Salary freeze",
        sender="ceo@example.com",
        extra_headers=f"List-Id: pub <pub.{LIST_DOMAIN}>\r\n",
    )
    with guarded.smtp() as client:
        client.sendmail("ceo@example.com", [JOURNAL], forged)
    guarded.wait_until_archived()
    assert show(guarded, "forged-announcement@example.com")["list_id"] is None
    assert web_status(guarded, "/messages/forged-announcement@example.com") == 404


def test_a_different_message_under_a_known_message_id_is_kept_apart_and_flagged(
    guarded: RunningService,
) -> None:
    """Mallory reuses the Message-ID (and body) of the board's minutes in her own mail:
    it must not become a copy of the minutes that she, its recipient, may read."""
    body = "Approved as circulated.\r\n"
    minutes = simple_message(
        "minutes@example.com", "Board minutes", "ceo@example.com", "cfo@example.com", body
    )
    reuse = simple_message(
        "minutes@example.com", "Lunch?", "mallory@example.com", "mallory@example.com", body
    )
    with guarded.smtp() as client:
        client.sendmail("ceo@example.com", [f"cfo@{JOURNAL_DOMAIN}"], minutes)
        client.sendmail("mallory@example.com", [f"mallory@{JOURNAL_DOMAIN}"], reuse)
    guarded.wait_until_indexed()
    assert guarded.stats()["messages"] == 2
    assert guarded.search("--as", "mallory@example.com", "board")["total"] == 0
    assert show(guarded, "minutes@example.com")["envelope_recipients"] == ["cfo@example.com"]
    flagged = guarded.search("is:duplicate-id")
    assert [found["subject"] for found in flagged["results"]] == ["Lunch?"]


def test_postmaster_is_accepted_from_anyone_and_shown_to_administrators_only(
    guarded: RunningService,
) -> None:
    complaint = simple_message(
        "complaint@elsewhere.example",
        subject="Your server sends us spam",
        sender="abuse@elsewhere.example",
        to="ceo@example.com",  # naming someone must not put it in their mail
    )
    with outsider(guarded) as client:
        client.ehlo("outside.test")
        client.mail("abuse@elsewhere.example")
        for address in (
            "postmaster",
            "Postmaster",
            f"postmaster@{LIST_DOMAIN}",
            f"POSTMASTER@{LIST_DOMAIN.upper()}",
            f"postmaster@{JOURNAL_DOMAIN}",
            f"postmaster@{JOURNAL.partition('@')[2]}",
        ):
            code, reply = rcpt(client, address)
            assert code == 250, (address, reply)
        client.rset()
        client.sendmail("abuse@elsewhere.example", [f"postmaster@{LIST_DOMAIN}"], complaint)
    with guarded.smtp() as client:  # the journal source's copy for the company's postmaster
        client.sendmail(
            "alice@example.com",
            [f"postmaster@{JOURNAL_DOMAIN}"],
            simple_message("to-postmaster@example.com", to=f"postmaster@{ORIGINAL_DOMAIN}"),
        )
    guarded.wait_until_indexed()
    assert [r["subject"] for r in guarded.search("is:postmaster")["results"]] == [
        "Your server sends us spam"
    ]
    assert guarded.search("--as", "ceo@example.com", "spam")["total"] == 0
    journaled = show(guarded, "to-postmaster@example.com")
    assert journaled["envelope_recipients"] == [f"postmaster@{ORIGINAL_DOMAIN}"]


def test_a_journal_login_over_starttls_makes_any_client_a_journal_source(
    make_service, tmp_path: Path
) -> None:
    secret = "a-long-random-token-for-the-test"
    cert, key = make_certificate(tmp_path)
    service = make_service(
        ARSIP_JOURNAL_CLIENTS="127.0.0.1",
        ARSIP_JOURNAL_LOGINS=f"mta.example.com:{hashlib.sha256(secret.encode()).hexdigest()}",
        ARSIP_TLS_CERT=str(cert),
        ARSIP_TLS_KEY=str(key),
    )
    context = ssl.create_default_context(cafile=str(cert))
    context.check_hostname = False
    with outsider(service) as client:
        client.ehlo("mta.example.com")
        client.mail("alice@example.com")
        assert rcpt(client, JOURNAL)[0] == 550
        client.rset()
        client.starttls(context=context)
        client.ehlo("mta.example.com")
        with pytest.raises(smtplib.SMTPAuthenticationError):
            client.login("mta.example.com", "a-guess")
        client.login("mta.example.com", secret)
        client.sendmail(
            "alice@example.com", [f"bob@{JOURNAL_DOMAIN}"], simple_message("authed@example.com")
        )
    service.wait_until_archived()
    assert show(service, "authed@example.com")["envelope_recipients"] == ["bob@example.com"]
    log = service.log()
    assert "failed journal login 'mta.example.com'" in log
    assert secret not in log and "a-guess" not in log


# -- what each kind of copy may record, on the archive itself ---------------------------------

NOW = datetime(2026, 2, 3, 12, 0, tzinfo=UTC)


def roles_of(core: Core, pk: int) -> set[tuple[str, str]]:
    with core.sessions() as session:
        rows = session.execute(
            select(MessageAddress.role, MessageAddress.address).where(
                MessageAddress.message_pk == pk
            )
        )
        return {(role, address) for role, address in rows}


def test_only_a_journal_sources_copy_records_envelope_and_bcc(core: Core) -> None:
    secret_bcc = "Bcc: auditor@example.com\r\n"
    posted = simple_message("post@example.com", extra_headers=secret_bcc)
    journaled = simple_message("journaled@example.com", extra_headers=secret_bcc)
    with core.sessions.begin() as session:
        post, journal = core.archive.archive_batch(
            session,
            [
                RawMessage(posted, "eve@example.net", [PUBLIC_LIST], NOW, "list", list_id="pub"),
                RawMessage(
                    journaled,
                    "alice@example.com",
                    ["carol@example.com"],
                    NOW,
                    "smtp",
                    journal_source=True,
                ),
            ],
        )
    assert roles_of(core, post.message_pk) == {
        ("from", "alice@example.com"),
        ("to", "bob@example.com"),
    }
    assert roles_of(core, journal.message_pk) >= {
        ("bcc", "auditor@example.com"),
        ("envelope_from", "alice@example.com"),
        ("envelope_to", "carol@example.com"),
    }


def test_a_message_archived_before_the_upgrade_still_takes_its_own_copies_only(
    core: Core,
) -> None:
    """Messages archived before migration 0013 keep their Message-ID-and-body key: a copy
    of one merges only when its headers match too, and the key is then brought up to date."""
    original = simple_message("old@example.com", subject="Plans")
    with core.sessions.begin() as session:
        [first] = core.archive.archive_batch(
            session,
            [RawMessage(original, "", ["bob@example.com"], NOW, "lmtp", journal_source=True)],
        )
        legacy = legacy_dedupe_key(parse_message(original, NOW))
        session.execute(
            update(Message).where(Message.id == first.message_pk).values(dedupe_key=legacy)
        )
    hop = b"Received: from relay.example.com\r\n" + original
    other = simple_message("old@example.com", subject="Other plans")
    with core.sessions.begin() as session:
        same, different = core.archive.archive_batch(
            session,
            [
                RawMessage(hop, "", ["carol@example.com"], NOW, "lmtp", journal_source=True),
                RawMessage(other, "", ["mallory@example.com"], NOW, "lmtp", journal_source=True),
            ],
        )
    assert (same.message_pk, same.created) == (first.message_pk, False)
    assert different.created
    assert ("envelope_to", "carol@example.com") in roles_of(core, first.message_pk)
    assert ("envelope_to", "mallory@example.com") not in roles_of(core, first.message_pk)
    with core.sessions() as session:
        kept = session.get(Message, first.message_pk)
        assert kept is not None and kept.dedupe_key != legacy
        flagged = session.get(Message, different.message_pk)
        assert flagged is not None and "duplicate_id" in flagged.flags


def test_mail_spooled_before_the_upgrade_is_judged_by_its_recorded_client(core: Core) -> None:
    """Spool rows from before migration 0013 carry no trust: their peer address decides,
    against today's ARSIP_JOURNAL_CLIENTS (loopback here)."""
    for n, peer in enumerate(("127.0.0.1:40000", "192.0.2.7:25")):
        data = simple_message(f"spooled{n}@example.com")
        core.spool.commit_batch(
            [
                Incoming(
                    f"Q{n}",
                    "alice@example.com",
                    (f"bob@{JOURNAL_DOMAIN}",),
                    data,
                    "lmtp",
                    peer,
                    NOW,
                )
            ]
        )
    with core.sessions.begin() as session:
        session.execute(update(SpoolEntry).values(trusted=None))
    assert core.worker().run_once() == 2
    with core.sessions() as session:
        pks = {mid: pk for mid, pk in session.execute(select(Message.message_id, Message.id))}
    assert ("envelope_to", "bob@example.com") in roles_of(core, pks["spooled0@example.com"])
    assert roles_of(core, pks["spooled1@example.com"]) == set()


def test_a_journal_login_is_taken_only_over_tls_away_from_loopback(tmp_path: Path) -> None:
    """What the socket tests cannot show (every address they may use is loopback): a
    client elsewhere must start TLS before it may send its secret."""
    settings = Settings(data_dir=tmp_path, journal_logins={"mta": "0" * 64})
    handler = IntakeHandler(settings, RecipientPolicy(settings), committer=None)  # type: ignore[arg-type]
    elsewhere = Session(loop=None)  # type: ignore[arg-type]
    elsewhere.peer = ("192.0.2.25", 40000)

    def auth(session: Session) -> object:
        return asyncio.run(handler.handle_AUTH(None, session, Envelope(), ["PLAIN"]))  # type: ignore[arg-type]

    assert auth(elsewhere) == AUTH_NEEDS_TLS
    elsewhere.ssl = {"cipher": ("TLS_AES_256_GCM_SHA384", "TLSv1.3", 256)}
    assert auth(elsewhere) is MISSING  # aiosmtpd goes on to read and check the credentials


def test_a_postmaster_copy_grants_nothing_until_a_journal_copy_of_it_arrives(core: Core) -> None:
    """An outside sender's message To: alice and Cc: postmaster@ reaches Arsip twice: from
    the outside directly (postmaster, unattributed) and as the company MTA's journal copy."""
    data = simple_message("both@example.org", sender="carl@example.org", to="alice@example.com")
    with core.sessions.begin() as session:
        [direct] = core.archive.archive_batch(
            session, [RawMessage(data, "carl@example.org", [], NOW, "smtp", postmaster=True)]
        )
    assert roles_of(core, direct.message_pk) == set()
    with core.sessions.begin() as session:
        [journaled] = core.archive.archive_batch(
            session,
            [
                RawMessage(
                    data,
                    "carl@example.org",
                    ["alice@example.com"],
                    NOW,
                    "lmtp",
                    journal_source=True,
                )
            ],
        )
    assert (journaled.message_pk, journaled.created) == (direct.message_pk, False)
    assert ("to", "alice@example.com") in roles_of(core, direct.message_pk)
    with core.sessions() as session:
        message = session.get(Message, direct.message_pk)
        assert message is not None
        assert "postmaster" in message.flags and "unattributed" not in message.flags
