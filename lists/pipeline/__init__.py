"""The delivery pipeline: small handlers, each doing one thing to an accepted post, in
order. The header and body changes come first, so that the archive, the digest and
every member get the same message."""

from __future__ import annotations

from lists.pipeline.base import Delivery, Handler
from lists.pipeline.dmarc import DmarcMitigation
from lists.pipeline.footer import Footer
from lists.pipeline.list_headers import ListHeaders
from lists.pipeline.reply_to import ReplyTo
from lists.pipeline.subject_prefix import SubjectPrefix
from lists.pipeline.to_archive import ToArchive
from lists.pipeline.to_digest import ToDigest
from lists.pipeline.to_outbox import ToOutbox

PIPELINE: tuple[Handler, ...] = (
    SubjectPrefix(),
    ListHeaders(),
    ReplyTo(),
    DmarcMitigation(),
    Footer(),
    ToArchive(),
    ToDigest(),
    ToOutbox(),
)


def run(delivery: Delivery, handlers: tuple[Handler, ...] = PIPELINE) -> None:
    """Pass the post through every handler."""
    for handler in handlers:
        handler.process(delivery)


__all__ = ["PIPELINE", "Delivery", "Handler", "run"]
