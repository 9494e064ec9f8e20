"""A message's text is stored once, in its raw blob, and everything that shows or searches
it derives it from there: snippets, pages, the API, and `arsip reindex`."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import Engine, inspect, text

from archiver import migrate
from archiver.accounts import add_user, new_api_token
from archiver.parse import parse_message
from archiver.schema import head_revision
from archiver.search.indexer import Indexer
from archiver.search.service import search
from archiver.search.viewer import Viewer
from archiver.service import Core
from archiver.texts import message_text
from tests.support import simple_message
from tests.test_accounts import log_in
from tests.test_retention import archive
from web import create_app

NOW = datetime(2026, 2, 2, 12, 0, tzinfo=UTC)
BODY_SENTENCE = "The heron counted seventeen turquoise lanterns above the quarry"
ATTACHED_SENTENCE = "Invoice remark: the walrus prefers marmalade on Tuesdays"
PASSWORD = "correct horse battery staple"


def with_text_attachment(message_id: str = "notes@example.com") -> bytes:
    """A message from alice to bob whose text attachment holds ATTACHED_SENTENCE."""
    boundary = "==n=="
    return (
        "From: Alice <alice@example.com>\r\nTo: bob@example.com\r\nSubject: Notes\r\n"
        f"Date: Mon, 02 Feb 2026 09:00:00 +0000\r\nMessage-ID: <{message_id}>\r\n"
        f'MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="{boundary}"\r\n\r\n'
        f"--{boundary}\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{BODY_SENTENCE}.\r\n"
        f"--{boundary}\r\nContent-Type: text/plain; charset=utf-8\r\n"
        'Content-Disposition: attachment; filename="notes.txt"\r\n\r\n'
        f"{ATTACHED_SENTENCE}.\r\n"
        f"--{boundary}--\r\n"
    ).encode()


def found(core: Core, query: str) -> dict[str, str]:
    """Message-ID -> snippet of what an administrator finds for `query`."""
    backend = core.search_backend()
    try:
        with core.sessions() as session:
            page = search(session, backend, query, Viewer.administrator(), store=core.store)
    finally:
        backend.close()
    return {result.message_id: result.snippet for result in page.results}


def rebuild(core: Core) -> int:
    """What `arsip reindex` does."""
    backend = core.search_backend()
    try:
        return Indexer(core.sessions, backend, core.store).rebuild()
    finally:
        backend.close()


def database_holds(engine: Engine, database_url: str, sentence: str) -> bool:
    """Whether any byte of the database (SQLite file and WAL) or any row (PostgreSQL) holds
    `sentence`."""
    if engine.dialect.name == "sqlite":
        with engine.connect() as connection:
            connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
        path = Path(database_url.removeprefix("sqlite:///"))
        files = [path, path.with_name(path.name + "-wal")]
        needle = sentence.encode()
        return any(needle in f.read_bytes() for f in files if f.exists())
    tables = inspect(engine).get_table_names()
    with engine.connect() as connection:
        return any(
            connection.scalar(
                text(f"SELECT count(*) FROM {table} AS t WHERE t::text LIKE :s"),
                {"s": f"%{sentence}%"},
            )
            for table in tables
        )


def test_the_database_keeps_no_copy_of_a_message_text(core: Core, database_url: str) -> None:
    archive(core, with_text_attachment())
    assert not database_holds(core.engine, database_url, BODY_SENTENCE)
    assert not database_holds(core.engine, database_url, ATTACHED_SENTENCE)
    with core.sessions() as session:
        sha256 = session.scalar(text("SELECT sha256 FROM messages"))
    stored = message_text(core.store, sha256)
    assert BODY_SENTENCE in stored.body and ATTACHED_SENTENCE in (stored.attachments[0] or "")


def test_search_snippets_still_show_the_matching_words(core: Core) -> None:
    archive(
        core,
        with_text_attachment(),
        simple_message("other@example.com", body="Nothing about birds here.\r\n"),
    )
    snippets = found(core, "turquoise lanterns")
    assert list(snippets) == ["notes@example.com"]
    assert "<mark>turquoise</mark> <mark>lanterns</mark>" in snippets["notes@example.com"]


def test_attachment_text_is_searchable_after_reindex(core: Core) -> None:
    archive(core, with_text_attachment())
    assert rebuild(core) == 1
    assert list(found(core, "walrus marmalade")) == ["notes@example.com"]
    assert list(found(core, "heron")) == ["notes@example.com"]


def test_the_message_page_thread_and_api_show_the_body(core: Core) -> None:
    archive(
        core,
        with_text_attachment(),
        simple_message(
            "reply@example.com",
            subject="Re: Notes",
            sender="bob@example.com",
            to="alice@example.com",
            body=f"> {BODY_SENTENCE}.\r\n\r\nNoted, the walrus agrees.\r\n",
            extra_headers="In-Reply-To: <notes@example.com>\r\nReferences: <notes@example.com>\r\n",
        ),
    )
    with core.sessions.begin() as session:
        user = add_user(session, "bob@example.com", "user", PASSWORD)
        token = new_api_token(session, user)
    client = create_app(core).test_client()
    assert log_in(client, "bob@example.com", PASSWORD).status_code == 302
    page = client.get("/messages/notes@example.com")
    assert page.status_code == 200 and BODY_SENTENCE in page.text
    assert "notes.txt" in page.text
    with core.sessions() as session:
        thread_id = session.scalar(text("SELECT thread_id FROM messages LIMIT 1"))
    thread = client.get(f"/threads/{thread_id}")
    assert "Noted, the walrus agrees." in thread.text and BODY_SENTENCE in thread.text
    api = create_app(core).test_client()
    answer = api.get(
        "/api/v1/messages/reply@example.com", headers={"Authorization": f"Bearer {token}"}
    )
    assert answer.status_code == 200, answer.text
    assert "Noted, the walrus agrees." in answer.get_json()["text"]


OLD_BODY = "Budget review moved to the orchid room on Thursday"


def test_a_0010_database_upgrades_in_place_and_its_mail_stays_readable_and_searchable(
    core: Core, database_url: str
) -> None:
    """An archive written before 0011, text in its tables, upgraded by `arsip db upgrade`."""
    raw = simple_message("old@example.com", subject="Budget", body=f"{OLD_BODY}.\r\n")
    attached = with_text_attachment("attached@example.com")
    _downgrade_to_0010(core)  # the fixture's database stands in for an old installation
    with core.engine.begin() as connection:
        for pk, data in ((1, raw), (2, attached)):
            sha256 = core.store.put(data).sha256
            old = parse_message(data, NOW)  # the text Arsip kept in its tables until 0011
            part = old.attachments[0].text if old.attachments else None
            _insert_old_message(connection, pk, sha256, len(data), old.body_text, part)
    assert database_holds(core.engine, database_url, OLD_BODY)

    migrate.upgrade(core.engine)  # what `arsip db upgrade` runs
    migrate.compact(core.engine)  # `arsip db compact`
    assert migrate.current_revision(core.engine) == head_revision()
    columns = {c["name"] for c in inspect(core.engine).get_columns("messages")}
    assert "body_text" not in columns
    assert "text" not in {c["name"] for c in inspect(core.engine).get_columns("attachments")}
    assert not database_holds(core.engine, database_url, OLD_BODY)

    assert rebuild(core) == 2
    assert "<mark>orchid</mark>" in found(core, "orchid")["old@example.com"]
    assert list(found(core, "walrus")) == ["attached@example.com"]
    with core.sessions() as session:
        has_text = session.scalar(text("SELECT has_text FROM attachments"))
    assert has_text
    client = create_app(core).test_client()
    with core.sessions.begin() as session:
        add_user(session, "auditor@example.com", "auditor", PASSWORD)
    assert log_in(client, "auditor@example.com", PASSWORD).status_code == 302
    assert OLD_BODY in client.get("/messages/old@example.com").text

    # Down again, the columns come back filled from the blobs.
    migrate.downgrade(core.engine, "0010", store=core.store)
    with core.engine.connect() as connection:
        bodies = dict(connection.execute(text("SELECT message_id, body_text FROM messages")).all())
        parts = list(connection.scalars(text("SELECT text FROM attachments")))
    assert bodies == {
        "old@example.com": parse_message(raw, NOW).body_text,
        "attached@example.com": parse_message(attached, NOW).body_text,
    }
    assert parts == [parse_message(attached, NOW).attachments[0].text]
    assert ATTACHED_SENTENCE in parts[0] and OLD_BODY in bodies["old@example.com"]
    migrate.upgrade(core.engine)


def _downgrade_to_0010(core: Core) -> None:
    migrate.downgrade(core.engine, "0010")
    assert migrate.current_revision(core.engine) == "0010"


def _insert_old_message(
    connection, pk: int, sha256: str, size: int, body: str, part: str | None
) -> None:
    """Rows as Arsip wrote them before 0011: the text in `body_text` and `text`."""
    connection.execute(
        text(
            "INSERT INTO blobs (sha256, size_raw, size_stored, created_at) "
            "VALUES (:sha, :size, :size, :now)"
        ),
        {"sha": sha256, "size": size, "now": NOW.replace(tzinfo=None)},
    )
    connection.execute(
        text(
            "INSERT INTO messages (id, dedupe_key, message_id, sha256, size, subject, "
            "subject_key, from_address, from_name, date, received_at, envelope_from, "
            "thread_id, in_reply_to, list_id, body_text, flags, source) VALUES "
            "(:pk, :key, :mid, :sha, :size, 'Budget', 'budget', 'alice@example.com', 'Alice', "
            ":now, :now, '', :thread, NULL, NULL, :body, '[]', 'import')"
        ),
        {
            "pk": pk,
            "key": f"key{pk}",
            "mid": "old@example.com" if pk == 1 else "attached@example.com",
            "sha": sha256,
            "size": size,
            "now": NOW.replace(tzinfo=None),
            "thread": f"thread{pk}",
            "body": body,
        },
    )
    connection.execute(
        text(
            "INSERT INTO message_addresses (message_pk, role, address, name) "
            "VALUES (:pk, 'from', 'alice@example.com', 'Alice')"
        ),
        {"pk": pk},
    )
    if part is not None:
        connection.execute(
            text(
                "INSERT INTO attachments (message_pk, position, filename, content_type, size, "
                "sha256, text) VALUES (:pk, 0, 'notes.txt', 'text/plain', 10, 'x', :text)"
            ),
            {"pk": pk, "text": part},
        )
