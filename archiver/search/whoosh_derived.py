"""Arrays derived from whoosh segments, kept as .npy files beside the index and mapped.

A whoosh segment never changes once written (deletions live in the index's table of
contents, not in the segment), so whatever is derived from one segment (its columns as
arrays, the values of its facet fields) is derived once and kept in a folder named after
the segment under `<index>/arrays/`. Every process maps those files read-only: their
pages live in the kernel's page cache, shared by all the web processes, loaded when a
query first touches them and dropped under memory pressure like any file's. Nothing here
is copied per process, so a process's own memory does not grow with the archive.

Whichever process first needs a segment's arrays writes them, into a temporary folder
that is then renamed into place, so no reader ever sees half a set. The one index writer
removes the folders of segments a merge took away (`remove_stale`); a reader that finds a
folder gone derives the arrays again from the segment it still holds open.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import shutil
import uuid
from bisect import bisect_left
from pathlib import Path

import numpy as np

FOLDER = "arrays"
LAYOUT = 1  # part of every folder's name: bump when what is stored changes
_STRINGS = (".offsets", ".bytes")


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


def folder_of(index_dir: Path, segment_id: str) -> Path:
    """Where the arrays of one segment are kept."""
    return index_dir / FOLDER / f"{segment_id}.v{LAYOUT}"


def load(folder: Path) -> Derived:
    """Map every array of a segment's folder read-only; raises FileNotFoundError when the
    folder is not (or no longer) there."""
    found: Derived = {}
    names = sorted(os.listdir(folder))
    for name in names:
        if not name.endswith(".npy"):
            continue
        stem = name[: -len(".npy")]
        if stem.endswith(_STRINGS[1]):
            continue
        if stem.endswith(_STRINGS[0]):
            base = stem[: -len(_STRINGS[0])]
            found[base] = SortedStrings(
                _mapped(folder / name), _mapped(folder / f"{base}{_STRINGS[1]}.npy")
            )
        else:
            found[stem] = _mapped(folder / name)
    if not found:
        raise FileNotFoundError(folder)
    return found


def _mapped(path: Path) -> np.ndarray:
    """A read-only array over the mapped file: a plain ndarray view of numpy's `memmap`
    (whose `base` it is), since every operation on a memmap subclass costs a little more."""
    return np.load(path, mmap_mode="r", allow_pickle=False).view(np.ndarray)


def mapped(array: np.ndarray) -> bool:
    """Whether `array` reads a memory-mapped file rather than memory of its own."""
    while array is not None:
        if isinstance(array, np.memmap) or isinstance(getattr(array, "base", None), mmap.mmap):
            return True
        array = array.base if isinstance(array.base, np.ndarray) else None
    return False


def store(folder: Path, derived: Derived) -> None:
    """Write a segment's arrays under `folder`, all or nothing: into a temporary folder,
    flushed, then renamed into place. If another process got there first, its copy stays
    (the contents are the same)."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    temporary = folder.parent / f".tmp-{folder.name}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    temporary.mkdir()
    try:
        for name, value in derived.items():
            if isinstance(value, SortedStrings):
                _write(temporary / f"{name}{_STRINGS[0]}.npy", value.offsets)
                _write(temporary / f"{name}{_STRINGS[1]}.npy", value.data)
            else:
                _write(temporary / f"{name}.npy", value)
        try:
            os.rename(temporary, folder)
        except OSError:
            if not folder.is_dir():  # anything but "someone else renamed theirs first"
                raise
    finally:
        shutil.rmtree(temporary, ignore_errors=True)


def _write(path: Path, array: np.ndarray) -> None:
    with open(path, "wb") as out:
        np.save(out, np.ascontiguousarray(array), allow_pickle=False)
        out.flush()
        os.fsync(out.fileno())


def remove_stale(index_dir: Path, segment_ids: set[str]) -> int:
    """Remove the folders of segments that are no longer in the index (merged away or
    cleared), and temporary folders a crashed process left; returns how many went.

    Only the index writer calls this, right after a commit. A reader still searching an
    older generation keeps its mapped files (unlinked files stay readable while mapped).
    """
    root = index_dir / FOLDER
    wanted = {folder_of(index_dir, segment_id).name for segment_id in segment_ids}
    removed = 0
    with contextlib.suppress(FileNotFoundError):
        for entry in os.scandir(root):
            if entry.name in wanted:
                continue
            if entry.name.startswith(".tmp-") and _owner_alive(entry.name):
                continue
            shutil.rmtree(entry.path, ignore_errors=True)
            removed += 1
    return removed


def _owner_alive(name: str) -> bool:
    """Whether the process that is writing this temporary folder still runs."""
    try:
        pid = int(name.rsplit("-", 2)[1])
        os.kill(pid, 0)
    except (ValueError, IndexError, ProcessLookupError):
        return False
    except PermissionError:
        return True
    return True
