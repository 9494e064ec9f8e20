"""Pack files: many blobs in one immutable file, found through a sorted index.

    packs/<name>.pack   header b"ARSIPPCK" version (1 byte) 3 zero bytes, then records:
                        b"ARSR" sha256 (32 bytes) raw length (u64) payload length (u32)
                        payload (exactly what a loose file would hold: a zstd frame,
                        sealed with a key)
    packs/<name>.idx    header b"ARSIPIDX" version (1 byte) 3 zero bytes count (u64),
                        fan-out table (256 x u32: entries whose first byte is <= b),
                        then `count` entries sorted by sha256: sha256 (32 bytes)
                        offset (u64) record length (u32)

All integers are little-endian. Records describe themselves, so a pack can be checked or
re-indexed without its .idx. The name is derived from the sha256s inside (two packs of
the same blobs are one file). A pack is visible once its .idx exists: writers rename the
.pack first and the .idx last, and removers unlink in the other order.

Readers map the .idx files (`mmap`) and binary-search them within the fan-out bucket, so
a process's memory does not grow with the archive: at 10M messages the 440 MB of index
is read through the page cache, shared by every process, and a look-up touches a few
pages. Nothing in memory lists the blobs.
"""

from __future__ import annotations

import hashlib
import heapq
import mmap
import os
import struct
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from archiver.store.durable import fsync_directory, sync, write_all
from archiver.store.errors import BlobCorruptError

PACK_MAGIC = b"ARSIPPCK"
IDX_MAGIC = b"ARSIPIDX"
RECORD_MAGIC = b"ARSR"
VERSION = 1
PACK_HEADER = struct.Struct("<8sB3x")
IDX_HEADER = struct.Struct("<8sB3xQ")
FANOUT = struct.Struct("<256I")
ENTRY = struct.Struct("<32sQI")
RECORD_HEADER = struct.Struct("<4s32sQI")
RACY_NS = 2_000_000_000  # a directory changed this recently may change again unseen


@dataclass(frozen=True)
class Record:
    """One blob as a pack holds it."""

    digest: bytes
    raw_length: int
    payload: bytes


def parse_record(data: bytes, digest: bytes | None = None) -> Record:
    """A record from its bytes; raises `BlobCorruptError` if the header does not hold."""
    if len(data) < RECORD_HEADER.size:
        raise BlobCorruptError("pack record is truncated")
    magic, found, raw_length, length = RECORD_HEADER.unpack_from(data)
    if magic != RECORD_MAGIC or (digest is not None and found != digest):
        raise BlobCorruptError(f"{(digest or found).hex()}: pack record header is damaged")
    if len(data) != RECORD_HEADER.size + length:
        raise BlobCorruptError(f"{found.hex()}: pack record length is damaged")
    return Record(found, raw_length, data[RECORD_HEADER.size :])


def is_wiped(record_head: bytes) -> bool:
    """Whether a record's first bytes are the zeros a deletion left."""
    return not record_head.strip(b"\0")


class Pack:
    """One pack and its mapped index, open for reading.

    Files close when the last reference goes, so a thread still reading a pack that
    another has dropped from the set finishes its read."""

    def __init__(self, directory: Path, name: str) -> None:
        self.name = name
        self.pack_path = directory / f"{name}.pack"
        self.idx_path = directory / f"{name}.idx"
        with open(self.idx_path, "rb") as idx:
            self._map = mmap.mmap(idx.fileno(), 0, access=mmap.ACCESS_READ)
        self._file = open(self.pack_path, "rb", buffering=0)  # noqa: SIM115 (lives with self)
        magic, version, self.count = IDX_HEADER.unpack_from(self._map)
        if magic != IDX_MAGIC or version != VERSION:
            raise BlobCorruptError(f"{self.idx_path}: not a pack index")
        self._fanout = FANOUT.unpack_from(self._map, IDX_HEADER.size)
        self._entries = IDX_HEADER.size + FANOUT.size

    def _entry(self, position: int) -> tuple[bytes, int, int]:
        return ENTRY.unpack_from(self._map, self._entries + position * ENTRY.size)

    def find(self, digest: bytes) -> tuple[int, int] | None:
        """(offset, length) of the record for `digest`, or None."""
        low = self._fanout[digest[0] - 1] if digest[0] else 0
        high = self._fanout[digest[0]]
        while low < high:
            middle = (low + high) // 2
            start = self._entries + middle * ENTRY.size
            probe = self._map[start : start + 32]
            if probe < digest:
                low = middle + 1
            elif probe > digest:
                high = middle
            else:
                _digest, offset, length = self._entry(middle)
                return offset, length
        return None

    def read(self, offset: int, length: int) -> bytes:
        """The bytes of one record."""
        return os.pread(self._file.fileno(), length, offset)

    def entries(self) -> Iterator[tuple[bytes, int, int]]:
        """(sha256 digest, offset, length) of every record, in sha256 order."""
        for position in range(self.count):
            yield self._entry(position)

    def located(self) -> Iterator[tuple[bytes, Pack, int, int]]:
        """(sha256 digest, this pack, offset, length) of every record, in sha256 order:
        entries that say where they come from, for merging several packs' streams."""
        for digest, offset, length in self.entries():
            yield digest, self, offset, length

    def size(self) -> int:
        """The pack file's size in bytes."""
        return os.fstat(self._file.fileno()).st_size


class PackSet:
    """The packs of one directory as this process last saw them.

    The listing is re-read when a look-up misses and the directory changed since (or so
    recently that a change in the same clock tick could hide, as git treats a "racy"
    index): packs written by another process are found without polling."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._packs: dict[str, Pack] = {}
        self._seen_ns: int | None = None
        self._lock = threading.Lock()

    def packs(self) -> list[Pack]:
        """The open packs, largest first (most blobs live there)."""
        with self._lock:
            return sorted(self._packs.values(), key=lambda pack: -pack.count)

    def refresh(self, force: bool = False) -> bool:
        """Re-list the directory if it may have changed; True if it was re-listed."""
        try:
            changed_ns = os.stat(self.directory).st_mtime_ns
        except FileNotFoundError:
            changed_ns = -1
        with self._lock:
            racy = time.time_ns() - changed_ns < RACY_NS
            if not force and not racy and changed_ns == self._seen_ns:
                return False
            self._seen_ns = changed_ns
            names = set(pack_names(self.directory))
            for gone in set(self._packs) - names:
                del self._packs[gone]
            for name in names - set(self._packs):
                try:
                    self._packs[name] = Pack(self.directory, name)
                except FileNotFoundError:  # removed since the listing: compacted away
                    continue
            return True

    def locate(self, digest: bytes) -> tuple[Pack, int, int] | None:
        """The pack, offset and length holding `digest`, without re-listing."""
        for pack in self.packs():
            found = pack.find(digest)
            if found is not None:
                return pack, *found
        return None

    def records(self) -> Iterator[tuple[bytes, Pack, int]]:
        """(sha256 digest, pack, offset) of every packed blob once, in sha256 order (a
        merge of the sorted indexes: memory stays one entry per pack)."""
        previous = None
        streams = [pack.located() for pack in self.packs()]
        for digest, pack, offset, _length in heapq.merge(*streams, key=lambda entry: entry[0]):
            if digest != previous:
                yield digest, pack, offset
                previous = digest


def pack_names(directory: Path) -> list[str]:
    """The names of the complete packs in `directory` (those with an index)."""
    try:
        return [
            entry.name[:-4]
            for entry in os.scandir(directory)
            if entry.name.endswith(".idx") and not entry.name.startswith(".")  # not temporary
        ]
    except FileNotFoundError:
        return []


@dataclass
class PackWriter:
    """Writes one new pack to temporary files; `finish` makes it durable and visible."""

    directory: Path
    _entries: list[tuple[bytes, int, int]] = field(default_factory=list)
    _offset: int = PACK_HEADER.size

    def __post_init__(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        token = f"{os.getpid()}-{threading.get_ident()}-{time.monotonic_ns()}"
        self._temp_pack = self.directory / f".tmp-{token}.pack"
        self._temp_idx = self.directory / f".tmp-{token}.idx"
        self._fd = os.open(self._temp_pack, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
        write_all(self._fd, PACK_HEADER.pack(PACK_MAGIC, VERSION))
        self._written: set[bytes] = set()

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def bytes_written(self) -> int:
        """The pack's size so far."""
        return self._offset

    def __contains__(self, digest: bytes) -> bool:
        return digest in self._written

    def add(self, digest: bytes, raw_length: int, payload: bytes) -> None:
        """Append one record (a digest already added is skipped)."""
        if digest in self._written:
            return
        record = RECORD_HEADER.pack(RECORD_MAGIC, digest, raw_length, len(payload)) + payload
        write_all(self._fd, record)
        self._entries.append((digest, self._offset, len(record)))
        self._written.add(digest)
        self._offset += len(record)

    def add_record(self, data: bytes) -> None:
        """Copy a record from another pack as it is (not reopened, not recompressed)."""
        record = parse_record(data)
        self.add(record.digest, record.raw_length, record.payload)

    def abort(self) -> None:
        """Throw the temporary files away."""
        os.close(self._fd)
        self._temp_pack.unlink(missing_ok=True)
        self._temp_idx.unlink(missing_ok=True)

    def finish(self) -> str | None:
        """Write the index, make both files durable, rename them into place (the .idx
        last) and sync the directory; returns the pack's name (None if it was empty)."""
        if not self._entries:
            self.abort()
            return None
        self._entries.sort()
        name = hashlib.sha256(b"".join(d for d, _o, _l in self._entries)).hexdigest()[:40]
        fanout = [0] * 256
        for digest, _offset, _length in self._entries:
            fanout[digest[0]] += 1
        for byte in range(1, 256):
            fanout[byte] += fanout[byte - 1]
        index = bytearray(IDX_HEADER.pack(IDX_MAGIC, VERSION, len(self._entries)))
        index += FANOUT.pack(*fanout)
        for entry in self._entries:
            index += ENTRY.pack(*entry)
        try:
            idx_fd = os.open(self._temp_idx, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
            try:
                write_all(idx_fd, index)
                os.fsync(idx_fd)
            finally:
                os.close(idx_fd)
            os.fsync(self._fd)
        except BaseException:
            self.abort()
            raise
        os.close(self._fd)
        os.replace(self._temp_pack, self.directory / f"{name}.pack")
        os.replace(self._temp_idx, self.directory / f"{name}.idx")
        fsync_directory(self.directory)
        return name


def remove_pack(directory: Path, name: str) -> None:
    """Remove a pack whose records all live elsewhere now (index first, so no reader finds
    an index without its pack)."""
    for suffix in (".idx", ".pack", ".wiped"):
        (directory / f"{name}{suffix}").unlink(missing_ok=True)
    sync(directory, lambda: fsync_directory(directory))
