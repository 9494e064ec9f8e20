"""How the command line opens an archive: reading commands never change the schema, never
create an empty archive by mistake, and load only what they use."""

from __future__ import annotations

import json
import os
import pwd
import signal
import socket
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine

from archiver import audit, localsocket, migrate, schema
from archiver.config import Settings
from tests.support import (
    JOURNAL,
    LIST,
    ROOT,
    RunningService,
    children_of,
    eventually,
    run_arsip,
    settings_from,
    simple_message,
)


def _settings(tmp_path: Path) -> Settings:
    return settings_from({"ARSIP_DATA_DIR": str(tmp_path / "var")})


def test_search_without_an_archive_says_where_it_looked_and_creates_nothing(
    tmp_path: Path,
) -> None:
    settings = _settings(tmp_path)
    for command in (["search", "hello"], ["show", "1@example.com"], ["stats"]):
        result = run_arsip(settings, *command)
        assert result.returncode == 1, result
        assert "no archive at" in result.stderr
        assert "arsip serve" in result.stderr
        assert "Traceback" not in result.stderr
    assert not (tmp_path / "var").exists()  # no database, no key, no folder


# Every command that only reads the archive (and `db compact`, which rewrites the database
# but must not change its schema), with what it needs to get as far as opening it.
READING_COMMANDS = [
    ["search", "hello"],
    ["show", "1@example.com"],
    ["stats"],
    ["verify"],
    ["audit", "list"],
    ["audit", "verify"],
    ["users", "list"],
    ["users", "tokens", "ann@example.org"],
    ["lists", "list"],
    ["lists", "show", LIST],
    ["lists", "members", LIST],
    ["lists", "held", LIST],
    ["retention", "list"],
    ["retention", "explain", "1@example.com"],
    ["hold", "list"],
    ["db", "compact"],
]


def test_reading_commands_leave_a_schema_one_behind_for_the_operator_to_upgrade(
    tmp_path: Path, empty_database_url: str
) -> None:
    settings = settings_from(
        {"ARSIP_DATA_DIR": str(tmp_path / "var"), "ARSIP_DATABASE_URL": empty_database_url}
    )
    engine = create_engine(empty_database_url)
    scripts = ScriptDirectory.from_config(migrate.alembic_config(engine))
    behind = scripts.get_revision(schema.head_revision()).down_revision
    migrate.upgrade(engine, behind)
    exported = tmp_path / "out.mbox"
    for command in [*READING_COMMANDS, ["export", "-o", str(exported)]]:
        result = run_arsip(settings, *command)
        assert result.returncode == 1, (command, result)
        assert "run `arsip db upgrade`" in result.stderr, (command, result.stderr)
        assert "Traceback" not in result.stderr
        assert migrate.current_revision(engine) == behind, command
    assert not exported.exists()
    assert run_arsip(settings, "db", "upgrade").returncode == 0
    assert migrate.current_revision(engine) == schema.head_revision()
    assert json.loads(run_arsip(settings, "stats", "--json").stdout)["messages"] == 0
    engine.dispose()


def test_a_database_that_cannot_be_reached_is_named_not_taken_for_a_missing_archive(
    tmp_path: Path,
) -> None:
    with socket.socket() as closed:  # bound, never listening: connections are refused
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
        url = f"postgresql://arsip@127.0.0.1:{port}/arsip"
        settings = settings_from(
            {"ARSIP_DATA_DIR": str(tmp_path / "var"), "ARSIP_DATABASE_URL": url}
        )
        for command in (
            ["users", "list"],
            ["lists", "list"],
            ["users", "add", "ann@example.org"],
            ["db", "upgrade"],
        ):
            result = run_arsip(settings, *command)
            assert result.returncode == 1, (command, result)
            assert "cannot use the database: connection failed" in result.stderr, result.stderr
            assert "Traceback" not in result.stderr and "no archive" not in result.stderr


def test_a_newer_schema_is_not_read_by_an_older_arsip(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    assert run_arsip(settings, "db", "upgrade").returncode == 0
    engine = create_engine(settings.database_url)
    with engine.begin() as connection:
        connection.exec_driver_sql("UPDATE alembic_version SET version_num = '9999'")
    result = run_arsip(settings, "search", "hello")
    assert result.returncode == 1
    assert "newer than this arsip" in result.stderr


def test_the_cheap_schema_check_knows_the_same_head_as_alembic(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'x.db'}")
    assert schema.head_revision() == migrate.head_revision(engine)


@pytest.mark.parametrize(
    ("command", "unwanted"),
    [
        (["search", "hello"], ("flask", "lists", "web", "alembic", "apscheduler", "aiosmtpd")),
        (["show", "1@example.com"], ("flask", "lists", "web", "alembic", "whoosh", "numpy")),
        (["stats"], ("flask", "lists", "web", "alembic", "whoosh", "numpy")),
    ],
)
def test_reading_commands_load_neither_the_web_ui_nor_the_list_engine(
    tmp_path: Path, command: list[str], unwanted: tuple[str, ...]
) -> None:
    settings = _settings(tmp_path)
    assert run_arsip(settings, "db", "upgrade").returncode == 0
    script = (
        "import sys\n"
        f"sys.argv = ['arsip', *{command!r}]\n"
        "from archiver.cli import main\n"
        "try:\n"
        "    main()\n"
        "except SystemExit:\n"
        "    pass\n"
        "print(' '.join(sorted({name.split('.')[0] for name in sys.modules})), file=sys.stderr)\n"
    )
    env = {**os.environ, "ARSIP_DATA_DIR": str(settings.data_dir)}
    result = subprocess.run(
        [sys.executable, "-c", script], env=env, cwd=ROOT, capture_output=True, text=True
    )
    loaded = set(result.stderr.strip().splitlines()[-1].split())
    assert loaded.isdisjoint(unwanted), loaded & set(unwanted)


def test_plug_in_commands_are_there_when_asked_for(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    assert run_arsip(settings, "db", "upgrade").returncode == 0
    listing = run_arsip(settings, "--help").stdout
    for group in ("lists", "audit", "retention", "hold", "users", "search"):
        assert f"  {group} " in listing
    assert run_arsip(settings, "lists", "list").returncode == 0


def _archived(service: RunningService, message_id: str) -> None:
    with service.smtp() as client:
        client.sendmail("alice@example.com", [JOURNAL], simple_message(message_id, "Zebra"))
    service.wait_until_found("zebra")


def test_a_running_service_answers_the_command_line_on_an_owner_only_socket(
    make_service,
) -> None:
    service: RunningService = make_service()
    _archived(service, "zebra@example.com")
    sock = service.settings.data_dir / "arsip.sock"
    assert stat.S_ISSOCK(sock.stat().st_mode)
    assert stat.S_IMODE(sock.stat().st_mode) == 0o600
    # The service answers: the same archive, read through the socket.
    answer = localsocket.ask(
        service.settings.data_dir, "search", {"query": "zebra"}, schema.head_revision()
    )
    assert answer["data"]["results"][0]["message_id"] == "zebra@example.com"
    shown = service.run_cli("show", "--json", "zebra@example.com")
    assert json.loads(shown.stdout)["subject"] == "Zebra"
    missing = service.run_cli("show", "nothing@example.com")
    assert missing.returncode == 1 and "no archived message" in missing.stderr
    bad = service.run_cli("search", "from:")
    assert bad.returncode == 2 and bad.stderr.startswith("arsip: bad query:")
    unknown = service.run_cli("search", "zebra sender:bob")
    assert unknown.returncode == 2 and unknown.stdout == ""
    assert unknown.stderr.startswith("arsip: bad query: 'sender:' is not a search field")
    assert unknown.stderr.count("\n") == 1 and "at position 7" in unknown.stderr
    # The audit trail names the connecting user as the kernel reports it.
    with service.core().sessions() as session:
        views = [e for e in audit.entries(session) if e.action == "message.view"]
    assert views and views[0].actor == f"cli:{pwd.getpwuid(os.getuid()).pw_name}"


def test_the_command_line_reads_the_archive_itself_once_the_service_has_stopped(
    make_service,
) -> None:
    service: RunningService = make_service()
    _archived(service, "zebra@example.com")
    service.stop()
    assert (service.settings.data_dir / "arsip.sock").exists()  # left by a stopped service
    found = service.run_cli("search", "--json", "zebra")
    assert found.returncode == 0, found.stderr
    assert json.loads(found.stdout)["total"] == 1


def test_a_client_built_for_another_schema_is_sent_to_read_the_archive_itself(
    make_service,
) -> None:
    service: RunningService = make_service()
    _archived(service, "zebra@example.com")
    with pytest.raises(localsocket.NoService):
        localsocket.ask(service.settings.data_dir, "stats", {}, "0001")


def test_every_web_process_stops_when_the_service_is_killed_after_answering_commands(
    make_service,
) -> None:
    service: RunningService = make_service()
    assert service.process is not None
    children = children_of(service.process.pid)
    for _ in range(20):  # each wakes every web process; one of them takes it
        localsocket.ask(service.settings.data_dir, "stats", {}, schema.head_revision())
    service.stop(signal.SIGKILL)  # the children find out by themselves
    eventually(
        lambda: not any(Path(f"/proc/{pid}").exists() for pid in children),
        30,
        "the children to end with the service",
    )


def test_search_as_an_account_sees_what_that_account_sees_on_the_web(make_service) -> None:
    service: RunningService = make_service()
    with service.smtp() as client:
        for n, to in enumerate(("bob@example.com", "robert@example.org", "carol@example.com")):
            mail = simple_message(f"m{n}@example.com", "Zebra", to=to)
            client.sendmail("alice@example.com", [JOURNAL], mail)
    _archived(service, "m0@example.com")
    service.wait_until_found("zebra", count=3)
    assert service.run_cli("users", "add", "bob@example.com").returncode == 0
    added = service.run_cli("users", "add-address", "bob@example.com", "robert@example.org")
    assert added.returncode == 0
    assert service.run_cli("users", "add", "audit@example.com", "--role", "auditor").returncode == 0

    def found(who: str) -> int:
        return json.loads(service.run_cli("search", "--json", "--as", who, "zebra").stdout)["total"]

    assert found("bob@example.com") == 2  # both of the account's verified addresses
    assert found("audit@example.com") == 3  # an auditor sees everything
    assert found("carol@example.com") == 1  # an address without an account: its own mail


def test_a_long_page_of_results_comes_whole_through_the_socket(make_service) -> None:
    service: RunningService = make_service()
    subject = "Zebra " + "stripes " * 80
    with service.smtp() as client:
        for n in range(150):
            client.sendmail(
                "alice@example.com", [JOURNAL], simple_message(f"z{n}@example.com", subject)
            )

    def search() -> dict:
        question = {"query": "zebra", "limit": 1000}
        return localsocket.ask(
            service.settings.data_dir, "search", question, schema.head_revision()
        )

    answer = eventually(
        lambda: (found := search())["data"]["total"] == 150 and found,
        120,
        lambda: f"all 150 to be found: {service.log()}",
        interval=0.5,
    )
    assert len(answer["data"]["results"]) == 150  # far more than one 64 KB line
    assert len(json.dumps(answer)) > 100_000
