"""The load files: Concordance's `.dat` and the same rows as RFC 4180 `.csv`.

Concordance's format has no escaping: each value sits between þ (U+00FE) quotes, values
are separated by the control character DC4 (ASCII 20, which Concordance and Relativity
show as ¶ in their import dialogs and take by default), rows end in CRLF, and a line
break inside a value is written as ® (U+00AE), Concordance's in-field newline; other
control characters become spaces, so none can be taken for a delimiter.
Both files are UTF-8 with a byte-order mark, which is how review platforms tell UTF-8
from the legacy code pages these formats began with.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

QUOTE = "\u00fe"  # þ
DELIMITER = "\x14"  # DC4, shown as ¶ by review platforms
NEWLINE = "\u00ae"  # ®
ENCODING = "utf-8-sig"  # UTF-8 with a byte-order mark
_LINE_BREAK = re.compile(r"\r\n|\r|\n")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def dat_value(value: str) -> str:
    """A value as the .dat carries it: line breaks as ®, other control characters as
    spaces (the delimiter \\x14 among them), quoted in þ."""
    return QUOTE + _CONTROL.sub(" ", _LINE_BREAK.sub(NEWLINE, value)) + QUOTE


def write_dat(path: Path, fields: Sequence[str], rows: Iterable[dict[str, str]]) -> None:
    """Write a Concordance .dat: the header row, then one row per document."""
    with open(path, "w", encoding=ENCODING, newline="") as handle:
        for values in _lines(fields, rows):
            handle.write(DELIMITER.join(dat_value(value) for value in values) + "\r\n")


def write_csv(path: Path, fields: Sequence[str], rows: Iterable[dict[str, str]]) -> None:
    """Write the same rows as RFC 4180 CSV (line breaks inside values kept, quoted)."""
    with open(path, "w", encoding=ENCODING, newline="") as handle:
        writer = csv.writer(handle, lineterminator="\r\n")
        writer.writerows(_lines(fields, rows))


def _lines(fields: Sequence[str], rows: Iterable[dict[str, str]]) -> Iterable[Sequence[str]]:
    yield fields
    for row in rows:
        yield [row.get(field, "") for field in fields]
