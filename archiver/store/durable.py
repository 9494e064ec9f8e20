"""Making writes, renames and unlinks survive power loss (fsync discipline in one place)."""

from __future__ import annotations

import ctypes
import ctypes.util
import os
from collections.abc import Callable, Iterable
from pathlib import Path


def _load_syncfs() -> Callable[[int], int] | None:
    libc_name = ctypes.util.find_library("c")
    if libc_name is None:
        return None
    libc = ctypes.CDLL(libc_name, use_errno=True)
    return getattr(libc, "syncfs", None)


_SYNCFS = _load_syncfs()


def sync(root: Path, each: Callable[[], None]) -> None:
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


def fsync_all(fds: Iterable[int]) -> None:
    """fsync each descriptor."""
    for fd in fds:
        os.fsync(fd)


def fsync_directories(directories: Iterable[Path]) -> None:
    """fsync each directory (making renames and unlinks in them durable)."""
    for directory in directories:
        fsync_directory(directory)


def write_all(fd: int, data: bytes | memoryview) -> None:
    """Write all of `data` (os.write may write less than asked)."""
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


def write_file_durably(path: Path, data: bytes) -> None:
    """Write `path` whole or not at all: temp file, fsync, rename, directory fsync."""
    temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o640)
    try:
        write_all(fd, data)
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        temp.unlink(missing_ok=True)
        raise
    os.close(fd)
    os.replace(temp, path)
    fsync_directory(path.parent)
