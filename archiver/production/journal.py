"""A production's progress, written as it goes: one JSON line per message done, with its
load-file rows and the hashes of the files written for it.

A line is appended only after the message's files are in place, so after an interruption
every message the journal names is done and the run carries on with the next. The load
files and the manifest are made from the journal at the end, so the rows of a long
production never have to fit in memory. A line cut short by the interruption is dropped.

Nothing is fsync'd until the seal (`folder.make_durable`): after a crash of the process
the files are safe in the page cache, but a power cut may lose any of them while keeping
the journal line that names them. So the journal notes the boot it was written in, and a
run after the machine restarted trusts none of it: it writes every file again, with the
same numbers, rather than seal a manifest over files that may be gone.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

NAME = "journal.jsonl"
BOOT = "boot"  # beside the journal: the boot its files were written in
BOOT_ID = Path("/proc/sys/kernel/random/boot_id")  # Linux's id of the running boot


@dataclass(frozen=True)
class Progress:
    """How far an earlier run got: messages done, and the length of the mbox it wrote."""

    done: int
    mbox_end: int


class Journal:
    """The journal of one production, in its staging folder."""

    def __init__(self, folder: Path) -> None:
        self.path = folder / NAME
        self.boot = folder / BOOT

    def resume(self) -> Progress:
        """How far the runs so far got; a line left half-written is cut off, so that new
        lines follow the last whole one. A journal from before the machine restarted is
        emptied: the run starts over."""
        done = mbox_end = good = 0
        boot = current_boot()
        if not boot or not self.boot.exists() or self.boot.read_text("ascii") != boot:
            self.path.unlink(missing_ok=True)
            self.boot.write_text(boot, "ascii")
        if self.path.exists():
            with open(self.path, "rb") as handle:
                for line in handle:
                    entry = _entry(line)
                    if entry is None:
                        break
                    done, mbox_end, good = done + 1, entry["mbox_end"], good + len(line)
            with open(self.path, "r+b") as handle:
                handle.truncate(good)
        return Progress(done, mbox_end)

    def append(
        self, rows: list[dict[str, str]], files: list[tuple[str, str]], mbox_end: int = 0
    ) -> None:
        """Record one message done: its rows, its files as (path, sha256), and where the
        production's mbox ends after it."""
        line = json.dumps({"rows": rows, "files": files, "mbox_end": mbox_end})
        if not self.boot.exists():
            self.boot.write_text(current_boot(), "ascii")
        with open(self.path, "ab") as handle:
            handle.write(line.encode("utf-8") + b"\n")

    def rows(self) -> Iterator[dict[str, str]]:
        """Every load-file row, in production order."""
        for entry in self._entries():
            yield from entry["rows"]

    def files(self) -> Iterator[tuple[str, str]]:
        """Every file written, as (path, sha256)."""
        for entry in self._entries():
            yield from ((path, sha256) for path, sha256 in entry["files"])

    def _entries(self) -> Iterator[dict[str, Any]]:
        with open(self.path, "rb") as handle:
            for line in handle:
                entry = _entry(line)
                if entry is None:
                    return
                yield entry


def current_boot() -> str:
    """The id of the running boot ("" where the system has none to read: a journal is
    then never trusted after an interruption)."""
    try:
        return BOOT_ID.read_text("ascii").strip()
    except OSError:
        return ""


def _entry(line: bytes) -> dict[str, Any] | None:
    """A whole journal line's entry; None for a line cut short."""
    if not line.endswith(b"\n"):
        return None
    try:
        return json.loads(line)
    except ValueError:
        return None
