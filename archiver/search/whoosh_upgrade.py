"""Bringing a whoosh index of an earlier schema up to this one in place, when all that
changed is fields added.

Each schema version has its own folder (`WhooshBackend`), and a new version's index is
normally filled from the archive. On a large archive that rebuild takes hours, and until
it ends searches answer from the new, still partial index. When a version only added
fields, the old index already holds everything else: its files are linked into the new
version's folder (whoosh never rewrites a segment file, so the two folders may share
them), its table of contents last, and the added fields are declared in one commit. Mail
indexed before the upgrade has nothing in the new fields, which is right as long as a new
field holds what the archive only started recording with that version (a message's
import folders, version 9).
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

from whoosh import fields, index

log = logging.getLogger(__name__)

# The fields each schema version added to the one before, and nothing else changed.
ADDED_FIELDS: dict[int, tuple[str, ...]] = {9: ("folder",)}


def _in_place_from(version: int, current: int) -> bool:
    """Whether an index of `version` becomes one of `current` by adding fields alone."""
    return version < current and all(v in ADDED_FIELDS for v in range(version + 1, current + 1))


def upgradable_index(parent: Path, current: int) -> Path | None:
    """The newest earlier version's index under `parent` that adding fields makes current."""
    found = [
        (int(folder.name[1:]), folder)
        for folder in parent.glob("v*")
        if folder.name[1:].isdigit() and index.exists_in(str(folder))
    ]
    usable = [(version, folder) for version, folder in found if _in_place_from(version, current)]
    return max(usable)[1] if usable else None


def link_index(source: Path, target: Path) -> None:
    """Put the files of the index in `source` into `target`, the table of contents last, so
    that `target` holds an index only once every segment it names is there."""
    files = [path for path in source.iterdir() if path.is_file() and "LOCK" not in path.name]
    for path in sorted(files, key=lambda path: path.suffix == ".toc"):
        try:
            os.link(path, target / path.name)
        except FileExistsError:
            continue
        except OSError:  # another file system, or one without hard links
            shutil.copy2(path, target / path.name)


def add_missing_fields(opened: index.Index, schema: fields.Schema, writer_options: dict) -> bool:
    """Declare the fields of `schema` that the index `opened` lacks, when each was added by
    a version (`ADDED_FIELDS`); whether any was. Any other difference is left for a rebuild."""
    missing = [name for name in schema.names() if name not in opened.schema]
    added = {name for names in ADDED_FIELDS.values() for name in names}
    if not missing or not set(missing) <= added:
        return False
    writer = opened.writer(**writer_options)
    try:
        for name in missing:
            writer.add_field(name, schema[name])
    except BaseException:
        writer.cancel()
        raise
    writer.commit(optimize=False)
    log.warning("search index brought up to date in place: fields %s added", ", ".join(missing))
    return True
