"""AES-256-GCM sealing of compressed blobs (encryption at rest).

A sealed blob is

    b"ARSIPENC"  version (1 byte, 1)  key id (8 bytes)  nonce (12 bytes, random)
    ciphertext of the zstd frame, followed by the 16-byte GCM tag

authenticated with the associated data `header (the first 17 bytes) + sha256 name` in
ASCII: a changed byte, or a sealed blob copied over another one's name, fails to open.
The key id (the first 8 bytes of sha256(b"arsip blob key id\\0" + key)) tells "sealed
under another key" apart from damage. Plain zstd starts with zstd's own magic number, so
both kinds live side by side, loose or in packs: a store that turns encryption on keeps
reading its old blobs, and a store without the key says so clearly when it meets a
sealed one. Pack records hold exactly these bytes, so packing changes nothing here.
"""

from __future__ import annotations

import hashlib
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from archiver.store.errors import BlobCorruptError, BlobKeyError

SEALED_MAGIC = b"ARSIPENC"
SEALED_VERSION = 1
KEY_SIZE = 32
KEY_ID_SIZE = 8
NONCE_SIZE = 12
TAG_SIZE = 16
SEALED_HEADER_SIZE = len(SEALED_MAGIC) + 1 + KEY_ID_SIZE


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
        """The stored bytes for blob `sha256` holding `compressed`."""
        nonce = os.urandom(NONCE_SIZE)
        sealed = self._aead.encrypt(nonce, compressed, self._header + sha256.encode("ascii"))
        return self._header + nonce + sealed

    def open(self, sha256: str, stored: bytes) -> bytes:
        """The compressed bytes inside a sealed blob; raises if it is not intact."""
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


def unseal(cipher: BlobCipher | None, name: str, stored: bytes) -> bytes:
    """`stored` opened if it is sealed, as is if it is plain; raises `BlobKeyError` for a
    sealed blob when there is no key."""
    if not stored.startswith(SEALED_MAGIC):
        return stored
    if cipher is None:
        raise BlobKeyError(
            f"{name}: blob is encrypted and no key is configured (ARSIP_BLOB_KEY_FILE)"
        )
    return cipher.open(name, stored)
