"""Turn a public-inbox git archive of a mailing list into a maildir, for the real-mail bench.

Generated mail is not enough to measure an archive: real list mail has long patches,
long Cc lists and a far larger vocabulary. Public mailing lists are published as
public-inbox repositories (v2 "epochs"): every commit adds one message as the file `m`
at the root of its tree, and a commit that removes spam leaves a tree without `m`. This
walks the commits oldest first, reads each `m` through one `git cat-file --batch`
process (no checkout, no per-message process) and writes one maildir file per message:

    .venv/bin/python tests/bench/realmail.py --git-dir EPOCH.git --output DIR [--limit N]

The files are named `<sequence>.<commit>.realmail:2,S` under `DIR/cur/`, so the order is
the list's order and a second run with the same archive writes nothing new. The mail
stays outside the repository: it is other people's mail and is only read by the benches.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

PROGRESS_EVERY = 5_000


class ArchiveError(RuntimeError):
    """The folder is not a git archive this script can read."""


@dataclass
class Extracted:
    """What an extraction wrote."""

    messages: int = 0
    written: int = 0
    bytes: int = 0
    removed: int = 0  # commits whose tree has no message: deletions of spam


def commits(git_dir: Path) -> list[str]:
    """Every commit of the archive's current branch, oldest first."""
    done = subprocess.run(
        ["git", f"--git-dir={git_dir}", "rev-list", "--reverse", "--first-parent", "HEAD"],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise ArchiveError(f"{git_dir}: not a git archive ({done.stderr.strip()})")
    return done.stdout.split()


def messages(git_dir: Path, shas: list[str]) -> Iterator[tuple[str, bytes | None]]:
    """(commit, message bytes) for each commit, None where the commit holds no message.

    One `git cat-file --batch` reads every blob; a writer thread would be needed if git
    could block on a full output pipe, but it answers each request before reading the
    next, so feeding one line and reading one answer never deadlocks.
    """
    process = subprocess.Popen(
        ["git", f"--git-dir={git_dir}", "cat-file", "--batch"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    assert process.stdin is not None and process.stdout is not None
    try:
        for sha in shas:
            process.stdin.write(f"{sha}:m\n".encode())
            process.stdin.flush()
            header = process.stdout.readline().split()
            if len(header) != 3:  # "<sha>:m missing"
                yield sha, None
                continue
            size = int(header[2])
            data = process.stdout.read(size)
            process.stdout.read(1)  # the newline after the object
            yield sha, data
    finally:
        process.stdin.close()
        process.wait()


def extract(git_dir: Path, output: Path, limit: int | None) -> Extracted:
    """Write the archive's messages (the first `limit` of them) as a maildir."""
    shas = commits(git_dir)
    for folder in ("cur", "new", "tmp"):
        (output / folder).mkdir(parents=True, exist_ok=True)
    report = Extracted()
    began = time.monotonic()
    for sha, data in messages(git_dir, shas):
        if data is None:
            report.removed += 1
            continue
        if limit is not None and report.messages >= limit:
            break
        report.messages += 1
        report.bytes += len(data)
        target = output / "cur" / f"{report.messages:07d}.{sha[:12]}.realmail:2,S"
        if not target.exists() or target.stat().st_size != len(data):
            partial = output / "tmp" / target.name
            partial.write_bytes(data)
            partial.rename(target)
            report.written += 1
        if report.messages % PROGRESS_EVERY == 0:
            print(
                f"  {report.messages:,} messages, {report.bytes / 1e6:,.0f} MB, "
                f"{time.monotonic() - began:.0f} s",
                file=sys.stderr,
                flush=True,
            )
    return report


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, extract, print what was written."""
    parser = argparse.ArgumentParser(description=__doc__.partition("\n")[0])
    parser.add_argument("--git-dir", type=Path, required=True, help="a public-inbox epoch")
    parser.add_argument("--output", type=Path, required=True, help="the maildir to write")
    parser.add_argument("--limit", type=int, default=None, help="at most this many messages")
    options = parser.parse_args(argv)
    if options.limit is not None and options.limit < 1:
        parser.error("--limit must be at least 1")
    try:
        report = extract(options.git_dir, options.output, options.limit)
    except (ArchiveError, OSError) as exc:
        print(f"realmail: {exc}", file=sys.stderr)
        return 2
    print(
        f"{report.messages:,} messages ({report.bytes / 1e6:,.1f} MB) in {options.output}: "
        f"{report.written:,} written, {report.removed:,} removed commits skipped"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
