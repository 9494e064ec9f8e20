"""Moving loose blobs into packs, merging packs, and deleting blobs that live in packs.

One process at a time does any of this: an exclusive `flock` on `packs/.lock` (which works
across processes on one machine; on a shared mount run the repack job in one place, the
scheduler role). Readers never take the lock, and every step leaves each blob readable:

1. a new pack is written to temporary files, fsync'd, renamed into place (.pack, then
   .idx) and the directory fsync'd;
2. only then are its loose files unlinked (and their directories synced).

A crash between the two leaves a blob both loose and packed, which reads the same; the
next repack finds it packed and only unlinks the loose file. A crash while writing leaves
temporary files, removed by the next repack.

Deletion must really remove the bytes (compliance), yet a retention sweep deletes in
batches of a thousand and rewriting a big pack per batch would cost gigabytes each time.
So a deleted record is overwritten with zeros in place and synced (the bytes are gone at
once, even from a file another process holds open), noted in `<name>.wiped`, and its
space is reclaimed later: a repack rewrites (compacts) packs that are a quarter wiped, and
merges drop wiped records.

Packs are merged geometrically, as git does: the smallest packs roll up into one until
each pack is at least twice the size of all smaller ones together, so an archive of N
blobs has O(log N) packs (at most `MAX_PACK_BLOBS` records per pack bounds the memory a
merge needs for its index).
"""

from __future__ import annotations

import fcntl
import hashlib
import heapq
import itertools
import logging
import os
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import zstandard

from archiver.store.codec import Codec
from archiver.store.dictionary import MAX_SAMPLES
from archiver.store.durable import fsync_directory, sync
from archiver.store.errors import BlobCorruptError, BlobKeyError
from archiver.store.loose import LooseBlobs
from archiver.store.packs import (
    RECORD_HEADER,
    RECORD_MAGIC,
    Pack,
    PackSet,
    PackWriter,
    is_wiped,
    parse_record,
    remove_pack,
)
from archiver.store.sealing import unseal

log = logging.getLogger(__name__)

MAX_PACK_BLOBS = 1_000_000
MAX_NEW_PACK_BYTES = 512 * 1024 * 1024
COMPACT_WIPED_SHARE = 0.25
GEOMETRIC_FACTOR = 2


class StoreBusyError(RuntimeError):
    """Another process is repacking or deleting in this store right now."""


@dataclass
class RepackReport:
    """What one repack did."""

    packed: int = 0  # loose blobs moved into a new pack
    already_packed: int = 0  # loose copies of packed blobs, only unlinked
    skipped: list[str] = field(default_factory=list)  # loose blobs that did not open intact
    packs_written: int = 0
    packs_merged: int = 0
    packs_compacted: int = 0
    seconds: float = 0.0


class Repacker:
    """Repacks, merges and deletes in one store (see the module docstring)."""

    def __init__(self, loose: LooseBlobs, packs: PackSet, codec: Codec) -> None:
        self.loose = loose
        self.packs = packs
        self.codec = codec
        self.directory = packs.directory

    @contextmanager
    def locked(self, wait: bool = True) -> Iterator[None]:
        """Hold the store's repack lock; raises `StoreBusyError` if `wait` is False and
        another process holds it."""
        self.directory.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.directory / ".lock", os.O_RDWR | os.O_CREAT, 0o640)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
            except BlockingIOError:
                raise StoreBusyError(f"{self.directory} is being repacked") from None
            self._remove_temporary_files()
            self.packs.refresh(force=True)
            yield
        finally:
            os.close(fd)  # releases the lock
            self.packs.refresh(force=True)

    def _remove_temporary_files(self) -> None:
        """Temporary packs left by a repack that crashed (only the lock holder writes)."""
        for entry in os.scandir(self.directory):
            if entry.name.startswith(".tmp-"):
                os.unlink(entry.path)

    def repack(
        self, on_blob: Callable[[int], None] | None = None, wait: bool = True
    ) -> RepackReport:
        """Move every loose blob into packs, then merge and compact packs."""
        began = time.monotonic()
        report = RepackReport()
        with self.locked(wait):
            dictionary = self._dictionary()
            writer: PackWriter | None = None
            moved: list[str] = []
            for sha256 in self._loose_in_order():
                digest = bytes.fromhex(sha256)
                if self.packs.locate(digest) is not None:
                    report.already_packed += 1
                    moved.append(sha256)
                elif (record := self._packable(sha256, dictionary, report)) is not None:
                    writer = writer or PackWriter(self.directory)
                    writer.add(digest, *record)
                    moved.append(sha256)
                    report.packed += 1
                if on_blob is not None:
                    on_blob(1)
                if writer is not None and (
                    len(writer) >= MAX_PACK_BLOBS or writer.bytes_written >= MAX_NEW_PACK_BYTES
                ):
                    report.packs_written += self._finish(writer, moved)
                    writer, moved = None, []
            if writer is not None or moved:
                report.packs_written += self._finish(writer, moved)
            report.packs_compacted += self._retire_dictionaries() + self._compact()
            report.packs_merged += self._merge()
        report.seconds = time.monotonic() - began
        return report

    def _loose_in_order(self) -> Iterator[str]:
        """Loose blobs one fan-out directory at a time: a migration of millions never
        holds all their names."""
        for directory in sorted(self.loose.root.glob("??")):
            yield from sorted(
                entry.name.removesuffix(".zst")
                for entry in os.scandir(directory)
                if entry.name.endswith(".zst")
            )

    def _loose_by_age(self) -> Iterator[tuple[int, str]]:
        for sha256 in self._loose_in_order():
            try:
                yield self.loose.path_for(sha256).stat().st_mtime_ns, sha256
            except FileNotFoundError:
                continue

    def _finish(self, writer: PackWriter | None, moved: list[str]) -> int:
        """Make a pack durable and visible, then (only then) unlink its loose files."""
        name = writer.finish() if writer is not None else None
        self.packs.refresh(force=True)
        self.loose.unlink_many(moved)
        return 1 if name is not None else 0

    def _packable(
        self, sha256: str, dictionary: zstandard.ZstdCompressionDict | None, report: RepackReport
    ) -> tuple[int, bytes] | None:
        """(raw length, record payload) for a loose blob, re-encoded with the dictionary
        after its hash was checked; a blob this store cannot open (sealed under another
        key, or without a key) is copied as it is; a damaged one stays loose for
        `arsip verify` to report."""
        stored = self.loose.read(sha256)
        if stored is None:
            return None
        try:
            raw = self.codec.decode(sha256, stored)
        except BlobKeyError:
            return 0, stored
        except BlobCorruptError:
            report.skipped.append(sha256)
            log.warning("repack: loose blob %s is damaged; left in place", sha256)
            return None
        if hashlib.sha256(raw).hexdigest() != sha256:
            report.skipped.append(sha256)
            log.warning("repack: loose blob %s does not match its name; left in place", sha256)
            return None
        return len(raw), self.codec.encode(sha256, raw, dictionary)

    def _dictionary(self) -> zstandard.ZstdCompressionDict | None:
        """The dictionary for new records: the newest one not retired, or one trained now
        on a sample of the loose and packed blobs (None while there are too few)."""
        dictionaries = self.codec.dictionaries
        current = dictionaries.current()
        if current is not None:
            return dictionaries.get(current)
        # The newest mail: retention reaches a sample (and so retires the dictionary)
        # only a whole retention period later.
        newest = heapq.nlargest(MAX_SAMPLES, self._loose_by_age())
        loose = ((sha256, self.loose.read(sha256)) for _mtime, sha256 in newest)
        packed = (
            (digest.hex(), parse_record(pack.read(offset, length)).payload)
            for pack in self.packs.packs()
            for digest, _pack, offset, length in pack.located()
            if not is_wiped(pack.read(offset, 8))
        )
        samples: dict[str, bytes] = {}
        for sha256, stored in itertools.chain(loose, packed):
            try:
                raw = self.codec.decode(sha256, stored) if stored is not None else None
            except (BlobKeyError, BlobCorruptError):
                continue
            if raw is not None:
                samples[sha256] = raw
            if len(samples) >= MAX_SAMPLES:
                break
        return dictionaries.train(samples)

    def _retire_dictionaries(self) -> int:
        """Re-encode the records of retired dictionaries with the current one, then remove
        the retired ones; returns how many packs were rewritten. A record this store
        cannot open (no key) keeps its dictionary, which then stays."""
        dictionaries = self.codec.dictionaries
        retired = dictionaries.retired()
        if not retired:
            return 0
        replacement = self._dictionary()
        stuck: set[int] = set()
        packs = self.packs.packs()
        for pack in packs:
            self._rewrite([pack], Reencode(self.codec, retired, replacement, stuck))
        for dict_id in retired - stuck:
            dictionaries.remove(dict_id)
        fsync_directory(self.directory)
        return len(packs)

    def _wiped_share(self, pack: Pack) -> float:
        return wiped_bytes(self.directory, pack.name) / max(pack.size(), 1)

    def _compact(self) -> int:
        """Rewrite packs that deletions have left a quarter empty."""
        compacted = 0
        for pack in self.packs.packs():
            if self._wiped_share(pack) >= COMPACT_WIPED_SHARE:
                self._rewrite([pack])
                compacted += 1
        return compacted

    def _merge(self) -> int:
        """Roll the smallest packs into one until the sizes grow geometrically."""
        packs = sorted(
            (p for p in self.packs.packs() if p.count < MAX_PACK_BLOBS), key=lambda p: p.size()
        )
        total, rolled = 0, 0
        for position, pack in enumerate(packs):
            if position and pack.size() < GEOMETRIC_FACTOR * total:
                rolled = position + 1
            total += pack.size()
        chosen = packs[:rolled]
        while sum(p.count for p in chosen) > MAX_PACK_BLOBS:
            chosen.pop()
        if len(chosen) < 2:
            return 0
        self._rewrite(chosen)
        return len(chosen)

    def _rewrite(self, sources: list[Pack], reencode: Reencode | None = None) -> None:
        """One new pack of every live (not wiped) record of `sources`, copied as they are
        (or passed through `reencode`) and in sha256 order; then the sources are removed."""
        writer = PackWriter(self.directory)
        streams = [pack.located() for pack in sources]
        try:
            for digest, pack, offset, length in heapq.merge(*streams, key=lambda e: e[0]):
                data = pack.read(offset, length)
                if data[: len(RECORD_MAGIC)] != RECORD_MAGIC or digest in writer:
                    continue
                if reencode is not None:
                    data = reencode(data)
                writer.add_record(data)
        except BaseException:
            writer.abort()
            raise
        name = writer.finish()
        for pack in sources:
            if pack.name != name:
                remove_pack(self.directory, pack.name)
        self.packs.refresh(force=True)

    def remove(self, sha256s: Iterable[str]) -> None:
        """Delete blobs for good: loose files unlinked, packed records overwritten with
        zeros and synced (see the module docstring); missing ones are not an error."""
        doomed = sorted(set(sha256s))
        with self.locked():
            self.loose.unlink_many(doomed)
            for pack in self.packs.packs():
                ranges = [
                    found
                    for sha256 in doomed
                    if (found := pack.find(bytes.fromhex(sha256)))
                    and not is_wiped(pack.read(found[0], RECORD_HEADER.size))
                ]
                if ranges:
                    wipe_records(self.directory, pack.name, ranges)
            self.codec.dictionaries.retire_if_trained_on(doomed)


@dataclass
class Reencode:
    """Re-encodes pack records compressed with a retired dictionary (`retired`) with
    `dictionary`; notes in `stuck` the dictionaries of records it cannot open."""

    codec: Codec
    retired: set[int]
    dictionary: zstandard.ZstdCompressionDict | None
    stuck: set[int]

    def __call__(self, data: bytes) -> bytes:
        record = parse_record(data)
        sha256 = record.digest.hex()
        try:
            compressed = unseal(self.codec.cipher, sha256, record.payload)
        except BlobKeyError:
            self.stuck |= self.retired  # cannot tell which: keep them all
            return data
        if zstandard.get_frame_parameters(compressed).dict_id not in self.retired:
            return data
        raw = self.codec.decode(sha256, record.payload)
        payload = self.codec.encode(sha256, raw, self.dictionary)
        return RECORD_HEADER.pack(RECORD_MAGIC, record.digest, len(raw), len(payload)) + payload


def wipe_records(directory: Path, name: str, ranges: list[tuple[int, int]]) -> None:
    """Overwrite records of pack `name` with zeros, sync, and note the bytes in
    `<name>.wiped` (one decimal count a line) for compaction."""
    fd = os.open(directory / f"{name}.pack", os.O_WRONLY)
    try:
        for offset, length in ranges:
            os.pwrite(fd, bytes(length), offset)
        os.fsync(fd)
    finally:
        os.close(fd)
    with open(directory / f"{name}.wiped", "a", encoding="ascii") as note:
        note.write(f"{sum(length for _offset, length in ranges)}\n")
        note.flush()
        os.fsync(note.fileno())
    sync(directory, lambda: fsync_directory(directory))


def wiped_bytes(directory: Path, name: str) -> int:
    """How many bytes of pack `name` deletions have zeroed (wiping twice counts twice:
    an estimate that can only make compaction come sooner)."""
    try:
        text = (directory / f"{name}.wiped").read_text(encoding="ascii")
    except FileNotFoundError:
        return 0
    return sum(int(line) for line in text.split())
