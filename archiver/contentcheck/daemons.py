"""Clients for spamd and clamd, on their documented protocols (SPAMC/1.5 and clamd's
`zINSTREAM`), over TCP or a Unix socket.

Each check is one connection: both daemons answer one request per connection, and
reconnecting to a daemon on the same network costs far less than the check itself.
Callers put the time limit around these coroutines.
"""

from __future__ import annotations

import asyncio
import re
import struct
from dataclasses import dataclass

from archiver.contentcheck.address import DaemonAddress

CHUNK = 64 * 1024  # clamd's INSTREAM chunks
MAX_REPLY = 256 * 1024  # more than any honest answer; a daemon gone wrong is cut off
_SPAM_HEADER = re.compile(rb"^Spam:\s*(\w+)\s*;\s*(-?[\d.]+)\s*/\s*(-?[\d.]+)\s*$", re.I | re.M)


class DaemonError(RuntimeError):
    """The daemon answered, but not with a verdict (a protocol error, a size limit)."""


@dataclass(frozen=True)
class SpamReport:
    """spamd's answer: the score, its own threshold, the rules that hit."""

    score: float
    threshold: float
    rules: tuple[str, ...]


async def spamd_symbols(address: DaemonAddress, data: bytes) -> SpamReport:
    """Ask spamd for a message's score and the rules that hit (the SYMBOLS command)."""
    reader, writer = await address.connect()
    try:
        writer.write(b"SYMBOLS SPAMC/1.5\r\nContent-length: %d\r\n\r\n" % len(data))
        writer.write(data)
        await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
        reply = await _read_all(reader)
    finally:
        writer.close()
    return parse_spamd_reply(reply)


def parse_spamd_reply(reply: bytes) -> SpamReport:
    """`SPAMD/1.1 0 EX_OK`, headers with `Spam: True ; 1000.0 / 5.0`, then the rules."""
    head, _, body = reply.partition(b"\r\n\r\n")
    status, _, headers = head.partition(b"\r\n")
    parts = status.decode("ascii", "replace").split(None, 2)
    if len(parts) < 2 or not parts[0].startswith("SPAMD/"):
        raise DaemonError(f"spamd answered {status[:80]!r}")
    if parts[1] != "0":
        raise DaemonError(f"spamd refused the message: {' '.join(parts[1:])}")
    found = _SPAM_HEADER.search(headers)
    if found is None:
        raise DaemonError("spamd's answer had no Spam header")
    rules = tuple(
        rule for rule in body.decode("ascii", "replace").strip().split(",") if rule.strip()
    )
    return SpamReport(float(found[2]), float(found[3]), tuple(r.strip() for r in rules))


async def spamd_ping(address: DaemonAddress) -> bool:
    """Whether spamd answers PING with PONG."""
    reader, writer = await address.connect()
    try:
        writer.write(b"PING SPAMC/1.5\r\n\r\n")
        await writer.drain()
        reply = await _read_all(reader)
    finally:
        writer.close()
    return b"PONG" in reply.split(b"\r\n", 1)[0]


async def clamd_scan(address: DaemonAddress, data: bytes) -> str | None:
    """The name of the signature clamd finds in `data`, or None when it is clean."""
    reader, writer = await address.connect()
    try:
        writer.write(b"zINSTREAM\0")
        for start in range(0, len(data), CHUNK):
            chunk = data[start : start + CHUNK]
            writer.write(struct.pack("!I", len(chunk)) + chunk)
            await writer.drain()
        writer.write(struct.pack("!I", 0))
        await writer.drain()
        reply = await reader.readuntil(b"\0")
    finally:
        writer.close()
    return parse_clamd_reply(reply)


def parse_clamd_reply(reply: bytes) -> str | None:
    """`stream: OK`, `stream: Eicar-Signature FOUND`, or `... ERROR`."""
    text = reply.rstrip(b"\0").decode("utf-8", "replace").strip()
    _, _, result = text.partition(": ")
    if result == "OK":
        return None
    if result.endswith(" FOUND"):
        return result.removesuffix(" FOUND").strip() or "unnamed"
    raise DaemonError(f"clamd answered {text[:120]!r}")


async def clamd_ping(address: DaemonAddress) -> bool:
    """Whether clamd answers PING with PONG."""
    reader, writer = await address.connect()
    try:
        writer.write(b"zPING\0")
        await writer.drain()
        reply = await reader.readuntil(b"\0")
    finally:
        writer.close()
    return reply.rstrip(b"\0").strip() == b"PONG"


async def _read_all(reader: asyncio.StreamReader) -> bytes:
    reply = b""
    while len(reply) <= MAX_REPLY:
        chunk = await reader.read(CHUNK)
        if not chunk:
            return reply
        reply += chunk
    raise DaemonError("the daemon's answer is too long")
