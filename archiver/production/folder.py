"""The folder a production is written to, and the rule that keeps a half-written one from
ever looking finished.

While it runs, a production writes into a hidden staging folder inside the output folder,
`.partial-ID`. Only when every file, the load files and the manifest are written does it
move them into the output folder, `production.json` last: a folder without
`production.json` holds no finished production, and one with it holds exactly one.

Files are written without an fsync each (a production of 100,000 messages writes a quarter
of a million files); the staging folder is made durable once, by one syncfs(2) of its file
system (`make_durable`), before the production is marked as finishing, and the moves into
place are made durable by fsyncs of the output folder, `production.json`'s rename last. A
production that says it is finished has every file it names on disk.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from archiver.production.errors import ProductionError
from archiver.production.family import DATA, NATIVES, TEXT
from archiver.production.manifest import NAME as MANIFEST
from archiver.production.manifest import TOKEN_NAME
from archiver.store.durable import fsync_directory, sync

DESCRIPTION = "production.json"
STAGING = ".partial-"
# What a finished production's folder holds, in the order it is moved into place
CONTENTS = (NATIVES, TEXT, DATA, MANIFEST, TOKEN_NAME, DESCRIPTION)


def staging(folder: Path, production: int) -> Path:
    """Where production `production` is written until it is finished."""
    return folder / f"{STAGING}{production}"


def check_folder(folder: Path, resumable: int | None) -> None:
    """Refuse a folder that is not a folder, or that holds anything but the staging
    folder of production `resumable` (the one a rerun carries on)."""
    if folder.exists() and not folder.is_dir():
        raise ProductionError(f"{folder} is not a folder")
    if not folder.parent.is_dir():
        raise ProductionError(f"cannot write {folder}: the folder {folder.parent} does not exist")
    if not folder.exists():
        return
    if (folder / DESCRIPTION).exists():
        raise ProductionError(
            f"{folder} already holds a finished production ({_described(folder)}): "
            "choose an empty folder"
        )
    allowed = {staging(folder, resumable).name} if resumable is not None else set()
    others = sorted(entry.name for entry in folder.iterdir() if entry.name not in allowed)
    if any(name.startswith(STAGING) for name in others):
        raise ProductionError(
            f"{folder} holds an unfinished production this archive does not know: "
            "choose an empty folder"
        )
    if others:
        raise ProductionError(f"{folder} is not empty (it holds {others[0]}): choose an empty one")


def write_file(path: Path, data: bytes) -> None:
    """Write `path` whole or not at all: beside it first, then renamed over it."""
    temporary = path.with_name(f".{path.name}.part")
    temporary.write_bytes(data)
    temporary.replace(path)


def make_durable(stage: Path) -> None:
    """Make everything written into the staging folder survive a power cut: one syncfs(2)
    of its file system, or, where there is none, an fsync of every file and folder in it."""
    sync(stage, lambda: _fsync_tree(stage))


def move_into_place(folder: Path, production: int) -> None:
    """Move a sealed (durable) production from its staging folder into `folder`,
    `production.json` last and only once the other moves are durable, and remove what is
    left of the staging folder (its journal). Safe to run again after an interruption:
    what was moved already stays where it is."""
    stage = staging(folder, production)
    for name in CONTENTS:
        if name == DESCRIPTION:
            fsync_directory(folder)
        if (stage / name).exists():
            os.rename(stage / name, folder / name)
    fsync_directory(folder)
    shutil.rmtree(stage, ignore_errors=True)


def remove_staging(folder: Path, production: int) -> None:
    """Remove the staging folder of a production given up for another."""
    shutil.rmtree(staging(folder, production), ignore_errors=True)


def _fsync_tree(root: Path) -> None:
    for directory, _folders, files in os.walk(root):
        for name in files:
            fd = os.open(os.path.join(directory, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        fsync_directory(Path(directory))


def _described(folder: Path) -> str:
    """What a finished production's `production.json` says it is, in a few words."""
    try:
        found = json.loads((folder / DESCRIPTION).read_text("utf-8"))
        return f"series {found['series']}, {found['first']} to {found['last']}"
    except (OSError, ValueError, KeyError, TypeError):
        return "its production.json is unreadable"
