"""Put the list's `[name]` before the subject, once, also on replies."""

from __future__ import annotations

import re

from lists.pipeline.base import Delivery

REPLY = re.compile(r"^((re|aw|sv|antw)\s*:\s*)+", re.IGNORECASE)


def prefixed(subject: str, prefix: str) -> str:
    """`[dev] Topic` for `Topic`, `Re: [dev] Topic` for `Re: Topic` or `[dev] Re: [dev]
    Topic`: one prefix, after a single reply marker."""
    text = " ".join(subject.split())
    text = text.replace(prefix, " ").strip() if prefix in text else text
    text = " ".join(text.split())
    reply = REPLY.match(text)
    if reply:
        rest = text[reply.end() :].replace(prefix, "").strip()
        return f"Re: {prefix} {rest}".rstrip()
    return f"{prefix} {text}".rstrip()


class SubjectPrefix:
    name = "subject-prefix"

    def process(self, delivery: Delivery) -> None:
        message = delivery.message
        subject = str(message.get("Subject", ""))
        del message["Subject"]
        message["Subject"] = prefixed(subject, delivery.mlist.prefix)
