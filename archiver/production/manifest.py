"""The manifest: the sha256 of every file of a production, as `sha256sum -c` checks it."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path

NAME = "manifest.sha256"
TOKEN_NAME = "manifest.sha256.tsr"  # its RFC 3161 timestamp, when a TSA gave one
BLOCK = 1 << 20


def manifest_bytes(files: Iterable[tuple[str, str]]) -> bytes:
    """The manifest of `files`, (relative path, sha256) pairs: one `HASH  PATH` line each,
    in path order.

    This is the one place a manifest's bytes are made: what it returns is written as
    `manifest.sha256`, its sha256 goes into `production.json`, the audit trail and the
    database, and its trusted timestamp (`TOKEN_NAME`) is taken over exactly these bytes.
    """
    lines = [f"{sha256}  {path}\n" for path, sha256 in sorted(files)]
    return "".join(lines).encode("utf-8")


def file_sha256(path: Path) -> str:
    """The sha256 of a file, read a block at a time."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(BLOCK):
            digest.update(block)
    return digest.hexdigest()
