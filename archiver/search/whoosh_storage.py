"""Whoosh's index files, memory-mapped and read in place.

Whoosh 2.7 maps a compound segment file, but then wraps each part of it (the term table,
the posting lists) in a `BufferFile`, whose `BytesIO` copies the whole part into the
process: on a 100,000-message archive that was 150 MB of private memory per process,
growing with the archive, and the same again in every web process. Here every file is
mapped and every part of it is a view of the map, read a slice at a time, so the index's
pages stay in the kernel's page cache and are shared by all the processes that search.
"""

from __future__ import annotations

import io
import mmap
import os
import pickle
from typing import Any

from whoosh.filedb.filestore import FileStorage
from whoosh.filedb.structfile import BufferFile, StructFile

_PICKLE_WINDOW = 256  # bytes: a posting block's header pickle is well under this


class _ViewReader:
    """A read-only file over a memoryview: `read` copies only the bytes asked for."""

    def __init__(self, view: memoryview) -> None:
        self._view = view
        self._position = 0

    def read(self, size: int | None = -1) -> bytes:
        start = self._position
        end = len(self._view) if size is None or size < 0 else min(len(self._view), start + size)
        self._position = max(start, end)
        return self._view[start:end].tobytes()

    def readline(self, size: int | None = -1) -> bytes:
        limit = len(self._view)
        if size is not None and size >= 0:
            limit = min(limit, self._position + size)
        end = self._position
        while end < limit:
            chunk = self._view[end : min(limit, end + 4096)].tobytes()
            found = chunk.find(b"\n")
            if found >= 0:
                end += found + 1
                break
            end += len(chunk)
        return self.read(end - self._position)

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        base = {os.SEEK_SET: 0, os.SEEK_CUR: self._position, os.SEEK_END: len(self._view)}
        self._position = base[whence] + offset
        return self._position

    def tell(self) -> int:
        return self._position

    def close(self) -> None:
        self._view = memoryview(b"")


class MappedFile(BufferFile):
    """A `BufferFile` over a mapped file (or a part of one) that copies nothing up front."""

    def __init__(self, view: memoryview, name: str | None = None) -> None:
        self._buf = view
        self._name = name
        self.file = _ViewReader(view)
        self.onclose = None
        self.is_real = False
        self.is_closed = False

    def subset(self, position: int, length: int, name: str | None = None) -> MappedFile:
        """A part of this file, as a view of the same map."""
        return MappedFile(self._buf[position : position + length], name or self._name)

    def read_pickle(self) -> Any:
        """The pickled object at the current position (each posting block starts with one).

        Unpickling straight from the file would call `read` a score of times for a
        handful of bytes each; a small window of the map is unpickled in one go instead.
        """
        start = self.file.tell()
        window = _PICKLE_WINDOW
        while True:
            chunk = io.BytesIO(self._buf[start : start + window])
            try:
                value = pickle.load(chunk)
            except (EOFError, pickle.UnpicklingError):
                if start + window >= len(self._buf):
                    raise
                window *= 16
                continue
            self.file.seek(start + chunk.tell())
            return value


class MappedStorage(FileStorage):
    """A whoosh `FileStorage` whose files are opened as `MappedFile`s.

    `supports_mmap` is off so that whoosh's compound storage does not map a second time
    and copy: it takes parts of our mapped file with `subset` instead.
    """

    supports_mmap = False

    def __init__(self, path: str) -> None:
        super().__init__(path, supports_mmap=False)

    def open_file(self, name: str, **kwargs: Any) -> StructFile:
        """The file `name`, mapped read-only (an empty file cannot be mapped: read as is)."""
        with open(self._fpath(name), "rb") as handle:
            if os.fstat(handle.fileno()).st_size == 0:
                return super().open_file(name, **kwargs)
            mapped = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
        return MappedFile(memoryview(mapped), name)
