"""A new administrator's first hour: `arsip init`, one archive whatever directory a
command runs in, `arsip serve` saying what it runs, `arsip show --wait` after sending,
and imports and exports that answer bad input in one line."""

from __future__ import annotations

import os
import shutil
import subprocess
import tomllib
from pathlib import Path

from sqlalchemy import create_engine, select

from archiver.core import Core
from archiver.models import Message
from archiver.schema import database_revision, head_revision
from tests.support import (
    ARSIP,
    CORPUS,
    JOURNAL,
    NOT_MAIL,
    run_arsip,
    settings_from,
    simple_message,
    write_mbox,
)

LIST = "dev@lists.example.com"
FIRST_ADMIN = "arsip users add EMAIL --role admin --password-stdin"


def arsip_in(folder: Path, *args: str, stdin: str = "", **env: str) -> subprocess.CompletedProcess:
    """`arsip` run in `folder` as an operator's shell would, with no ARSIP_* variable
    but those given."""
    clean = {name: value for name, value in os.environ.items() if not name.startswith("ARSIP_")}
    return subprocess.run(
        [ARSIP, *args],
        env={**clean, **env},
        cwd=folder,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_commands_refuse_to_create_an_archive_and_say_where_they_looked(
    tmp_path: Path, empty_database_url: str
) -> None:
    settings = settings_from(
        {"ARSIP_DATA_DIR": str(tmp_path / "var"), "ARSIP_DATABASE_URL": empty_database_url}
    )
    mbox = tmp_path / "old.mbox"
    write_mbox(mbox, [simple_message("old@example.com")])
    for command in (
        ["lists", "members", LIST],
        ["lists", "create", LIST],
        ["users", "add", "boss@example.com", "--role", "admin"],
        ["import", str(mbox)],
        ["hold", "add", "--name", "h", "--reason", "r", "--custodian", "a@example.com"],
        ["retention", "pause"],
    ):
        result = run_arsip(settings, *command)
        assert result.returncode == 1, (command, result)
        first, second = result.stderr.strip().splitlines()
        assert first == (
            f"Error: no archive at {empty_database_url} (data directory "
            f"{(tmp_path / 'var').resolve()}; settings: environment only)"
        ), command
        assert "run `arsip init`" in second and "ARSIP_DATABASE_URL" in second
        assert "upgraded" not in result.stderr and "Traceback" not in result.stderr
    if empty_database_url.startswith("sqlite"):
        assert not (tmp_path / "arsip.db").exists()
    engine = create_engine(empty_database_url)
    assert database_revision(engine) is None
    engine.dispose()

    assert run_arsip(settings, "db", "upgrade").returncode == 0
    assert run_arsip(settings, "users", "add", "boss@example.com").returncode == 0


def test_a_command_names_the_settings_file_it_read(tmp_path: Path) -> None:
    config = tmp_path / "etc" / "arsip.toml"
    config.parent.mkdir()
    config.write_text(f'data_dir = "{tmp_path / "data"}"\n')
    result = arsip_in(tmp_path, "--config", str(config), "lists", "list")
    assert result.returncode == 1
    assert f"data directory {tmp_path / 'data'}; settings: {config} (and ARSIP_*" in result.stderr
    from_env = arsip_in(tmp_path, "users", "list", ARSIP_CONFIG=str(config))
    assert f"settings: {config}" in from_env.stderr


def test_init_writes_the_settings_creates_the_archive_and_its_first_administrator(
    tmp_path: Path, empty_database_url: str
) -> None:
    made = arsip_in(
        tmp_path,
        "init",
        "--yes",
        "--data-dir",
        "data",
        "--database-url",
        empty_database_url,
        "--hostname",
        "mail.example.com",
        "--admin",
        "boss@example.com",
        "--password-stdin",
        stdin="a long secret\n",
    )
    assert made.returncode == 0, made.stderr
    written = tomllib.loads((tmp_path / "arsip.toml").read_text())
    assert written["data_dir"] == str(tmp_path / "data")
    assert written["database_url"] == empty_database_url
    assert written["hostname"] == "mail.example.com"
    assert f"wrote {tmp_path / 'arsip.toml'}" in made.stdout
    assert "added admin boss@example.com" in made.stdout
    engine = create_engine(empty_database_url)
    assert database_revision(engine) == head_revision()
    engine.dispose()

    users = arsip_in(tmp_path, "users", "list")  # reads ./arsip.toml
    assert users.returncode == 0, users.stderr
    assert users.stdout.split()[:2] == ["boss@example.com", "admin"]

    again = arsip_in(tmp_path, "init", "--yes")
    assert again.returncode == 1
    assert f"{'arsip.toml'} exists already" in again.stderr and "--force" in again.stderr
    assert tomllib.loads((tmp_path / "arsip.toml").read_text()) == written


def test_init_asks_with_defaults_and_a_bad_answer_writes_nothing(tmp_path: Path) -> None:
    answers = "\n\n\nhttps://archive.example.com\nboss@example.com\npw one\npw one\n"
    made = arsip_in(tmp_path, "init", stdin=answers)
    assert made.returncode == 0, made.stderr
    written = tomllib.loads((tmp_path / "arsip.toml").read_text())
    assert written["data_dir"] == str(tmp_path / "var")
    assert "database_url" not in written  # SQLite in the data directory
    assert written["base_url"] == "https://archive.example.com"
    assert (tmp_path / "var" / "arsip.db").exists()
    assert arsip_in(tmp_path, "users", "list").stdout.split()[:2] == ["boss@example.com", "admin"]

    other = tmp_path / "other"
    other.mkdir()
    bad = arsip_in(other, "init", "--yes", "--base-url", "x", "--database-url", "nope://")
    assert bad.returncode != 0 and "Traceback" not in bad.stderr
    assert not (other / "arsip.toml").exists()
    later = arsip_in(other, "init", "--yes")
    assert later.returncode == 0, later.stderr
    assert f"make the first administrator with: {FIRST_ADMIN}" in later.stdout


def test_serve_names_its_archive_and_how_to_make_the_first_administrator(make_service) -> None:
    service = make_service()
    data_dir = service.settings.data_dir.resolve()
    assert f"data directory {data_dir}; settings: environment only" in service.log()
    assert f"no account yet; make the first administrator with: {FIRST_ADMIN}" in service.log()
    service.stop()
    added = service.run_cli("users", "add", "boss@example.com", "--role", "admin")
    assert added.returncode == 0, added.stderr
    before = len(service.log_path.read_text())
    service.start()
    assert "no account yet" not in service.log_path.read_text()[before:]


def test_show_waits_for_mail_the_service_has_just_accepted(make_service) -> None:
    service = make_service()
    with service.smtp() as smtp:
        smtp.sendmail("alice@example.com", [JOURNAL], simple_message("waited@example.com"))
    shown = service.run_cli("show", "waited@example.com", "--wait", "60")
    assert shown.returncode == 0, shown.stderr
    assert "waited@example.com" in shown.stdout
    missing = service.run_cli("show", "never@example.com", "--wait", "1")
    assert missing.returncode == 1
    assert missing.stderr.strip() == (
        "arsip: no archived message has Message-ID <never@example.com> after 1 s"
    )


def test_import_skips_files_that_are_not_mail_unless_told_otherwise(
    core: Core, tmp_path: Path
) -> None:
    folder = tmp_path / "export"
    folder.mkdir()
    (folder / "a.json").write_text('{"from": "alice@example.com", "subject": "hi"}\n')
    (folder / "b.html").write_text("<html><body><p>From: someone</p></body></html>\n")
    (folder / "c.bin").write_bytes(bytes(range(256)) * 8)
    (folder / "d.eml").write_bytes(simple_message("real@example.com"))
    write_mbox(folder / "e.mbox", [simple_message("boxed@example.com")])

    result = run_arsip(core.settings, "import", str(folder))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == (
        "read 2 messages: 2 new, 0 already archived; 3 files skipped (not mail)"
    )
    for name in ("a.json", "b.html", "c.bin"):
        assert f"skipped {folder / name}: not mail" in result.stderr
    one = run_arsip(core.settings, "import", str(folder / "d.eml"))
    assert one.stdout.strip() == "read 1 message: 0 new, 1 already archived"

    taken = run_arsip(core.settings, "import", "--accept-unparseable", str(folder))
    assert taken.stdout.strip() == "read 5 messages: 3 new, 2 already archived"
    with core.sessions() as session:
        flags = session.scalars(select(Message.flags)).all()
    assert len(flags) == 5
    assert sum("no_message_id" in found for found in flags) == 3  # the three non-mail files


def test_real_mail_folders_import_without_a_message_skipped(core: Core, tmp_path: Path) -> None:
    folders = [CORPUS / "notmuch", CORPUS / "list-mbox", CORPUS / "piler"]
    result = run_arsip(core.settings, "import", *map(str, folders))
    assert result.returncode == 0, result.stderr
    skipped = {
        Path(line.split()[1].rstrip(":"))
        for line in result.stderr.splitlines()
        if line.startswith("skipped ")
    }
    # Besides the corpus's notes, only a file of messages run together with a year line
    # before each (an archive format no importer splits) does not start as mail.
    odd = {path.name for path in skipped if path.suffix not in NOT_MAIL}
    assert odd <= {"mailbox_year"}, skipped


def test_writing_to_a_missing_folder_is_one_line(core: Core, tmp_path: Path) -> None:
    for command in (
        ["export", "-o", str(tmp_path / "missing" / "x.mbox")],
        ["verify", "--export", str(tmp_path / "missing" / "chain.jsonl")],
    ):
        result = run_arsip(core.settings, *command)
        assert result.returncode == 1, command
        assert result.stderr.strip() == (
            f"Error: cannot write {command[-1]}: the folder {tmp_path / 'missing'} does not exist"
        )
    listing = run_arsip(core.settings, "audit", "list", "--action", "export")
    assert listing.stdout.strip() == ""  # nothing was exported, nothing recorded
    shutil.rmtree(tmp_path / "var" / "index", ignore_errors=True)
