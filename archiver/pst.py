"""Outlook PST and OST files, read through `readpst` (Debian's pst-utils, from libpst).

No Python library reads PST files well; libpst does, and its `readpst` writes each
message as an RFC 822 file (`-e`), in folders named as in the PST. So a PST is extracted
into a scratch folder under the data directory (next to the archive, where there is room
for it), its messages are handed to the import with the folder each was in, and the
scratch folder is removed, whatever happens.

What `readpst` is asked for: mail items only (`-t e`; calendars and contacts are not
mail), deleted items too (`-D`: evidence), no RTF copies of bodies the message has as
text anyway (`-b`), one job (`-j 0`). The PST's top folder is the store's own name
("Personal Folders", "Top of Outlook data file"), so a folder path starts below it:
`Inbox/Projects`.

`readpst` gives each multipart message a random MIME boundary on every run, which would
make the same PST a new message each time it is imported. `steady_boundaries` puts in its
place one derived from the message itself, so that a second import of the same file finds
every message already archived.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from archiver.folders import folder_path
from archiver.mailfiles import FoundMessage, MailFileError

# Every PST and OST file starts with this ("!BDN"), whether ANSI or Unicode.
MAGIC = b"!BDN"
SUFFIXES = (".pst", ".ost")
_PROCESSING = re.compile(r'^Processing Folder "(.*)"$')
_SKIPPED = re.compile(r'^\s*".*" - \d+ items done, (\d+) items skipped\.$')
# readpst's boundaries: "--boundary-LibPST-iamunique-<rand()>_-_-" and "alt-" before it.
_BOUNDARY_PARAMETER = re.compile(rb'boundary="[^"\r\n]*LibPST-iamunique-(\d+)_-_-"')
_BOUNDARY_NUMBER = re.compile(rb"LibPST-iamunique-(\d+)_-_-")


class PstError(MailFileError):
    """A PST or OST file that cannot be read, or no `readpst` to read it with."""


@dataclass
class PstContents:
    """What `extracted` found: the messages, and how many items readpst left out."""

    messages: Iterator[FoundMessage]
    skipped: int


def starts_as_pst(path: Path) -> bool:
    """Whether `path` is a PST or OST file, by its first bytes whatever its name."""
    if not path.is_file():
        return False
    with open(path, "rb") as handle:
        return handle.read(len(MAGIC)) == MAGIC


def is_pst(path: Path) -> bool:
    """Whether the file an operator named is a PST or OST file (`starts_as_pst`); one
    named `.pst` or `.ost` that does not start as one is refused (`PstError`), rather
    than read as a message file and skipped."""
    if starts_as_pst(path):
        return True
    if path.is_file() and path.suffix.lower() in SUFFIXES:
        raise PstError(f"{path}: not a PST or OST file (it does not start as one)")
    return False


@contextmanager
def extracted(path: Path, scratch: Path, show: Callable[[str], None]) -> Iterator[PstContents]:
    """The messages of the PST or OST file `path`, extracted under `scratch` for as long
    as the block runs; `show` hears which folder readpst is at."""
    readpst = shutil.which("readpst")
    if readpst is None:
        raise PstError(
            f"{path}: reading PST and OST files needs readpst (Debian: apt-get install pst-utils)"
        )
    scratch.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="pst-", dir=scratch) as folder:
        out = Path(folder)
        skipped = _run_readpst(readpst, path, out, show)
        show("import")
        yield PstContents(_messages(path, out), skipped)


def _run_readpst(readpst: str, path: Path, out: Path, show: Callable[[str], None]) -> int:
    """Run readpst into `out`; returns how many items it skipped, or raises `PstError`
    with its own words when it cannot read the file."""
    command = [readpst, "-e", "-t", "e", "-D", "-b", "-j", "0", "-o", str(out), str(path)]
    skipped = 0
    said: list[str] = []
    with subprocess.Popen(
        command,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
    ) as process:
        assert process.stdout is not None
        for line in process.stdout:
            line = line.rstrip("\n")
            if found := _PROCESSING.match(line):
                show(f"readpst: {found.group(1)}")
            elif found := _SKIPPED.match(line):
                skipped += int(found.group(1))
            elif line.strip():
                said.append(line.strip())
    if process.returncode != 0:
        reason = said[-1] if said else f"exit status {process.returncode}"
        raise PstError(f"{path}: not a PST or OST file readpst can read ({reason})")
    return skipped


def _messages(path: Path, out: Path) -> Iterator[FoundMessage]:
    """Each message file under `out`, in folder and number order, with its folder; the
    progress each accounts for is its share of the PST's size. Files are removed as they
    are read, so the scratch folder shrinks as the import goes."""
    files = sorted(
        (file for file in out.rglob("*.eml") if file.is_file()),
        key=lambda file: (file.parent.parts, _number(file)),
    )
    sizes = [file.stat().st_size for file in files]
    whole, extracted_total, counted = path.stat().st_size, max(sum(sizes), 1), 0
    for index, (file, size) in enumerate(zip(files, sizes, strict=True)):
        parts = file.relative_to(out).parts
        folder = folder_path(parts[1:-1]) or folder_path(parts[:1])
        data = steady_boundaries(file.read_bytes())
        file.unlink()
        share = whole - counted if index == len(files) - 1 else whole * size // extracted_total
        counted += share
        yield FoundMessage(data, share, f"{path}:{folder}/{file.name}", boxed=True, folder=folder)


def _number(file: Path) -> int:
    """readpst numbers a folder's messages 1, 2, ...: in that order, not as text."""
    return int(file.stem) if file.stem.isdigit() else 0


def steady_boundaries(data: bytes) -> bytes:
    """`data` with readpst's random MIME boundaries replaced by ones made from the message.

    Only the numbers readpst put in `boundary=` parameters are replaced, wherever they
    occur; each becomes a digest of the message (with those numbers left out) and its
    rank, so a boundary still cannot occur in the content, and the same message gives
    the same bytes on every run.
    """
    numbers = list(dict.fromkeys(_BOUNDARY_PARAMETER.findall(data)))
    if not numbers:
        return data
    wanted = set(numbers)

    def blank(found: re.Match[bytes]) -> bytes:
        return b"LibPST-iamunique-_-_-" if found.group(1) in wanted else found.group(0)

    digest = hashlib.sha256(_BOUNDARY_NUMBER.sub(blank, data)).hexdigest()[:20].encode()
    steady = {number: digest + b"." + str(rank).encode() for rank, number in enumerate(numbers)}

    def replace(found: re.Match[bytes]) -> bytes:
        number = found.group(1)
        if number not in steady:
            return found.group(0)
        return b"LibPST-iamunique-" + steady[number] + b"_-_-"

    return _BOUNDARY_NUMBER.sub(replace, data)
