"""Arrays derived from whoosh segments, kept in files beside the index and mapped.

A whoosh segment never changes once written (deletions live in the index's table of
contents, not in the segment), so whatever is derived from one segment (its columns as
arrays, the values of its facet fields) is derived once and kept in one file named after
the segment under `<index>/arrays/`. Every process maps those files read-only: their
pages live in the kernel's page cache, shared by all the web processes, loaded when a
query first touches them and dropped under memory pressure like any file's. Nothing here
is copied per process, so a process's own memory does not grow with the archive.

Whichever process first needs a segment's arrays writes them, into a temporary file that
is then renamed into place, so no reader ever sees half a set. The one index writer
removes the files of segments a merge took away (`remove_stale`); a reader that finds a
file gone derives the arrays again from the segment it still holds open.
"""

from __future__ import annotations

import contextlib
import json
import mmap
import os
import shutil
import uuid
from bisect import bisect_left
from pathlib import Path

import numpy as np

FOLDER = "arrays"
LAYOUT = 3  # part of every file's name: bump when what is stored changes


class SortedStrings:
    """A sorted list of distinct strings as one byte array plus offsets, both mapped:
    strings are decoded only when asked for, so a facet with millions of values costs no
    memory of its own."""

    def __init__(self, offsets: np.ndarray, data: np.ndarray) -> None:
        self.offsets = offsets
        self.data = data

    @classmethod
    def from_list(cls, values: list[str]) -> SortedStrings:
        """In memory, from strings already in sorted order (a lexicon's)."""
        encoded = [value.encode("utf-8") for value in values]
        lengths = np.fromiter(map(len, encoded), dtype=np.int64, count=len(encoded))
        offsets = np.concatenate(([0], np.cumsum(lengths))).astype(np.int64)
        return cls(offsets, np.frombuffer(b"".join(encoded), dtype=np.uint8))

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, index: int) -> str:
        start, end = int(self.offsets[index]), int(self.offsets[index + 1])
        return self.data[start:end].tobytes().decode("utf-8")

    def index(self, value: str) -> int:
        """Where `value` is, or -1 (a binary search: the strings are sorted by bytes)."""
        at = bisect_left(_Keys(self), value.encode("utf-8"))
        return at if at < len(self) and self[at] == value else -1

    def starting_with(self, prefix: str) -> list[str]:
        """The strings that start with `prefix`, in order (a binary search, then the run)."""
        encoded = prefix.encode("utf-8")
        keys = _Keys(self)
        found: list[str] = []
        for at in range(bisect_left(keys, encoded), len(self)):
            if not keys[at].startswith(encoded):
                break
            found.append(self[at])
        return found


class _Keys:
    """The encoded strings of a `SortedStrings` as a sequence `bisect` can search."""

    def __init__(self, strings: SortedStrings) -> None:
        self.strings = strings

    def __len__(self) -> int:
        return len(self.strings)

    def __getitem__(self, index: int) -> bytes:
        offsets = self.strings.offsets
        return self.strings.data[int(offsets[index]) : int(offsets[index + 1])].tobytes()


Derived = dict[str, "np.ndarray | SortedStrings"]
_MAGIC = b"ARSIPARR"
_ALIGN = 64  # every array starts on a 64-byte boundary of the file


def file_of(index_dir: Path, segment_id: str) -> Path:
    """Where the arrays of one segment are kept: one file, so one mapping and one open
    file descriptor per segment, however many arrays it holds."""
    return index_dir / FOLDER / f"{segment_id}.v{LAYOUT}.arrays"


def load(path: Path) -> Derived:
    """Map a segment's arrays read-only; raises FileNotFoundError when the file is not (or
    no longer) there, ValueError when it is not whole.

    The file is a header (magic, the length of a JSON table, the table: each array's
    dtype, offset after the header and length) and then the arrays, each aligned.
    """
    raw = np.memmap(path, dtype=np.uint8, mode="r")
    if raw[: len(_MAGIC)].tobytes() != _MAGIC:
        raise ValueError(f"{path} is not an arrays file")
    size = int.from_bytes(raw[len(_MAGIC) : len(_MAGIC) + 8].tobytes(), "little")
    table = json.loads(raw[len(_MAGIC) + 8 : len(_MAGIC) + 8 + size].tobytes())
    start = _aligned(len(_MAGIC) + 8 + size)
    found: Derived = {}
    for name, (dtype, at, count) in table.items():
        width = np.dtype(dtype).itemsize
        offset = start + at
        if offset + count * width > len(raw):
            raise ValueError(f"{path} is cut short")
        array = raw[offset : offset + count * width].view(dtype).view(np.ndarray)
        base, _, part = name.rpartition(_STRINGS_PART)
        if part in ("offsets", "bytes"):
            found.setdefault(base, SortedStrings(_EMPTY_OFFSETS, _EMPTY_BYTES))
            strings = found[base]
            assert isinstance(strings, SortedStrings)
            if part == "offsets":
                strings.offsets = array
            else:
                strings.data = array
        else:
            found[name] = array
    return found


_STRINGS_PART = "/"
_EMPTY_OFFSETS = np.zeros(1, dtype=np.int64)
_EMPTY_BYTES = np.zeros(0, dtype=np.uint8)


def store(path: Path, derived: Derived) -> None:
    """Write a segment's arrays to `path`, all or nothing: into a temporary file, flushed,
    then renamed into place (if another process got there first, the contents are the
    same)."""
    arrays: dict[str, np.ndarray] = {}
    for name, value in derived.items():
        if isinstance(value, SortedStrings):
            arrays[f"{name}{_STRINGS_PART}offsets"] = np.asarray(value.offsets)
            arrays[f"{name}{_STRINGS_PART}bytes"] = np.asarray(value.data)
        else:
            arrays[name] = np.asarray(value)
    table: dict[str, tuple[str, int, int]] = {}
    end = 0
    for name, array in arrays.items():
        table[name] = (array.dtype.str, end, len(array))
        end = _aligned(end + array.nbytes)
    encoded = json.dumps(table).encode()
    start = _aligned(len(_MAGIC) + 8 + len(encoded))
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.parent / f".tmp-{path.name}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        with open(temporary, "wb") as out:
            out.write(_MAGIC + len(encoded).to_bytes(8, "little") + encoded)
            for name, array in arrays.items():
                out.seek(start + table[name][1])
                out.write(np.ascontiguousarray(array).tobytes())
            out.truncate(start + end)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)


def _aligned(offset: int) -> int:
    return -(-offset // _ALIGN) * _ALIGN


def mapped(array: np.ndarray) -> bool:
    """Whether `array` reads a memory-mapped file rather than memory of its own."""
    while isinstance(array, np.ndarray):
        if isinstance(array, np.memmap) or isinstance(array.base, mmap.mmap):
            return True
        array = array.base
    return False


def remove_stale(index_dir: Path, segment_ids: set[str]) -> int:
    """Remove the arrays of segments that are no longer in the index (merged away or
    cleared), and temporary files a crashed process left; returns how many went.

    Only the index writer calls this, right after a commit. A reader still searching an
    older generation keeps its mapped files (unlinked files stay readable while mapped).
    """
    root = index_dir / FOLDER
    wanted = {file_of(index_dir, segment_id).name for segment_id in segment_ids}
    removed = 0
    with contextlib.suppress(FileNotFoundError):
        for entry in os.scandir(root):
            if entry.name in wanted:
                continue
            if entry.name.startswith(".tmp-") and _owner_alive(entry.name):
                continue
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path, ignore_errors=True)
            else:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(entry.path)
            removed += 1
    return removed


def _owner_alive(name: str) -> bool:
    """Whether the process that is writing this temporary file still runs."""
    try:
        pid = int(name.rsplit("-", 2)[1])
        os.kill(pid, 0)
    except (ValueError, IndexError, ProcessLookupError):
        return False
    except PermissionError:
        return True
    return True
