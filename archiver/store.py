"""Content-addressed, compressed storage of raw messages.

A blob is the zstd-compressed raw message, named by the sha256 of the uncompressed bytes,
so the same bytes are stored once however often they arrive. Writes go to a temporary
file that is fsync'd, renamed into place and made durable with a directory fsync: a
reader never sees half a blob, and a blob that was reported stored survives power loss.

With a key (ARSIP_BLOB_KEY_FILE), new blobs are sealed after compression with AES-256-GCM,
so a copy of the store's disk or backup reveals no mail. A sealed file is

    b"ARSIPENC"  version (1 byte, 1)  key id (8 bytes)  nonce (12 bytes, random)
    ciphertext of the zstd frame, followed by the 16-byte GCM tag

authenticated with the associated data `header (the first 17 bytes) + sha256 name` in
ASCII: a changed byte, or a sealed blob copied over another one's name, fails to open.
The key id (the first 8 bytes of sha256(b"arsip blob key id\0" + key)) tells "sealed
under another key" apart from damage. Plain zstd files start with zstd's own magic
number, so both kinds live side by side under the same names: a store that turns
encryption on keeps reading its old blobs, and a store without the key says so clearly
when it meets a sealed one.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import hashlib
import os
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import zstandard
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

SUFFIX = ".zst"  # sealed blobs keep it: the name says what is inside once opened
COMPRESSION_LEVEL = 3
SEALED_MAGIC = b"ARSIPENC"
SEALED_VERSION = 1
KEY_SIZE = 32
KEY_ID_SIZE = 8
NONCE_SIZE = 12
TAG_SIZE = 16
SEALED_HEADER_SIZE = len(SEALED_MAGIC) + 1 + KEY_ID_SIZE


class BlobMissingError(LookupError):
    """No blob with that sha256 is in the store."""


class BlobCorruptError(ValueError):
    """A blob's bytes no longer hash to its name (or a sealed blob fails to authenticate)."""


class BlobKeyError(RuntimeError):
    """A sealed blob cannot be opened: the store has no key, or not the one it was sealed
    under. Not damage, so callers can tell the operator to fix the configuration."""


def blob_key_id(key: bytes) -> bytes:
    """A short, non-secret name for a key, stored in each blob sealed under it."""
    return hashlib.sha256(b"arsip blob key id\0" + key).digest()[:KEY_ID_SIZE]


class BlobCipher:
    """AES-256-GCM sealing of compressed blobs under one key (see the module docstring).

    Random 96-bit nonces are safe for far more blobs than one archive stores under one
    key (the usual bound is 2**32 seals per key).
    """

    def __init__(self, key: bytes) -> None:
        if len(key) != KEY_SIZE:
            raise ValueError(f"a blob key has {KEY_SIZE} bytes, not {len(key)}")
        self._aead = AESGCM(key)
        self.key_id = blob_key_id(key)
        self._header = SEALED_MAGIC + bytes([SEALED_VERSION]) + self.key_id

    def __repr__(self) -> str:
        return f"BlobCipher(key_id={self.key_id.hex()})"

    def seal(self, sha256: str, compressed: bytes) -> bytes:
        """The file contents for blob `sha256` holding `compressed`."""
        nonce = os.urandom(NONCE_SIZE)
        sealed = self._aead.encrypt(nonce, compressed, self._header + sha256.encode("ascii"))
        return self._header + nonce + sealed

    def open(self, sha256: str, stored: bytes) -> bytes:
        """The compressed bytes inside a sealed file; raises if it is not intact."""
        if len(stored) < SEALED_HEADER_SIZE + NONCE_SIZE + TAG_SIZE:
            raise BlobCorruptError(f"{sha256}: sealed blob is truncated")
        header = stored[:SEALED_HEADER_SIZE]
        version, key_id = header[len(SEALED_MAGIC)], header[len(SEALED_MAGIC) + 1 :]
        if version != SEALED_VERSION:
            raise BlobCorruptError(f"{sha256}: unknown sealed blob version {version}")
        if key_id != self.key_id:
            raise BlobKeyError(
                f"{sha256}: sealed under key id {key_id.hex()}, "
                f"but the configured key's id is {self.key_id.hex()}"
            )
        nonce = stored[SEALED_HEADER_SIZE : SEALED_HEADER_SIZE + NONCE_SIZE]
        try:
            return self._aead.decrypt(
                nonce, stored[SEALED_HEADER_SIZE + NONCE_SIZE :], header + sha256.encode("ascii")
            )
        except InvalidTag:
            raise BlobCorruptError(
                f"{sha256}: sealed blob does not authenticate (changed, or another blob's file)"
            ) from None


@dataclass(frozen=True)
class StoredBlob:
    """What `put` wrote (or found already there)."""

    sha256: str
    size_raw: int
    size_stored: int
    created: bool


def _load_syncfs() -> Callable[[int], int] | None:
    libc_name = ctypes.util.find_library("c")
    if libc_name is None:
        return None
    libc = ctypes.CDLL(libc_name, use_errno=True)
    return getattr(libc, "syncfs", None)


_SYNCFS = _load_syncfs()


def _sync(root: Path, each: Callable[[], None]) -> None:
    """Flush everything dirty on root's filesystem with one syncfs(2) where there is one,
    else run `each` (per-file or per-directory fsyncs)."""
    if _SYNCFS is None:
        each()
        return
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        if _SYNCFS(fd) != 0:
            error = ctypes.get_errno()
            raise OSError(error, os.strerror(error), str(root))
    finally:
        os.close(fd)


def _fsync_all(fds: Iterable[int]) -> None:
    for fd in fds:
        os.fsync(fd)


def _fsync_directories(directories: Iterable[Path]) -> None:
    for directory in directories:
        fsync_directory(directory)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def fsync_directory(path: Path) -> None:
    """Make a rename or unlink in `path` durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class DirectoryBlobStore:
    """Blobs as files under `root/ab/<sha256>.zst`.

    The directory may be a shared mount so that several machines share one store; nothing
    here keeps state in memory beyond per-thread compressor objects. With a `key`, new
    blobs are sealed (AES-256-GCM) and sealed blobs can be read; plain blobs are read
    either way.
    """

    def __init__(self, root: Path, key: bytes | None = None) -> None:
        self.root = root
        self._local = threading.local()
        self.cipher = BlobCipher(key) if key is not None else None

    @property
    def encrypting(self) -> bool:
        """Whether new blobs are sealed."""
        return self.cipher is not None

    def _compressor(self) -> zstandard.ZstdCompressor:
        if not hasattr(self._local, "compressor"):
            self._local.compressor = zstandard.ZstdCompressor(level=COMPRESSION_LEVEL)
            self._local.decompressor = zstandard.ZstdDecompressor()
        return self._local.compressor

    def _decompressor(self) -> zstandard.ZstdDecompressor:
        self._compressor()
        return self._local.decompressor

    def path_for(self, sha256: str) -> Path:
        """Where the blob named `sha256` lives."""
        return self.root / sha256[:2] / f"{sha256}{SUFFIX}"

    def put(self, data: bytes, sha256: str | None = None) -> StoredBlob:
        """Store `data` durably and return its address; storing existing bytes is a no-op."""
        return self.put_many([data], [sha256] if sha256 else None)[0]

    def put_many(self, items: list[bytes], sha256s: list[str] | None = None) -> list[StoredBlob]:
        """Store several blobs durably with two filesystem syncs for the whole batch.

        Every new blob is written to a temporary file; one sync makes all their bytes
        durable, then they are renamed into place and a second sync makes the names
        durable. So a name never points at bytes that could be lost, and a batch costs the
        filesystem two journal commits instead of two per blob (`syncfs` where the platform
        has it, per-file and per-directory fsync elsewhere).
        """
        digests = sha256s or [hashlib.sha256(data).hexdigest() for data in items]
        results: list[StoredBlob] = []
        pending: list[tuple[int, Path, Path]] = []
        try:
            for data, digest in zip(items, digests, strict=True):
                final = self.path_for(digest)
                if final.exists():
                    results.append(StoredBlob(digest, len(data), final.stat().st_size, False))
                    continue
                self._ensure_directory(final.parent)
                compressed = self._compressor().compress(data)
                if self.cipher is not None:
                    compressed = self.cipher.seal(digest, compressed)
                temp = final.with_name(f".{digest}.{os.getpid()}.{threading.get_ident()}.tmp")
                fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o640)
                pending.append((fd, temp, final))
                _write_all(fd, compressed)
                results.append(StoredBlob(digest, len(data), len(compressed), True))
            if pending:
                _sync(self.root, lambda: _fsync_all(fd for fd, _temp, _final in pending))
        except BaseException:
            for fd, temp, _final in pending:
                os.close(fd)
                temp.unlink(missing_ok=True)
            raise
        for fd, temp, final in pending:
            os.close(fd)
            os.replace(temp, final)
        if pending:
            directories = {final.parent for _fd, _temp, final in pending}
            _sync(self.root, lambda: _fsync_directories(directories))
        return results

    def _ensure_directory(self, directory: Path) -> None:
        """Create a fan-out directory durably (its entry in the root must survive too)."""
        if directory.is_dir():
            return
        self.root.mkdir(parents=True, exist_ok=True)
        directory.mkdir(exist_ok=True)
        fsync_directory(self.root)

    def get(self, sha256: str) -> bytes:
        """The original bytes of a blob; raises `BlobMissingError` or `BlobCorruptError`,
        or `BlobKeyError` for a sealed blob this store has no key for."""
        try:
            compressed = self.path_for(sha256).read_bytes()
        except FileNotFoundError:
            raise BlobMissingError(sha256) from None
        if compressed.startswith(SEALED_MAGIC):
            if self.cipher is None:
                raise BlobKeyError(
                    f"{sha256}: blob is encrypted and no key is configured (ARSIP_BLOB_KEY_FILE)"
                )
            compressed = self.cipher.open(sha256, compressed)
        try:
            return self._decompressor().decompress(compressed)
        except zstandard.ZstdError as exc:
            raise BlobCorruptError(f"{sha256}: {exc}") from exc

    def verify(self, sha256: str) -> None:
        """Re-read a blob and check its hash; raises like `get` when it is not intact."""
        if hashlib.sha256(self.get(sha256)).hexdigest() != sha256:
            raise BlobCorruptError(f"{sha256}: content does not match its name")

    def exists(self, sha256: str) -> bool:
        """Whether a blob is present (without reading it)."""
        return self.path_for(sha256).exists()

    def delete(self, sha256: str) -> None:
        """Remove a blob durably; removing a missing blob is not an error."""
        self.delete_many([sha256])

    def delete_many(self, sha256s: Iterable[str]) -> None:
        """Remove blobs durably, syncing each directory once however many left it."""
        directories = set()
        for sha256 in sha256s:
            path = self.path_for(sha256)
            with contextlib.suppress(FileNotFoundError):  # already gone: nothing to do
                path.unlink()
                directories.add(path.parent)
        for directory in sorted(directories):
            fsync_directory(directory)

    def __iter__(self) -> Iterator[str]:
        """Every sha256 present in the store, in no particular order."""
        for path in self.root.glob(f"??/*{SUFFIX}"):
            yield path.name.removesuffix(SUFFIX)
