"""The blob store: stored once, compressed, atomic, and `arsip verify` finds damage."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from archiver.store import BlobCorruptError, BlobMissingError, DirectoryBlobStore
from archiver.store import durable as store_module
from tests.support import JOURNAL, simple_message


def test_same_bytes_are_stored_once_and_come_back_intact(tmp_path: Path) -> None:
    store = DirectoryBlobStore(tmp_path)
    data = simple_message("x@example.com", body="compressible text\r\n" * 500)
    first = store.put(data)
    second = store.put(data)
    assert first.sha256 == hashlib.sha256(data).hexdigest()
    assert first.created and not second.created
    assert first.size_stored < first.size_raw / 5
    assert store.get(first.sha256) == data
    assert list(store) == [first.sha256]
    assert not [p for p in tmp_path.rglob("*") if p.name.endswith(".tmp")]


def test_without_syncfs_every_file_and_directory_is_fsynced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store_module, "_SYNCFS", None)
    synced: list[int] = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: synced.append(fd) or real_fsync(fd))
    store = DirectoryBlobStore(tmp_path)
    stored = store.put_many([b"one\r\n", b"two\r\n"])
    assert [store.get(blob.sha256) for blob in stored] == [b"one\r\n", b"two\r\n"]
    assert len(synced) >= 4  # two files, their directories (and the new fan-out folders)


def test_damage_is_reported_not_returned(tmp_path: Path) -> None:
    store = DirectoryBlobStore(tmp_path)
    stored = store.put(b"hello world\r\n")
    path = store.path_for(stored.sha256)
    path.write_bytes(path.read_bytes()[:-3] + b"xyz")
    with pytest.raises(BlobCorruptError):
        store.verify(stored.sha256)
    os.unlink(path)
    with pytest.raises(BlobMissingError):
        store.get(stored.sha256)


def test_arsip_verify_reports_missing_and_corrupt_blobs(make_service) -> None:
    service = make_service()
    with service.smtp() as client:
        for n in range(3):
            client.sendmail("alice@example.com", [JOURNAL], simple_message(f"v{n}@example.com"))
    service.wait_until_archived()
    healthy = service.run_cli("verify")
    assert healthy.returncode == 0, healthy.stderr
    assert "checked 3 blobs: 0 missing, 0 corrupt" in healthy.stdout

    store = service.core().store
    missing, corrupt, _ = sorted(store)
    store.path_for(missing).unlink()
    store.path_for(corrupt).write_bytes(b"not zstd at all")
    damaged = service.run_cli("verify")
    assert damaged.returncode == 1
    assert f"missing {missing}" in damaged.stdout
    assert f"corrupt {corrupt}" in damaged.stdout
    assert "Traceback" not in damaged.stderr
