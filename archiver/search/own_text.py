"""The part of a message's text that is its own: what a search result's snippet shows.

A reply quotes what it answers and a list adds its footer to every post; a snippet of
either tells the reader nothing about this message. Left out:

- quoted lines (`>`), and the line that introduces them ("On Mon, Ann wrote:", "Pada
  Sen, Ann menulis:"): any line ending in a colon just before quoted lines;
- from the start of a quoted original in Outlook's way on: "-----Original Message-----"
  (or its Indonesian "-----Pesan Asli-----"), or a "From:" line followed by "Sent:" or
  "Date:" (Outlook and Gmail forwards, "Dari:"/"Terkirim:" in Indonesian);
- a signature (RFC 3676's "-- " line) and a list footer (a line of 30 or more
  underscores, as Arsip and Mailman write it) to the end.

When nothing is left (a message that only forwards), the whole text is the message's own.
"""

from __future__ import annotations

import re

SCAN_LIMIT = 20_000  # characters looked at, as many as a snippet scans

_QUOTED = re.compile(r"^[ \t]*>")
_ORIGINAL = re.compile(r"^[ \t]*-{3,}[ \t]*(original message|pesan asli)[ \t]*-{3,}", re.I)
_OUTLOOK_FROM = re.compile(r"^[ \t]*\*?(from|dari)\*?:[ \t]", re.I)
_OUTLOOK_NEXT = re.compile(r"^[ \t]*\*?(sent|date|terkirim|tanggal|to|kepada)\*?:[ \t]", re.I)
_ENDS = re.compile(r"^(-- |_{30,}[ \t]*)$")


def own_text(text: str) -> str:
    """`text` without quotes, quoted originals, signature and footer (see the module)."""
    lines = text[:SCAN_LIMIT].splitlines()
    kept: list[str] = []
    for number, line in enumerate(lines):
        if _ENDS.match(line) or _ORIGINAL.match(line):
            break
        following = lines[number + 1] if number + 1 < len(lines) else ""
        if _OUTLOOK_FROM.match(line) and _OUTLOOK_NEXT.match(following):
            break
        if _QUOTED.match(line):
            continue
        if line.rstrip().endswith(":") and _introduces_quote(lines, number + 1):
            continue
        kept.append(line)
    own = "\n".join(kept).strip()
    return own if own else text


def _introduces_quote(lines: list[str], start: int) -> bool:
    """Whether the first non-blank line from `start` on is quoted."""
    for line in lines[start:]:
        if line.strip():
            return bool(_QUOTED.match(line))
    return False
