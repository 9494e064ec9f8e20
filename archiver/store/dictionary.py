"""zstd dictionaries for pack records, trained on the archive's own mail.

Mail is mostly headers that repeat from message to message (Received chains, list
headers, MIME boilerplate); compressed one by one, each message pays again for what a
dictionary holds once. A dictionary is trained (`zstandard.train_dictionary`) on a sample
of the messages being packed and stored once as `packs/dict-<id>.zdict`; every record's
zstd frame names the dictionary it needs (zstd writes the id into the frame header), so
packs of different dictionaries can be merged by copying records as they are.

A dictionary holds fragments of the mail it was trained on, so with a key it is sealed
like a blob (the associated data is its file name), and the sha256s of its samples are
kept beside it (`dict-<id>.samples`): deleting one of them retires the dictionary
(`dict-<id>.retired`), and the next repack re-encodes its records with a new dictionary
trained on mail that is still there, then removes it.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Iterable
from pathlib import Path

import zstandard

from archiver.store.durable import write_file_durably
from archiver.store.errors import BlobCorruptError, BlobMissingError
from archiver.store.sealing import BlobCipher, unseal

DICTIONARY_SIZE = 112 * 1024  # zstd's own default: more buys little for mail headers
MIN_SAMPLES = 200  # fewer and training fails or learns one thread's quirks
MAX_SAMPLES = 4000  # a few MB of mail: training takes a second or two
MAX_SAMPLE_BYTES = 16 * 1024  # the headers and the start of the body say what mail is like
_NAME = re.compile(r"^dict-(\d+)\.zdict$")


def dictionary_name(dict_id: int) -> str:
    """The file name of dictionary `dict_id` under `packs/`."""
    return f"dict-{dict_id}.zdict"


class Dictionaries:
    """The dictionaries under one `packs/` directory, loaded once per process."""

    def __init__(self, directory: Path, cipher: BlobCipher | None) -> None:
        self.directory = directory
        self.cipher = cipher
        self._loaded: dict[int, zstandard.ZstdCompressionDict] = {}
        self._lock = threading.Lock()

    def current(self) -> int | None:
        """The id of the dictionary for new records: the newest one not retired."""
        retired = self.retired()
        usable = [dict_id for dict_id in self.ids() if dict_id not in retired]
        return usable[-1] if usable else None

    def retired(self) -> set[int]:
        """Dictionaries trained on a blob that was deleted since: their records are
        re-encoded with another dictionary, then they are removed."""
        return {
            dict_id
            for dict_id in self.ids()
            if (self.directory / f"dict-{dict_id}.retired").exists()
        }

    def retire_if_trained_on(self, deleted: Iterable[str]) -> set[int]:
        """Mark (durably) every dictionary trained on one of `deleted` as retired: a
        dictionary holds fragments of its samples, and deletion must take those too."""
        gone = set(deleted)
        retiring = {d for d in self.ids() if d not in self.retired() and self.samples(d) & gone}
        for dict_id in retiring:
            write_file_durably(self.directory / f"dict-{dict_id}.retired", b"")
        return retiring

    def ids(self) -> list[int]:
        """The ids of every stored dictionary, oldest (lowest mtime) first."""
        try:
            names = [(entry.stat().st_mtime_ns, entry.name) for entry in os.scandir(self.directory)]
        except FileNotFoundError:
            return []
        return [int(m.group(1)) for _t, name in sorted(names) if (m := _NAME.match(name))]

    def get(self, dict_id: int) -> zstandard.ZstdCompressionDict:
        """Dictionary `dict_id`; raises `BlobMissingError` if it is gone."""
        with self._lock:
            if dict_id in self._loaded:
                return self._loaded[dict_id]
        name = dictionary_name(dict_id)
        try:
            stored = (self.directory / name).read_bytes()
        except FileNotFoundError:
            raise BlobMissingError(f"zstd dictionary {name} is missing") from None
        data = unseal(self.cipher, name, stored)
        dictionary = zstandard.ZstdCompressionDict(data, dict_type=zstandard.DICT_TYPE_FULLDICT)
        if dictionary.dict_id() != dict_id:
            raise BlobCorruptError(f"zstd dictionary {name} holds id {dictionary.dict_id()}")
        with self._lock:
            self._loaded[dict_id] = dictionary
        return dictionary

    def train(self, samples: dict[str, bytes]) -> zstandard.ZstdCompressionDict | None:
        """Train, store durably and return a dictionary on `samples` (sha256 -> raw mail);
        None when there are too few samples or zstd cannot learn from them."""
        if len(samples) < MIN_SAMPLES:
            return None
        chosen = list(samples)[:MAX_SAMPLES]
        try:
            dictionary = zstandard.train_dictionary(
                DICTIONARY_SIZE, [samples[sha][:MAX_SAMPLE_BYTES] for sha in chosen]
            )
        except zstandard.ZstdError:
            return None
        dict_id = dictionary.dict_id()
        name = dictionary_name(dict_id)
        data = dictionary.as_bytes()
        stored = self.cipher.seal(name, data) if self.cipher is not None else data
        self.directory.mkdir(parents=True, exist_ok=True)
        write_file_durably(
            self.directory / f"dict-{dict_id}.samples", "".join(s + "\n" for s in chosen).encode()
        )
        write_file_durably(self.directory / name, stored)
        with self._lock:
            self._loaded[dict_id] = dictionary
        return dictionary

    def samples(self, dict_id: int) -> set[str]:
        """The sha256s dictionary `dict_id` was trained on."""
        try:
            text = (self.directory / f"dict-{dict_id}.samples").read_text()
        except FileNotFoundError:
            return set()
        return set(text.split())

    def remove(self, dict_id: int) -> None:
        """Delete a dictionary no record needs any more (the caller fsyncs the directory)."""
        for name in (
            dictionary_name(dict_id),
            f"dict-{dict_id}.samples",
            f"dict-{dict_id}.retired",
        ):
            (self.directory / name).unlink(missing_ok=True)
        with self._lock:
            self._loaded.pop(dict_id, None)
