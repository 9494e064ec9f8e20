"""An attachment's bytes, found again in the raw message it came in.

Attachments are not stored apart from their message: the raw blob is the one copy. The
message page's downloads and previews and a production's native files all find a part
here, by the sha256 the parser recorded for it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from email.message import Message as MimePart

from archiver.parse.mime import PARSER, payload_bytes, walk


@dataclass(frozen=True)
class Part:
    """An attachment's bytes, found in the raw message, and the charset its part names."""

    data: bytes
    charset: str | None


def parts_by_hash(raw: bytes) -> dict[str, Part]:
    """Every MIME leaf of `raw` by the sha256 of its content, as the parser recorded the
    attachments.

    Walking the parts the way the parser did and matching the hash it recorded finds the
    same part again, whatever the MIME structure looks like, and one walk finds all of a
    message's attachments.
    """
    leaves, _ = walk(PARSER.parsebytes(raw), set())
    found: dict[str, Part] = {}
    for leaf in leaves:
        data = payload_bytes(leaf.part)
        found.setdefault(hashlib.sha256(data).hexdigest(), Part(data, _charset(leaf.part)))
    return found


def _charset(part: MimePart) -> str | None:
    try:
        return part.get_content_charset()
    except (LookupError, ValueError):
        return None
