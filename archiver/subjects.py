"""A data subject's mail: the one answer to "which messages are about this address", for
access requests (`arsip subject export`) and erasure (`arsip subject erase`) alike, so the
archive never hands over less than it would erase, or erases less than it hands over."""

from __future__ import annotations

from sqlalchemy import ColumnElement, or_, select

from archiver.models import Message, MessageAddress


def concerning(address: str) -> ColumnElement[bool]:
    """The messages `address` (as stored: trimmed, lower case) appears in, in any role the
    archive recorded (the envelope included), and those whose From: names it: a copy no
    trusted source vouched for records no roles (`archiver.archive`), yet it is about its
    sender all the same."""
    return or_(
        Message.id.in_(select(MessageAddress.message_pk).where(MessageAddress.address == address)),
        Message.from_address == address,
    )
