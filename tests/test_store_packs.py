"""Pack files: loose blobs move into dictionary-compressed packs, and everything the store
promised before (byte-for-byte reads, durability, encryption, deletion, verify) still holds.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import select

from archiver.models import Message
from archiver.retention.rules import add_policy
from archiver.service import Core
from archiver.store import BlobCorruptError, BlobKeyError, BlobMissingError, DirectoryBlobStore
from archiver.store.packs import PackWriter
from tests.support import JOURNAL, ROOT, simple_message
from tests.test_encryption import SECRET_SUBJECT, plaintext_shows
from tests.test_retention import OPERATOR, archive, mail, sweep, years_ago


def list_mail(count: int, start: int = 0, **options: str) -> list[bytes]:
    """Distinct messages that look like list traffic (enough of them to train on)."""
    return [
        simple_message(
            f"post-{n}@lists.example.com",
            subject=f"Re: [dev] release plan, part {n % 17}",
            sender=f"member{n % 31}@example.org",
            to="dev@lists.example.com",
            extra_headers=(
                "List-Id: Developers <dev.lists.example.com>\r\n"
                "List-Unsubscribe: <mailto:dev-leave@lists.example.com>\r\n"
                f"Received: from mx{n % 5}.example.org by lists.example.com; {n}\r\n"
            ),
            body=options.get("body", f"Point {n}: the build for step {n * 7} is green.\r\n" * 3),
        )
        for n in range(start, start + count)
    ]


def pack_files(store: DirectoryBlobStore) -> list[Path]:
    return sorted(p for p in (store.root / "packs").glob("*.pack") if not p.name.startswith("."))


def loose_files(store: DirectoryBlobStore) -> list[Path]:
    return sorted(store.root.glob("??/*.zst"))


def repack_with_power_cut(
    store: DirectoryBlobStore, monkeypatch: pytest.MonkeyPatch, owner: object, step: str
) -> None:
    """Run a repack that stops dead when it reaches `owner.step`."""

    def power_cut(*_args: object) -> None:
        raise KeyboardInterrupt(f"power cut at {step}")

    with monkeypatch.context() as patch:
        patch.setattr(owner, step, power_cut)
        with pytest.raises(KeyboardInterrupt):
            store.repack()


def test_repacked_messages_read_back_byte_for_byte(tmp_path: Path) -> None:
    store = DirectoryBlobStore(tmp_path)
    messages = list_mail(400)
    stored = store.put_many(messages)
    loose_bytes = sum(path.stat().st_size for path in loose_files(store))

    report = store.repack()

    assert report.packed == 400 and report.packs_written == 1 and not report.skipped
    assert not loose_files(store)
    assert len(pack_files(store)) == 1
    assert list((store.root / "packs").glob("dict-*.zdict")), "a dictionary was trained"
    assert pack_files(store)[0].stat().st_size < loose_bytes / 2
    for blob, data in zip(stored, messages, strict=True):
        assert store.get(blob.sha256) == data
        assert store.exists(blob.sha256)
        store.verify(blob.sha256)
    assert sorted(store) == sorted(blob.sha256 for blob in stored)
    again = store.put(messages[0])
    assert not again.created and not loose_files(store)


def test_store_lists_loose_and_packed_blobs_once(tmp_path: Path) -> None:
    store = DirectoryBlobStore(tmp_path)
    packed = store.put_many(list_mail(10))
    store.repack()
    loose = store.put_many(list_mail(5, start=10))
    # a blob both loose and packed, as a crash between pack and unlink leaves it
    both = packed[0].sha256
    store.loose.write_many([(both, store.codec.encode(both, list_mail(1)[0]))])
    names = list(store)
    assert sorted(names) == sorted({b.sha256 for b in packed + loose})


def test_crash_between_pack_and_unlink_loses_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = DirectoryBlobStore(tmp_path)
    messages = list_mail(50)
    stored = store.put_many(messages)
    repack_with_power_cut(store, monkeypatch, store.loose, "unlink_many")
    assert len(loose_files(store)) == 50 and len(pack_files(store)) == 1
    reader = DirectoryBlobStore(tmp_path)  # as a restarted process would
    assert [reader.get(blob.sha256) for blob in stored] == messages

    report = reader.repack()
    assert report.already_packed == 50 and report.packed == 0
    assert not loose_files(reader) and len(pack_files(reader)) == 1
    assert [reader.get(blob.sha256) for blob in stored] == messages


def test_crash_while_writing_a_pack_loses_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = DirectoryBlobStore(tmp_path)
    messages = list_mail(30)
    stored = store.put_many(messages)
    repack_with_power_cut(store, monkeypatch, PackWriter, "finish")
    assert list((tmp_path / "packs").glob(".tmp-*")), "the half-written pack is left over"
    assert not pack_files(store) and len(loose_files(store)) == 30
    assert [store.get(blob.sha256) for blob in stored] == messages

    store.repack()
    assert not list((tmp_path / "packs").glob(".tmp-*")) and not loose_files(store)
    assert [store.get(blob.sha256) for blob in stored] == messages


def test_deleted_message_bytes_are_gone_from_the_pack(tmp_path: Path) -> None:
    store = DirectoryBlobStore(tmp_path)
    stored = store.put_many(list_mail(300))
    store.repack()
    doomed, kept = stored[7].sha256, stored[8].sha256
    payload = store.packs.locate(bytes.fromhex(doomed))
    assert payload is not None
    pack, offset, length = payload
    record = pack.read(offset, length)
    assert record in pack_files(store)[0].read_bytes()

    store.delete_many([doomed])

    everything = b"".join(p.read_bytes() for p in tmp_path.rglob("*") if p.is_file())
    assert record[60:] not in everything  # the record's payload, past its header
    assert not store.exists(doomed)
    with pytest.raises(BlobMissingError):
        store.get(doomed)
    assert doomed not in set(store)
    store.verify(kept)
    store.delete_many([doomed])  # deleting twice is not an error


def test_repack_compacts_a_pack_that_deletions_emptied(tmp_path: Path) -> None:
    store = DirectoryBlobStore(tmp_path)
    store.put_many(list_mail(300))
    store.repack()  # trains the dictionary on these
    messages = list_mail(300, start=300)
    stored = store.put_many(messages)
    store.repack()
    assert len(pack_files(store)) == 1  # the two packs were merged
    before = pack_files(store)[0].stat().st_size
    store.delete_many([blob.sha256 for blob in stored[:250]])

    report = store.repack()

    assert report.packs_compacted == 1 and not store.codec.dictionaries.retired()
    assert len(pack_files(store)) == 1 and pack_files(store)[0].stat().st_size < before * 0.7
    assert [store.get(blob.sha256) for blob in stored[250:]] == messages[250:]
    assert not set(store) & {blob.sha256 for blob in stored[:250]}


def test_deleting_a_training_sample_retires_the_dictionary(tmp_path: Path) -> None:
    store = DirectoryBlobStore(tmp_path)
    messages = list_mail(300)
    stored = store.put_many(messages)
    store.repack()
    (old_id,) = store.codec.dictionaries.ids()
    sample = sorted(store.codec.dictionaries.samples(old_id))[0]

    store.delete_many([sample])
    assert store.codec.dictionaries.retired() == {old_id}
    store.repack()

    assert old_id not in store.codec.dictionaries.ids()
    assert not list((tmp_path / "packs").glob(f"dict-{old_id}.*"))
    assert len(store.codec.dictionaries.ids()) == 1
    fresh = DirectoryBlobStore(tmp_path)
    for blob, data in zip(stored, messages, strict=True):
        if blob.sha256 != sample:
            assert fresh.get(blob.sha256) == data


def test_retention_deletion_removes_bytes_from_pack(core: Core) -> None:
    unique = "Acquisition codename TANGERINE-7731 stays between us"
    archive(
        core,
        *[mail(f"old-{n}@x", years_ago(3), X_Note=unique if n == 3 else "none") for n in range(6)],
        mail("new@x", years_ago(0.1)),
    )
    core.store.repack()
    with core.sessions() as session:
        rows = session.execute(select(Message.message_id, Message.sha256)).all()
    sha256s = {message_id: sha256 for message_id, sha256 in rows}
    doomed = sha256s["old-3@x"]
    pack, offset, length = core.store.packs.locate(bytes.fromhex(doomed)) or (None, 0, 0)
    assert pack is not None
    payload = pack.read(offset, length)[60:]
    with core.sessions.begin() as session:
        add_policy(session, OPERATOR, "two years", "2y")

    report = sweep(core)

    assert report.deleted == 6
    store_bytes = b"".join(p.read_bytes() for p in core.store.root.rglob("*") if p.is_file())
    assert payload not in store_bytes and unique.encode() not in store_bytes
    assert not core.store.exists(doomed)
    assert core.store.get(sha256s["new@x"]).startswith(b"From: alice@example.com")


def test_encrypted_pack_records_are_unreadable_without_key(tmp_path: Path) -> None:
    key = os.urandom(32)
    store = DirectoryBlobStore(tmp_path, key=key)
    messages = list_mail(250, body=f"{SECRET_SUBJECT}\r\n" * 3)
    stored = store.put_many(messages)
    store.repack()

    for path in (tmp_path / "packs").iterdir():
        if path.suffix in (".pack", ".zdict"):
            assert not plaintext_shows(path.read_bytes()), path.name
    assert store.get(stored[5].sha256) == messages[5]
    with pytest.raises(BlobKeyError):
        DirectoryBlobStore(tmp_path).get(stored[5].sha256)
    with pytest.raises(BlobKeyError):
        DirectoryBlobStore(tmp_path, key=os.urandom(32)).get(stored[5].sha256)


def test_repack_with_a_key_seals_old_plain_blobs(tmp_path: Path) -> None:
    old = DirectoryBlobStore(tmp_path).put(simple_message("old@x", subject=SECRET_SUBJECT))
    keyed = DirectoryBlobStore(tmp_path, key=os.urandom(32))
    keyed.repack()
    assert not plaintext_shows(pack_files(keyed)[0].read_bytes())
    assert SECRET_SUBJECT.encode() in keyed.get(old.sha256)


def test_verify_finds_a_flipped_byte_in_a_pack(tmp_path: Path) -> None:
    store = DirectoryBlobStore(tmp_path)
    stored = store.put_many(list_mail(20))
    store.repack()
    pack, offset, length = store.packs.locate(bytes.fromhex(stored[3].sha256)) or (None, 0, 0)
    assert pack is not None
    path = pack_files(store)[0]
    data = bytearray(path.read_bytes())
    data[offset + length - 5] ^= 0x01
    path.write_bytes(bytes(data))

    with pytest.raises(BlobCorruptError):
        DirectoryBlobStore(tmp_path).verify(stored[3].sha256)
    for blob in stored[:3] + stored[4:]:
        DirectoryBlobStore(tmp_path).verify(blob.sha256)


def test_a_second_process_sees_a_pack_written_by_the_first(tmp_path: Path) -> None:
    reader = DirectoryBlobStore(tmp_path)
    messages = list_mail(40)
    stored = reader.put_many(messages)
    assert reader.get(stored[0].sha256) == messages[0]  # read loose, no packs seen yet
    repack = (
        "import sys; from pathlib import Path; from archiver.store import DirectoryBlobStore;"
        "print(DirectoryBlobStore(Path(sys.argv[1])).repack().packed)"
    )
    done = subprocess.run(
        [sys.executable, "-c", repack, str(tmp_path)], cwd=ROOT, capture_output=True, text=True
    )
    assert done.stdout.strip() == "40", done.stderr
    assert not loose_files(reader)
    assert [reader.get(blob.sha256) for blob in stored] == messages
    assert reader.exists(stored[1].sha256)


def test_packs_merge_so_their_number_stays_small(tmp_path: Path) -> None:
    store = DirectoryBlobStore(tmp_path)
    everything: list[tuple[str, bytes]] = []
    for round_ in range(8):
        messages = list_mail(20, start=round_ * 20)
        stored = store.put_many(messages)
        everything += [(blob.sha256, data) for blob, data in zip(stored, messages, strict=True)]
        store.repack()
    assert len(pack_files(store)) <= 3
    assert all(store.get(sha256) == data for sha256, data in everything)


def test_arsip_store_repack_migrates_an_existing_archive(make_service) -> None:
    service = make_service()
    sent = [simple_message(f"m{n}@example.com", body=f"message {n}\r\n") for n in range(5)]
    with service.smtp() as client:
        for message in sent:
            client.sendmail("alice@example.com", [JOURNAL], message)
    service.wait_until_archived()
    store = service.core().store
    assert len(loose_files(store)) == 5

    repacked = service.run_cli("store", "repack")
    assert repacked.returncode == 0, repacked.stderr
    assert "packed 5 blobs" in repacked.stdout
    assert not loose_files(store) and len(pack_files(store)) == 1
    healthy = service.run_cli("verify")
    assert healthy.returncode == 0, healthy.stdout + healthy.stderr
    assert "checked 5 blobs: 0 missing, 0 corrupt" in healthy.stdout

    path = pack_files(store)[0]
    data = bytearray(path.read_bytes())
    data[-3] ^= 0xFF  # inside the last record's payload
    path.write_bytes(bytes(data))
    damaged = service.run_cli("verify")
    assert damaged.returncode == 1 and "corrupt " in damaged.stdout
    assert "Traceback" not in damaged.stderr
