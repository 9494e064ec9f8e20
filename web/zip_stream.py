"""A folder as a `.zip` download, made while it is sent.

A production can be gigabytes: the archive is never built in memory or on disk. zipfile
writes to a stream it cannot seek (sizes and checksums follow each file, in its data
descriptor, and the central directory comes last), and each piece it writes is handed to
the response at once, so memory stays at one read buffer whatever the folder's size.
Files are deflated: mail text shrinks well, and every zip reader reads deflated entries
with data descriptors (not every streaming reader does for stored ones).
"""

from __future__ import annotations

import zipfile
from collections.abc import Iterator
from pathlib import Path

CHUNK = 1 << 20  # bytes read from a file at a time


class _Pieces:
    """A write-only stream that keeps what is written until it is taken."""

    def __init__(self) -> None:
        self.pieces: list[bytes] = []

    def write(self, data: bytes) -> int:
        self.pieces.append(bytes(data))
        return len(data)

    def flush(self) -> None:
        """Nothing to flush: the pieces are taken by the response."""

    def take(self) -> list[bytes]:
        taken, self.pieces = self.pieces, []
        return taken


def zip_folder(folder: Path, top: str) -> Iterator[bytes]:
    """The files under `folder` (hidden ones left out), in name order, as a zip archive
    whose entries sit in one folder named `top`."""
    sink = _Pieces()
    files = sorted(
        path
        for path in folder.rglob("*")
        if path.is_file() and not path.relative_to(folder).as_posix().startswith(".")
    )
    with zipfile.ZipFile(sink, "w", zipfile.ZIP_DEFLATED) as archive:  # type: ignore[arg-type]
        for path in files:
            info = zipfile.ZipInfo.from_file(path, f"{top}/{path.relative_to(folder).as_posix()}")
            info.compress_type = zipfile.ZIP_DEFLATED
            with open(path, "rb") as source, archive.open(info, "w") as target:
                while chunk := source.read(CHUNK):
                    target.write(chunk)
                    yield from sink.take()
            yield from sink.take()
    yield from sink.take()
