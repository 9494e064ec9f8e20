"""Content-addressed, compressed storage of raw messages.

A blob is the zstd-compressed raw message, named by the sha256 of the uncompressed bytes,
so the same bytes are stored once however often they arrive. New blobs are written loose,
one file each (`loose`), with the intake's fsync discipline; a background repack
(`repack`, `arsip store repack`) moves them into pack files (`packs`) compressed with a
dictionary trained on the archive's own mail, which is where the disk goes from a 4 KB
block per message to a fraction of the raw mail. With a key (ARSIP_BLOB_KEY_FILE), every
blob, loose or packed, is sealed with AES-256-GCM (`sealing`).

Reads look in the loose files first, then in the packs, and once more after re-listing
the packs when both miss (another process may have just moved the blob). Existing stores
of loose files work as they are; a repack migrates them in place.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from archiver.store.codec import COMPRESSION_LEVEL, PACK_COMPRESSION_LEVEL, Codec
from archiver.store.dictionary import Dictionaries
from archiver.store.durable import fsync_directory
from archiver.store.errors import BlobCorruptError, BlobKeyError, BlobMissingError
from archiver.store.loose import SUFFIX, LooseBlobs
from archiver.store.packs import PackSet, is_wiped, parse_record
from archiver.store.repack import Repacker, RepackReport, StoreBusyError
from archiver.store.sealing import (
    KEY_ID_SIZE,
    KEY_SIZE,
    NONCE_SIZE,
    SEALED_HEADER_SIZE,
    SEALED_MAGIC,
    SEALED_VERSION,
    TAG_SIZE,
    BlobCipher,
    blob_key_id,
)

__all__ = [
    "COMPRESSION_LEVEL",
    "KEY_ID_SIZE",
    "KEY_SIZE",
    "NONCE_SIZE",
    "PACK_COMPRESSION_LEVEL",
    "REPACK_MIN_LOOSE",
    "SEALED_HEADER_SIZE",
    "SEALED_MAGIC",
    "SEALED_VERSION",
    "SUFFIX",
    "TAG_SIZE",
    "BlobCipher",
    "BlobCorruptError",
    "BlobKeyError",
    "BlobMissingError",
    "DirectoryBlobStore",
    "RepackReport",
    "StoreBusyError",
    "StoredBlob",
    "blob_key_id",
    "fsync_directory",
]

PACKS = "packs"
REPACK_MIN_LOOSE = 1000  # the scheduled job waits for this many loose blobs


@dataclass(frozen=True)
class StoredBlob:
    """What `put` wrote (or found already there)."""

    sha256: str
    size_raw: int
    size_stored: int
    created: bool


class DirectoryBlobStore:
    """Blobs as loose files under `root/ab/<sha256>.zst` and packs under `root/packs/`.

    The directory may be a shared mount so that several machines share one store (then
    run repacks on one machine only: the lock is a local `flock`). Memory per process is
    a few open packs and per-thread zstd contexts, whatever the archive's size. With a
    `key`, new blobs are sealed (AES-256-GCM) and sealed blobs can be read; plain blobs
    are read either way.
    """

    def __init__(self, root: Path, key: bytes | None = None) -> None:
        self.root = root
        self.cipher = BlobCipher(key) if key is not None else None
        self.loose = LooseBlobs(root)
        self.packs = PackSet(root / PACKS)
        self.codec = Codec(self.cipher, Dictionaries(root / PACKS, self.cipher))
        self.repacker = Repacker(self.loose, self.packs, self.codec)

    @property
    def encrypting(self) -> bool:
        """Whether new blobs are sealed."""
        return self.cipher is not None

    def path_for(self, sha256: str) -> Path:
        """Where the loose blob named `sha256` lives (or would)."""
        return self.loose.path_for(sha256)

    def put(self, data: bytes, sha256: str | None = None) -> StoredBlob:
        """Store `data` durably and return its address; storing existing bytes is a no-op."""
        return self.put_many([data], [sha256] if sha256 else None)[0]

    def put_many(self, items: list[bytes], sha256s: list[str] | None = None) -> list[StoredBlob]:
        """Store several blobs durably, loose, with two filesystem syncs for the batch
        (see `loose`); blobs already stored, loose or packed, are not written again."""
        digests = sha256s or [hashlib.sha256(data).hexdigest() for data in items]
        results: list[StoredBlob] = []
        new: list[tuple[str, bytes]] = []
        for data, digest in zip(items, digests, strict=True):
            size = self._stored_size(digest)
            if size is not None:
                results.append(StoredBlob(digest, len(data), size, False))
                continue
            stored = self.codec.encode(digest, data)
            new.append((digest, stored))
            results.append(StoredBlob(digest, len(data), len(stored), True))
        self.loose.write_many(new)
        return results

    def _stored_size(self, sha256: str) -> int | None:
        size = self.loose.size(sha256)
        if size is not None:
            return size
        record = self._packed(sha256)
        return len(parse_record(record).payload) if record is not None else None

    def _packed(self, sha256: str) -> bytes | None:
        """The pack record of `sha256`, re-listing the packs once on a miss; None when
        no pack holds it (or its record was wiped by a deletion)."""
        digest = bytes.fromhex(sha256)
        for attempt in range(3):
            if attempt and not self.packs.refresh():
                continue
            found = self.packs.locate(digest)
            if found is None:
                continue
            pack, offset, length = found
            try:
                data = pack.read(offset, length)
            except OSError:  # the pack went away under us: compacted, look again
                continue
            if not is_wiped(data[:8]):
                return data
        return None

    def get(self, sha256: str) -> bytes:
        """The original bytes of a blob; raises `BlobMissingError` or `BlobCorruptError`,
        or `BlobKeyError` for a sealed blob this store has no key for."""
        stored = self.loose.read(sha256)
        if stored is None:
            record = self._packed(sha256)
            if record is None:
                # moved from loose into a pack between our two looks?
                stored = self.loose.read(sha256)
                if stored is None:
                    raise BlobMissingError(sha256)
            else:
                stored = parse_record(record, bytes.fromhex(sha256)).payload
        return self.codec.decode(sha256, stored)

    def verify(self, sha256: str) -> None:
        """Re-read a blob and check its hash; raises like `get` when it is not intact."""
        if hashlib.sha256(self.get(sha256)).hexdigest() != sha256:
            raise BlobCorruptError(f"{sha256}: content does not match its name")

    def exists(self, sha256: str) -> bool:
        """Whether a blob is present (without decompressing it)."""
        return self._stored_size(sha256) is not None

    def delete(self, sha256: str) -> None:
        """Remove a blob durably; removing a missing blob is not an error."""
        self.delete_many([sha256])

    def delete_many(self, sha256s: Iterable[str]) -> None:
        """Remove blobs durably: loose files unlinked, packed records zeroed and synced
        (their space comes back when a repack compacts the pack)."""
        self.repacker.remove(sha256s)

    def repack(
        self, on_blob: Callable[[int], None] | None = None, wait: bool = True
    ) -> RepackReport:
        """Move loose blobs into packs, then compact and merge packs (see `repack`)."""
        return self.repacker.repack(on_blob, wait)

    def loose_count(self, up_to: int | None = None) -> int:
        """How many loose blobs there are (counting stops at `up_to`)."""
        count = 0
        for _sha256 in self.loose:
            count += 1
            if up_to is not None and count >= up_to:
                break
        return count

    def __iter__(self) -> Iterator[str]:
        """Every sha256 present in the store, loose or packed, each once."""
        loose = set(self.loose)  # few: the repack job keeps them so
        yield from loose
        self.packs.refresh()
        for digest, pack, offset in self.packs.records():
            sha256 = digest.hex()
            if sha256 not in loose and not is_wiped(pack.read(offset, 8)):
                yield sha256
