"""Blob store benchmark: disk per message loose and packed, and how fast a repack runs.

Stores N messages the way the archive worker does (`put_many` in batches of 100, each
a loose zstd file), measures the store like `du` (allocated blocks, `st_blocks * 512`, and
apparent bytes), runs `repack` (what the scheduler and `arsip store repack` do), measures
again, and reads every message back to check it. Mail comes from an mbox, a maildir or a
folder of message files given with `--mail`, or else from the search benchmark's
generator (realistic list and company mail, seeded).

    .venv/bin/python tests/bench/store.py [--messages N] [--mail PATH] [--key]
                                          [--vocabulary PATH] [--keep DIR]

`--vocabulary` points the generator at real mail to draw word frequencies from (by
default the search benchmark's choice); `--key` measures an encrypted store.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(Path(__file__).resolve().parent)]

from search import CorpusWriter, load_vocabulary  # noqa: E402

from archiver.mailfiles import iter_path  # noqa: E402
from archiver.store import DirectoryBlobStore  # noqa: E402

BATCH = 100
MIB = 1024 * 1024


@dataclass(frozen=True)
class DiskUse:
    """A tree's size as `du` sees it (allocated blocks) and as `du -b` does."""

    files: int
    allocated: int
    apparent: int


def disk_use(path: Path) -> DiskUse:
    """Allocated and apparent bytes of every file and directory under `path`."""
    files = allocated = apparent = 0
    for directory, subdirectories, names in os.walk(path):
        for name in [*names, *subdirectories, "."]:
            status = os.lstat(os.path.join(directory, name))
            allocated += status.st_blocks * 512
            apparent += status.st_size
            files += name in names
    return DiskUse(files, allocated, apparent)


def messages_from(
    path: Path | None, count: int, vocabulary: Path | None, workdir: Path
) -> list[bytes]:
    """`count` messages from `path`, or generated ones when there is no path."""
    if path is None:
        mbox = workdir / "generated.mbox"
        words = load_vocabulary() if vocabulary is None else load_vocabulary(vocabulary)
        CorpusWriter(words, count).write(mbox)
        path = mbox
    found: Iterator[bytes] = (message.data for message in iter_path(path))
    messages = []
    for data in found:
        messages.append(data)
        if len(messages) >= count:
            break
    return messages


def report_line(label: str, use: DiskUse, count: int, raw: int) -> str:
    return (
        f"{label:8} {use.files:>8,} files {use.allocated / MIB:>9.1f} MiB allocated "
        f"({use.allocated / count:>6,.0f} B/msg, {use.allocated / raw:>5.1%} of raw)  "
        f"{use.apparent / MIB:>9.1f} MiB apparent ({use.apparent / count:>6,.0f} B/msg, "
        f"{use.apparent / raw:>5.1%} of raw)"
    )


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--mail", type=Path, help="an mbox, maildir or folder of messages")
    parser.add_argument(
        "--vocabulary",
        type=Path,
        help="real mail whose word frequencies the generator follows (default: what "
        "tests/bench/search.py reads)",
    )
    parser.add_argument("--key", action="store_true", help="seal blobs (encryption at rest)")
    parser.add_argument("--keep", type=Path, help="leave the store in this directory")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="arsip-store-bench-"))
    try:
        began = time.monotonic()
        messages = messages_from(args.mail, args.messages, args.vocabulary, workdir)
        distinct = {hashlib.sha256(data).hexdigest(): data for data in messages}
        raw = sum(len(data) for data in distinct.values())
        source = args.mail or "generated mail"
        print(
            f"mail: {len(distinct):,} distinct messages from {source}, "
            f"{raw / MIB:,.1f} MiB raw ({raw / len(distinct):,.0f} B/msg); "
            f"in {time.monotonic() - began:.1f} s",
            flush=True,
        )
        blob_dir = (args.keep or workdir) / "blobs"
        if blob_dir.exists():
            shutil.rmtree(blob_dir)
        store = DirectoryBlobStore(blob_dir, key=os.urandom(32) if args.key else None)
        names, items = list(distinct), list(distinct.values())
        began = time.monotonic()
        for start in range(0, len(items), BATCH):
            store.put_many(items[start : start + BATCH], names[start : start + BATCH])
        put_s = time.monotonic() - began
        loose = disk_use(blob_dir)
        print(f"put: {len(items) / put_s:,.0f} msgs/s (loose, batches of {BATCH})")

        began = time.monotonic()
        cpu = time.process_time()
        report = store.repack()
        repack_s, repack_cpu = time.monotonic() - began, time.process_time() - cpu
        packed = disk_use(blob_dir)
        print(
            f"repack: {report.packed:,} blobs into {report.packs_written} pack(s) in "
            f"{repack_s:.1f} s ({report.packed / repack_s:,.0f} msgs/s, "
            f"{repack_cpu:.1f} CPU s; dictionary training included)"
        )

        began = time.monotonic()
        for sha256, data in distinct.items():
            if store.get(sha256) != data:
                raise SystemExit(f"{sha256} did not read back intact")
        get_s = time.monotonic() - began
        print(f"read back: all intact, {len(distinct) / get_s:,.0f} gets/s from packs")
        print(f"raw      {len(distinct):>8,} msgs  {raw / MIB:>9.1f} MiB")
        print(report_line("loose", loose, len(distinct), raw))
        print(report_line("packed", packed, len(distinct), raw))
        print(f"packed / loose (allocated): {packed.allocated / loose.allocated:.1%}")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
