"""Trusted timestamps: a real TSA on loopback (`openssl ts -reply` with a CA the test
makes) stamps the ledger's seals and the audit log's head; `arsip verify --timestamps`
checks the tokens offline, an outsider checks them with `openssl ts -verify`, and a TSA
that is down delays the stamps but never the mail."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import subprocess
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import delete, select, update

from archiver import audit, ledger
from archiver.audit import AuditEntry
from archiver.core import Core, build_core
from archiver.ledger import DaySeal, LedgerEntry
from archiver.timestamps.checking import check_tokens
from archiver.timestamps.models import WAITING, TimestampToken
from archiver.timestamps.report import figures
from archiver.timestamps.stamping import stamp_waiting
from archiver.timestamps.tsa import ImprintMismatch, check_token, load_ca, stamp
from tests.cli_runner import run_arsip_here
from tests.support import eventually, simple_message
from tests.test_accounts import PASSWORD, log_in
from tests.tsa import Tsa, make_ca, running_tsa

MONDAY, WEDNESDAY = date(2026, 3, 2), date(2026, 3, 4)
SEALED_AT = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
ADMIN = "root@example.org"


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


@pytest.fixture
def tsa(tmp_path: Path) -> Iterator[Tsa]:
    with running_tsa(tmp_path / "tsa") as running:
        yield running


@pytest.fixture
def evidence(core: Core, tsa: Tsa) -> Core:
    """An archive with two sealed days (Monday, Wednesday) and one audit entry, whose
    settings name the test's TSA and its CA."""
    with core.sessions.begin() as session:
        for day in (MONDAY, WEDNESDAY):
            moment = datetime(day.year, day.month, day.day, 9, tzinfo=UTC)
            ledger.record(session, [(moment, sha(f"{day} {n}")) for n in range(3)])
        assert ledger.seal_finished_days(session, SEALED_AT) == 2
        audit.record(session, "cli:tests", "hold.add", "litigation-7", {"query": "acme"})
    return replace(core, settings=replace(core.settings, tsa_url=tsa.url, tsa_ca=tsa.ca))


def arsip(core: Core, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """Run `arsip` on the test's archive with its TSA settings (and `env` over them)."""
    settings = {
        "ARSIP_DATA_DIR": str(core.settings.data_dir),
        "ARSIP_DATABASE_URL": core.settings.database_url,
        "ARSIP_TSA_URL": core.settings.tsa_url,
        "ARSIP_TSA_CA": str(core.settings.tsa_ca or ""),
    }
    return run_arsip_here(args, {**settings, **env})


def rows(core: Core) -> dict[str, TimestampToken]:
    with core.sessions() as session:
        return {row.name: row for row in session.scalars(select(TimestampToken))}


def test_each_seal_and_the_audit_head_get_a_token_that_verifies(evidence: Core, tsa: Tsa) -> None:
    run = stamp_waiting(evidence.settings, evidence.sessions)
    assert (run.stamped, run.waiting, run.error) == (3, 0, None)
    stored = rows(evidence)
    assert set(stored) == {"ledger-seal-2026-03-02", "ledger-seal-2026-03-04", "audit-head-1"}
    assert all(row.token and row.gen_time and row.tsa == tsa.url for row in stored.values())
    with evidence.sessions() as session:
        report = check_tokens(session, load_ca(tsa.ca))
        stamps = list(
            session.scalars(select(AuditEntry).where(AuditEntry.action.like("timestamp%")))
        )
    assert report.ok and report.checked == 3 and report.newest_head == 1
    assert report.unstamped == [] and report.waiting == 0
    assert sorted(entry.target for entry in stamps) == [
        "audit-head 1", "ledger-seal 2026-03-02", "ledger-seal 2026-03-04"
    ]  # fmt: skip

    asked = tsa.requests  # the stamps' own audit entries do not make the head move
    assert stamp_waiting(evidence.settings, evidence.sessions).stamped == 0
    later = datetime.now(UTC) + timedelta(hours=2)
    assert stamp_waiting(evidence.settings, evidence.sessions, now=later).stamped == 0
    assert tsa.requests == asked
    with evidence.sessions.begin() as session:
        audit.record(session, "cli:tests", "hold.release", "litigation-7")
    assert stamp_waiting(evidence.settings, evidence.sessions).stamped == 0  # within the hour
    assert stamp_waiting(evidence.settings, evidence.sessions, now=later).stamped == 1
    assert "audit-head-5" in rows(evidence)  # entries 2-4 were stamps, 5 the release


def test_verify_passes_then_names_a_seal_altered_or_removed_after_stamping(
    evidence: Core,
) -> None:
    stamp_waiting(evidence.settings, evidence.sessions)
    passed = arsip(evidence, "verify", "--timestamps")
    assert passed.returncode == 0, passed.stderr
    assert "checked 3 timestamp tokens: 0 bad, 0 waiting for the TSA" in passed.stdout
    assert "audit log stamped up to entry 1" in passed.stdout

    with evidence.sessions.begin() as session:
        session.execute(
            update(DaySeal).where(DaySeal.day == "2026-03-04").values(digest=sha("forged"))
        )
        session.execute(update(AuditEntry).where(AuditEntry.seq == 1).values(hash=sha("x")))
    failed = arsip(evidence, "verify", "--timestamps")
    assert failed.returncode == 1
    assert (
        "bad timestamp ledger-seal-2026-03-04: the seal changed after it was stamped"
        in failed.stdout
    )
    assert (
        "bad timestamp audit-head-1: the audit log up to this entry changed after it was "
        "stamped" in failed.stdout
    )
    assert "ledger-seal-2026-03-02" not in failed.stdout

    with evidence.sessions.begin() as session:  # the newest day goes, as if never taken in
        session.execute(delete(DaySeal).where(DaySeal.day == "2026-03-04"))
        session.execute(
            delete(LedgerEntry).where(LedgerEntry.received_at >= datetime(2026, 3, 4, tzinfo=UTC))
        )
    gone = json.loads(arsip(evidence, "verify", "--timestamps", "--json").stdout)
    assert gone["ok"] is False
    assert {"token": "ledger-seal-2026-03-04", "problem": "the seal it covers is gone"} in gone[
        "timestamps"
    ]["problems"]


def test_a_token_checked_against_another_ca_fails(evidence: Core, tmp_path: Path) -> None:
    stamp_waiting(evidence.settings, evidence.sessions)
    other, _key = make_ca(tmp_path / "other", "Somebody else's root")
    failed = arsip(evidence, "verify", "--timestamps", ARSIP_TSA_CA=str(other))
    assert failed.returncode == 1
    bad = re.findall(
        r"^bad timestamp (\S+): not signed by a TSA the CA bundle trusts", failed.stdout, re.M
    )
    assert sorted(bad) == ["audit-head-1", "ledger-seal-2026-03-02", "ledger-seal-2026-03-04"]
    unset = arsip(evidence, "verify", "--timestamps", ARSIP_TSA_CA="")
    assert unset.returncode == 1 and "set ARSIP_TSA_CA" in unset.stderr
    assert "Traceback" not in unset.stderr


def test_the_readme_openssl_command_verifies_an_exported_token(
    evidence: Core, tsa: Tsa, tmp_path: Path
) -> None:
    stamp_waiting(evidence.settings, evidence.sessions)
    chain, tokens = tmp_path / "chain.jsonl", tmp_path / "tokens"
    assert arsip(evidence, "verify", "--export", str(chain)).returncode == 0
    exported = arsip(evidence, "timestamps", "export", str(tokens))
    assert exported.returncode == 0 and "wrote 3 tokens" in exported.stdout

    # What an outsider does: write the stamped line again from the exported chain and
    # the audit list, and hand it to openssl with the token and the TSA's CA.
    seal = json.loads(chain.read_text().splitlines()[2])  # Wednesday's
    line = tmp_path / "seal.txt"
    subprocess.run(
        f"printf 'arsip-stamp-v1 ledger-seal %s %s\\n' {seal['day']} {seal['digest']} > {line}",
        shell=True,
        check=True,
    )
    assert line.read_bytes() == (tokens / "ledger-seal-2026-03-04.txt").read_bytes()
    entry = json.loads(arsip(evidence, "audit", "list", "--json", "--action", "hold").stdout)
    head_line = f"arsip-stamp-v1 audit-head {entry['seq']} {entry['hash']}\n".encode()
    assert head_line == (tokens / "audit-head-1.txt").read_bytes()
    for token, data in (
        ("ledger-seal-2026-03-04", line),
        ("audit-head-1", tokens / "audit-head-1.txt"),
    ):
        checked = subprocess.run(
            ["openssl", "ts", "-verify", "-in", tokens / f"{token}.tsr", "-data", data,
             "-CAfile", tsa.ca],
            capture_output=True, text=True,
        )  # fmt: skip
        assert checked.returncode == 0 and "Verification: OK" in checked.stdout, checked.stderr
    forged = tmp_path / "forged.txt"
    forged.write_text(f"arsip-stamp-v1 ledger-seal {seal['day']} {sha('forged')}\n")
    refused = subprocess.run(
        ["openssl", "ts", "-verify", "-in", tokens / "ledger-seal-2026-03-04.tsr",
         "-data", forged, "-CAfile", tsa.ca],
        capture_output=True, text=True,
    )  # fmt: skip
    assert refused.returncode != 0 and "Verification: FAILED" in refused.stdout
    with evidence.sessions() as session:
        exports = session.scalars(select(AuditEntry).where(AuditEntry.action == "timestamp.export"))
        assert [e.details for e in exports] == [{"tokens": 3}]


def test_a_tsa_that_is_down_delays_the_stamps_until_it_is_back(evidence: Core, tsa: Tsa) -> None:
    tsa.stop()
    now = datetime.now(UTC)
    run = stamp_waiting(evidence.settings, evidence.sessions, now=now)
    assert (run.stamped, run.waiting) == (0, 3) and "cannot reach the TSA" in (run.error or "")
    with evidence.sessions() as session:
        shown = figures(evidence.settings, session)
    assert shown["timestamps_waiting"] == 3 and shown["timestamps_stamped"] == 0
    assert "cannot reach the TSA" in shown["timestamps_error"]
    waiting = rows(evidence)
    assert {row.status for row in waiting.values()} == {WAITING}
    assert {row.next_attempt_at for row in waiting.values()} == {now + timedelta(minutes=1)}

    stamp_waiting(evidence.settings, evidence.sessions, now=now + timedelta(seconds=30))
    assert {row.attempts for row in rows(evidence).values()} == {1}  # pausing: not asked
    stamp_waiting(evidence.settings, evidence.sessions, now=now + timedelta(minutes=1))
    again = rows(evidence).values()
    assert {row.attempts for row in again} == {2}
    assert {row.next_attempt_at for row in again} == {now + timedelta(minutes=3)}

    tsa.start()
    back = stamp_waiting(evidence.settings, evidence.sessions, now=now + timedelta(minutes=3))
    assert (back.stamped, back.waiting, back.error) == (3, 0, None)
    with evidence.sessions() as session:
        shown = figures(evidence.settings, session)
        assert check_tokens(session, load_ca(tsa.ca)).ok
    assert (shown["timestamps_stamped"], shown["timestamps_waiting"]) == (3, 0)
    assert shown["timestamps_error"] is None


def test_a_seal_changed_while_it_waited_for_the_tsa_is_not_stamped(
    evidence: Core, tsa: Tsa
) -> None:
    tsa.stop()
    stamp_waiting(evidence.settings, evidence.sessions)
    with evidence.sessions.begin() as session:
        session.execute(
            update(DaySeal).where(DaySeal.day == "2026-03-04").values(digest=sha("forged"))
        )
    tsa.start()
    run = stamp_waiting(evidence.settings, evidence.sessions, everything=True)
    assert (run.stamped, run.waiting) == (2, 1)
    left = rows(evidence)["ledger-seal-2026-03-04"]
    assert left.status == WAITING and left.token is None
    assert left.last_error == "it changed after it was noted"
    with evidence.sessions() as session:
        assert figures(evidence.settings, session)["timestamps_error"] == left.last_error


def test_mail_flows_while_the_tsa_is_down_and_stats_and_the_dashboard_say_so(
    make_service, database_url: str, tsa: Tsa
) -> None:
    from web import create_app

    tsa.stop()
    login_url = tsa.url.replace("http://", "http://stamper:s3cret@")
    service = make_service(database_url, start=False, ARSIP_TSA_URL=login_url)
    with service.core().sessions.begin() as session:
        moment = datetime(2026, 3, 2, 9, tzinfo=UTC)
        ledger.record(session, [(moment, sha("monday"))])
        ledger.seal_finished_days(session, SEALED_AT)
        from archiver.accounts import add_user

        add_user(session, ADMIN, "admin", PASSWORD)
        audit.record(session, "cli:tests", "user.add", ADMIN)
    service.start()

    def waiting() -> dict:
        found = json.loads(service.run_cli("stats", "--json").stdout)
        return found if found["timestamps_error"] else {}

    stats = eventually(waiting, 90, lambda: f"the scheduler to try the TSA: {service.log()}")
    assert stats["tsa"] == tsa.url and "s3cret" not in json.dumps(stats)
    assert stats["timestamps_waiting"] == 2 and stats["timestamps_stamped"] == 0
    assert "cannot reach the TSA" in stats["timestamps_error"]
    with service.smtp() as client:
        client.sendmail("a@example.com", ["journal@archive.test"], simple_message("up@example.com"))
    assert service.wait_until_archived()["messages"] == 1

    app = create_app(build_core(service.settings))
    client = app.test_client()
    assert log_in(client, ADMIN, PASSWORD).status_code == 302
    page = client.get("/admin/").get_data(as_text=True)
    assert "Trusted timestamps" in page and "2 wait for http://127.0.0.1" in page
    assert "last error: cannot reach the TSA" in page and "s3cret" not in page

    tsa.start()
    caught_up = service.run_cli("timestamps", "stamp")
    assert caught_up.returncode == 0, caught_up.stderr
    assert re.search(r"stamped [23] tokens; 0 waiting", caught_up.stdout)
    expected = "Basic " + base64.b64encode(b"stamper:s3cret").decode()
    assert tsa.logins and set(tsa.logins) == {expected}
    after = json.loads(service.run_cli("stats", "--json").stdout)
    assert after["timestamps_waiting"] == 0 and after["timestamps_error"] is None
    listed = service.run_cli("timestamps", "list").stdout
    assert "ledger-seal-2026-03-02" in listed and "s3cret" not in listed + service.log()


def test_other_evidence_is_stamped_and_checked_through_the_seam(core: Core, tsa: Tsa) -> None:
    settings = replace(core.settings, tsa_url=tsa.url, tsa_ca=tsa.ca)
    manifest = b"DOC-0001 3f2a...\nDOC-0002 9bc1...\n"
    token = stamp(settings, manifest)
    assert token is not None
    ca = load_ca(tsa.ca)
    assert check_token(token, ca, data=manifest).year >= 2026
    assert check_token(token, ca, digest=hashlib.sha256(manifest).digest())
    with pytest.raises(ImprintMismatch):
        check_token(token, ca, data=manifest + b"DOC-0003 added later\n")
    assert stamp(replace(settings, tsa_url=""), manifest) is None  # no TSA configured
    tsa.stop()
    assert stamp(settings, manifest) is None  # down: the caller goes on without a token


def test_a_tsa_url_that_is_not_http_is_refused_without_showing_it(core: Core) -> None:
    refused = arsip(core, "stats", ARSIP_TSA_URL="ftp://user:pw@tsa.example/")
    assert refused.returncode == 2
    assert "ARSIP_TSA_URL: must be an http:// or https:// URL" in refused.stderr
    assert "pw@" not in refused.stderr


def test_without_a_tsa_nothing_is_stamped_and_the_dashboard_says_it_is_off(core: Core) -> None:
    from archiver.accounts import add_user
    from web import create_app

    with core.sessions.begin() as session:
        add_user(session, ADMIN, "admin", PASSWORD)
    assert stamp_waiting(core.settings, core.sessions).stamped == 0
    assert rows(core) == {}
    client = create_app(core).test_client()
    assert log_in(client, ADMIN, PASSWORD).status_code == 302
    page = client.get("/admin/").get_data(as_text=True)
    assert "Trusted timestamps" in page and "no Time-Stamp Authority configured" in page
    client.environ_base["HTTP_ACCEPT_LANGUAGE"] = "id"
    assert "Cap waktu tepercaya" in client.get("/admin/").get_data(as_text=True)
