"""Encryption at rest: blobs sealed with AES-256-GCM under ARSIP_BLOB_KEY_FILE."""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import zstandard

from archiver import migrate
from archiver.accounts import add_user
from archiver.archive import RawMessage
from archiver.config import SettingsError, load_settings
from archiver.core import Core, build_core
from archiver.store import BlobCorruptError, BlobKeyError, DirectoryBlobStore
from tests.cli_runner import run_arsip_here
from tests.support import ARSIP, JOURNAL, ROOT, service_env, settings_from, simple_message
from tests.test_accounts import log_in

SECRET_SUBJECT = "Quarterly figures for the eyes of the board only"
PASSWORD = "correct horse battery staple"


def secret_message(message_id: str = "secret@example.com") -> bytes:
    return simple_message(message_id, subject=SECRET_SUBJECT, body="Revenue is up.\r\n" * 50)


def key_file(path: Path, key: bytes | None = None) -> Path:
    path.write_bytes(key if key is not None else os.urandom(32))
    path.chmod(0o600)
    return path


def plaintext_shows(stored: bytes) -> bool:
    """Whether the subject can be read from a blob file, as is or zstd-decompressed from
    any offset (as someone with a copy of the disk would try)."""
    if SECRET_SUBJECT.encode() in stored:
        return True
    for start in range(len(stored)):
        try:
            opened = zstandard.ZstdDecompressor().decompress(
                stored[start:], max_output_size=1 << 20
            )
        except zstandard.ZstdError:
            continue
        if SECRET_SUBJECT.encode() in opened:
            return True
    return False


def test_sealed_blobs_hide_the_mail_and_read_back_intact(tmp_path: Path) -> None:
    store = DirectoryBlobStore(tmp_path, key=os.urandom(32))
    data = secret_message()
    stored = store.put(data)
    on_disk = store.path_for(stored.sha256).read_bytes()
    assert not plaintext_shows(on_disk)
    assert store.get(stored.sha256) == data
    store.verify(stored.sha256)
    assert stored.size_stored == len(on_disk) < len(data)  # compressed before it is sealed


def test_a_plain_store_would_show_the_mail(tmp_path: Path) -> None:
    """The check above is able to see plaintext: a blob without a key fails it."""
    store = DirectoryBlobStore(tmp_path)
    stored = store.put(secret_message())
    assert plaintext_shows(store.path_for(stored.sha256).read_bytes())


def test_a_changed_byte_in_a_sealed_blob_fails_verification(tmp_path: Path) -> None:
    store = DirectoryBlobStore(tmp_path, key=os.urandom(32))
    stored = store.put(secret_message())
    path = store.path_for(stored.sha256)
    damaged = bytearray(path.read_bytes())
    damaged[len(damaged) // 2] ^= 0x01
    path.write_bytes(bytes(damaged))
    with pytest.raises(BlobCorruptError, match="does not authenticate"):
        store.verify(stored.sha256)


def test_a_sealed_blob_copied_over_another_fails_authentication(tmp_path: Path) -> None:
    store = DirectoryBlobStore(tmp_path, key=os.urandom(32))
    one = store.put(simple_message("one@example.com"))
    two = store.put(simple_message("two@example.com"))
    shutil.copyfile(store.path_for(one.sha256), store.path_for(two.sha256))
    with pytest.raises(BlobCorruptError, match="does not authenticate"):
        store.get(two.sha256)


def test_an_archive_that_turns_encryption_on_reads_old_and_new_blobs(tmp_path: Path) -> None:
    old = DirectoryBlobStore(tmp_path).put(simple_message("old@example.com"))
    keyed = DirectoryBlobStore(tmp_path, key=os.urandom(32))
    new = keyed.put(simple_message("new@example.com"))
    assert keyed.get(old.sha256) == simple_message("old@example.com")
    assert keyed.get(new.sha256) == simple_message("new@example.com")
    assert sorted(keyed) == sorted([old.sha256, new.sha256])

    keyless = DirectoryBlobStore(tmp_path)
    assert keyless.get(old.sha256) == simple_message("old@example.com")
    with pytest.raises(BlobKeyError, match="encrypted and no key is configured"):
        keyless.get(new.sha256)
    with pytest.raises(BlobKeyError, match="sealed under key id"):
        DirectoryBlobStore(tmp_path, key=os.urandom(32)).get(new.sha256)


@pytest.mark.parametrize(
    "write",
    [
        lambda key: key,
        lambda key: key.hex().encode() + b"\n",
        lambda key: base64.b64encode(key) + b"\n",
    ],
    ids=["raw", "hex", "base64"],
)
def test_a_key_file_may_hold_raw_hex_or_base64(tmp_path: Path, write) -> None:
    key = os.urandom(32)
    (tmp_path / "blob.key").write_bytes(write(key))
    settings = load_settings(
        environ={"ARSIP_DATA_DIR": str(tmp_path), "ARSIP_BLOB_KEY_FILE": str(tmp_path / "blob.key")}
    )
    assert settings.blob_key() == key
    assert key.hex() not in repr(settings) and str(key) not in repr(settings)


@pytest.mark.parametrize(
    ("content", "says"),
    [
        (None, "cannot read it"),
        (b"", "holds no 32-byte key"),
        (os.urandom(31), "holds no 32-byte key"),
        (b"g" * 64 + b"\n", "holds no 32-byte key"),  # 64 characters, not all hex
        (b"correct horse battery staple 123", "holds no 32-byte key"),  # a password
    ],
    ids=["missing", "empty", "short", "bad-hex", "password"],
)
def test_a_bad_key_file_is_a_clear_settings_error(
    tmp_path: Path, content: bytes | None, says: str
) -> None:
    path = tmp_path / "blob.key"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(SettingsError) as raised:
        load_settings(environ={"ARSIP_DATA_DIR": str(tmp_path), "ARSIP_BLOB_KEY_FILE": str(path)})
    assert str(raised.value).startswith(f"ARSIP_BLOB_KEY_FILE: {path}: {says}")
    if content:
        assert content.decode(errors="replace").strip() not in str(raised.value)


def test_a_bad_key_file_stops_the_cli_with_one_line(tmp_path: Path) -> None:
    env = {
        **os.environ,
        **service_env(tmp_path / "var"),
        "ARSIP_BLOB_KEY_FILE": str(tmp_path / "nowhere.key"),
    }
    result = subprocess.run(
        [ARSIP, "verify"], env=env, cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"arsip: bad setting: ARSIP_BLOB_KEY_FILE: {tmp_path / 'nowhere.key'}: "
        "cannot read it (No such file or directory)"
    ]


@pytest.fixture
def sealed_core(tmp_path: Path, database_url: str) -> Iterator[Core]:
    """The archiver's parts with a blob key, on SQLite and PostgreSQL."""
    key = key_file(tmp_path / "blob.key")
    env = service_env(tmp_path / "var", database_url, ARSIP_BLOB_KEY_FILE=str(key))
    core = build_core(settings_from(env))
    migrate.upgrade(core.engine)
    yield core
    core.engine.dispose()


def test_the_web_ui_shows_sealed_mail_raw_and_as_eml(sealed_core: Core) -> None:
    from web import create_app

    when = datetime(2026, 2, 2, 12, 0, tzinfo=UTC)
    with sealed_core.sessions.begin() as session:
        sealed_core.archive.archive_batch(
            session, [RawMessage(secret_message(), "", ["bob@example.com"], when, "import")]
        )
        add_user(session, "audrey@example.com", "auditor", PASSWORD)
    assert not plaintext_shows(next(sealed_core.settings.blob_dir.rglob("*.zst")).read_bytes())
    client = create_app(sealed_core).test_client()
    assert log_in(client, "audrey@example.com", PASSWORD).status_code == 302
    raw = client.get("/messages/secret@example.com/raw")
    assert raw.status_code == 200 and SECRET_SUBJECT in raw.get_data(as_text=True)
    assert client.get("/messages/secret@example.com/eml").data == secret_message()


def run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return run_arsip_here(args, env)


def test_a_service_that_turns_encryption_on_keeps_every_message_readable(
    make_service, tmp_path: Path
) -> None:
    service = make_service()
    with service.smtp() as client:
        client.sendmail("alice@example.com", [JOURNAL], simple_message("before@example.com"))
    service.wait_until_archived()
    service.stop()

    service.env["ARSIP_BLOB_KEY_FILE"] = str(key_file(tmp_path / "blob.key"))
    service.settings = settings_from(service.env)
    service.close()  # forget the keyless core: the next look at the store uses the key
    service._core = None
    service.start()
    with service.smtp() as client:
        client.sendmail("alice@example.com", [JOURNAL], secret_message())
    service.wait_until_archived()

    blob_files = list(service.settings.blob_dir.rglob("*.zst"))
    assert len(blob_files) == 2
    assert sum(plaintext_shows(path.read_bytes()) for path in blob_files) == 0  # sealed...
    assert sum(path.read_bytes().startswith(b"ARSIPENC") for path in blob_files) == 1  # ...one

    verified = service.run_cli("verify")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert "checked 2 blobs: 0 missing, 0 corrupt" in verified.stdout
    exported = tmp_path / "all.mbox"
    assert service.run_cli("export", "-o", str(exported)).returncode == 0
    assert b"before@example.com" in exported.read_bytes()
    assert SECRET_SUBJECT.encode() in exported.read_bytes()
    assert service.run_cli("reindex").returncode == 0
    found = service.run_cli("search", "subject:quarterly")
    assert "secret@example.com" in found.stdout, found.stdout + found.stderr

    keyless = {k: v for k, v in service.env.items() if k != "ARSIP_BLOB_KEY_FILE"}
    refused = run(keyless, "verify")
    assert refused.returncode == 1
    assert "encrypted and no key is configured" in refused.stderr
    assert "Traceback" not in refused.stderr

    sealed = next(path for path in blob_files if path.read_bytes().startswith(b"ARSIPENC"))
    damaged = bytearray(sealed.read_bytes())
    damaged[-1] ^= 0x80
    sealed.write_bytes(bytes(damaged))
    broken = service.run_cli("verify")
    assert broken.returncode == 1
    assert f"corrupt {sealed.name.removesuffix('.zst')}" in broken.stdout
    assert hashlib.sha256(secret_message()).hexdigest() == sealed.name.removesuffix(".zst")
