"""Turning raw mail into stored bytes and back: zstd (with a dictionary in packs), then
sealing when there is a key. Loose files and pack records hold the same format, so one
decoder reads both, and a record can be copied between packs without being reopened."""

from __future__ import annotations

import threading

import zstandard

from archiver.store.dictionary import Dictionaries
from archiver.store.errors import BlobCorruptError
from archiver.store.sealing import BlobCipher, unseal

COMPRESSION_LEVEL = 3  # loose blobs: on the intake's path, so cheap
PACK_COMPRESSION_LEVEL = 9  # packs: written in the background, once


class Codec:
    """Compress, seal, open and decompress blobs; per-thread zstd contexts (they are not
    thread-safe), dictionaries shared."""

    def __init__(self, cipher: BlobCipher | None, dictionaries: Dictionaries) -> None:
        self.cipher = cipher
        self.dictionaries = dictionaries
        self._local = threading.local()

    def _contexts(self) -> tuple[dict[int, zstandard.ZstdCompressor], dict[int, object]]:
        if not hasattr(self._local, "compressors"):
            self._local.compressors = {}
            self._local.decompressors = {}
        return self._local.compressors, self._local.decompressors

    def _compressor(
        self, dictionary: zstandard.ZstdCompressionDict | None
    ) -> zstandard.ZstdCompressor:
        compressors, _ = self._contexts()
        dict_id = dictionary.dict_id() if dictionary is not None else 0
        if dict_id not in compressors:
            compressors[dict_id] = (
                zstandard.ZstdCompressor(level=COMPRESSION_LEVEL)
                if dictionary is None
                else zstandard.ZstdCompressor(level=PACK_COMPRESSION_LEVEL, dict_data=dictionary)
            )
        return compressors[dict_id]

    def _decompressor(self, dict_id: int) -> zstandard.ZstdDecompressor:
        _, decompressors = self._contexts()
        if dict_id not in decompressors:
            decompressors[dict_id] = (
                zstandard.ZstdDecompressor()
                if dict_id == 0
                else zstandard.ZstdDecompressor(dict_data=self.dictionaries.get(dict_id))
            )
        return decompressors[dict_id]  # type: ignore[return-value]

    def encode(
        self, sha256: str, data: bytes, dictionary: zstandard.ZstdCompressionDict | None = None
    ) -> bytes:
        """The stored bytes for `data`: compressed (with `dictionary`), sealed with a key."""
        compressed = self._compressor(dictionary).compress(data)
        return self.cipher.seal(sha256, compressed) if self.cipher is not None else compressed

    def decode(self, sha256: str, stored: bytes) -> bytes:
        """The raw bytes of a stored blob; raises `BlobCorruptError`, or `BlobKeyError` for
        a sealed blob without its key."""
        compressed = unseal(self.cipher, sha256, stored)
        try:
            dict_id = zstandard.get_frame_parameters(compressed).dict_id
            return self._decompressor(dict_id).decompress(compressed)
        except zstandard.ZstdError as exc:
            raise BlobCorruptError(f"{sha256}: {exc}") from exc
