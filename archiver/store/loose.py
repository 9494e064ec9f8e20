"""Loose blobs: one file per blob under `root/ab/<sha256>.zst`, where every new blob goes.

The intake's durability argument lives here and does not change with packs: each new blob
is written to a temporary file, one filesystem sync makes all of a batch's bytes durable,
the files are renamed into place and a second sync makes the names durable. So a name
never points at bytes that could be lost, and a batch costs two journal commits.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from archiver.store.durable import fsync_all, fsync_directories, fsync_directory, sync, write_all

UNLINK_THREADS = 16
SUFFIX = ".zst"  # sealed blobs keep it: the name says what is inside once opened


def _unlink(path: Path) -> bool:
    """Remove a file; False when it was already gone."""
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    return True


class LooseBlobs:
    """The loose files of a store."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def path_for(self, sha256: str) -> Path:
        """Where the loose blob named `sha256` lives."""
        return self.root / sha256[:2] / f"{sha256}{SUFFIX}"

    def write_many(self, blobs: list[tuple[str, bytes]]) -> None:
        """Store (sha256, stored bytes) pairs durably with two syncs for the whole batch
        (`syncfs` where the platform has it, per-file and per-directory fsync elsewhere)."""
        pending: list[tuple[int, Path, Path]] = []
        try:
            for digest, stored in blobs:
                final = self.path_for(digest)
                self._ensure_directory(final.parent)
                temp = final.with_name(f".{digest}.{os.getpid()}.{threading.get_ident()}.tmp")
                fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o640)
                pending.append((fd, temp, final))
                write_all(fd, stored)
            if pending:
                sync(self.root, lambda: fsync_all(fd for fd, _temp, _final in pending))
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
            sync(self.root, lambda: fsync_directories(directories))

    def _ensure_directory(self, directory: Path) -> None:
        """Create a fan-out directory durably (its entry in the root must survive too)."""
        if directory.is_dir():
            return
        self.root.mkdir(parents=True, exist_ok=True)
        directory.mkdir(exist_ok=True)
        fsync_directory(self.root)

    def read(self, sha256: str) -> bytes | None:
        """The stored bytes of a loose blob, or None when there is no such file."""
        try:
            return self.path_for(sha256).read_bytes()
        except FileNotFoundError:
            return None

    def size(self, sha256: str) -> int | None:
        """The stored size of a loose blob, or None."""
        try:
            return self.path_for(sha256).stat().st_size
        except FileNotFoundError:
            return None

    def unlink_many(self, sha256s: Iterable[str]) -> None:
        """Remove loose files durably, syncing each directory once however many left it.

        Several unlinks run at once: each waits on the filesystem's journal rather than
        the CPU (measured: about 1,100 unlinks/s one at a time, 18,000/s sixteen at a
        time on ext4), and a repack unlinks every file it packed."""
        paths = [self.path_for(sha256) for sha256 in sha256s]
        with ThreadPoolExecutor(max_workers=UNLINK_THREADS) as pool:
            gone = list(pool.map(_unlink, paths))
        removed = [path for path, went in zip(paths, gone, strict=True) if went]
        directories = {path.parent for path in removed}
        if directories:
            sync(self.root, lambda: fsync_directories(sorted(directories)))

    def __iter__(self) -> Iterator[str]:
        """Every loose sha256, in no particular order."""
        for path in self.root.glob(f"??/*{SUFFIX}"):
            yield path.name.removesuffix(SUFFIX)
