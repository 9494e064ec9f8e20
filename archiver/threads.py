"""Pure threading rules: which Message-IDs tie a message to a thread, and subject keys.

Threads follow JWZ's idea with the database as the container table: a message joins the
thread of the first of its References (root first), its In-Reply-To, or itself that is
already known, and every id it mentions is recorded for that thread, so replies to a
message Arsip never saw still meet. The subject is used only when a message carries no
references at all and says it is a reply, and only within `SUBJECT_WINDOW`.
"""

from __future__ import annotations

import hashlib
import re
from datetime import timedelta

SUBJECT_WINDOW = timedelta(days=14)

# "Re:", "RE[2]:", "Fwd:", "AW:", "SV:", "Antw:" and list tags such as "[dev]".
_PREFIX = re.compile(
    r"^\s*(?:(?:re|fwd?|aw|sv|vs|antw|wg|tr)\s*(?:\[\d+\])?\s*:|\[[^\]]{1,40}\])\s*", re.I
)
_REPLY = re.compile(r"^\s*(?:\[[^\]]{1,40}\]\s*)*(?:re|aw|sv|vs|antw)\s*(?:\[\d+\])?\s*:", re.I)


def thread_candidates(message_id: str, references: list[str], in_reply_to: str | None) -> list[str]:
    """The ids that may place a message in a thread, most authoritative (the root) first."""
    ordered = [*references]
    if in_reply_to:
        ordered.append(in_reply_to)
    ordered.append(message_id)
    seen: set[str] = set()
    return [mid for mid in ordered if mid and not (mid in seen or seen.add(mid))]


def new_thread_id(message_id: str) -> str:
    """A stable id for a thread started by `message_id` (stable across a full re-archive)."""
    return hashlib.sha256(message_id.encode("utf-8", "surrogatepass")).hexdigest()[:24]


def subject_key(subject: str) -> str:
    """The subject with reply/forward prefixes and list tags removed, lower-cased."""
    text = subject
    while True:
        stripped = _PREFIX.sub("", text, count=1)
        if stripped == text:
            break
        text = stripped
    return " ".join(text.lower().split())[:255]


def is_reply_subject(subject: str) -> bool:
    """Whether the subject itself claims the message is a reply."""
    return bool(_REPLY.match(subject))
