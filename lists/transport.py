"""Outbound transport: hand finished envelopes to the smarthost, or to a maildir without one.

This is the list engine's only way out. It makes SMTP transactions and reports, for every
recipient, what the far end said; it keeps no outbox, retries nothing and counts no bounces,
because the caller owns those decisions and the durable state behind them. A failure of the
network is therefore never an exception here: it is an `Outcome` with code 0, which the
caller treats like any other temporary failure.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import socket
import time
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from aiosmtplib import (
    SMTP,
    SMTPException,
    SMTPHeloError,
    SMTPResponse,
    SMTPResponseException,
)
from aiosmtplib.email import parse_address

from archiver.config import HostPort
from archiver.store import fsync_directory

# What a broken conversation looks like from aiosmtplib: its own exceptions (disconnects,
# timeouts, unusable greetings), socket and TLS errors, and asyncio timeouts.
_NETWORK_ERRORS = (SMTPException, OSError, asyncio.TimeoutError)
# QUIT is a courtesy; a smarthost that does not answer it promptly is not waited for.
_QUIT_TIMEOUT = 5.0
# Header lines are folded before this many characters, well inside RFC 5322's 78.
_FOLD_AT = 76


@dataclass(frozen=True)
class Envelope:
    """One SMTP transaction to make."""

    sender: str  # MAIL FROM; "" is the null sender
    recipients: tuple[str, ...]
    data: bytes  # the whole message, CRLF line ends


@dataclass(frozen=True)
class Outcome:
    """What the smarthost said about one recipient of one envelope.

    `code` is the SMTP reply code, or 0 when there was no reply (the connection failed,
    broke off or timed out), in which case `message` holds the error. An address the
    smarthost cannot be given exactly as written (one aiosmtplib would rewrite, or a
    non-ASCII one when the smarthost lacks SMTPUTF8) gets a 553 made here, never sent, and
    its message starts "... not sent:"; sending a rewritten address would mail someone else.
    Exactly one of `delivered`, `permanent` and `temporary` is true.
    """

    recipient: str
    code: int
    message: str

    @property
    def delivered(self) -> bool:
        """The smarthost took responsibility for the message (2xx)."""
        return 200 <= self.code < 300

    @property
    def permanent(self) -> bool:
        """Trying again will not help (5xx): a bounce."""
        return 500 <= self.code < 600

    @property
    def temporary(self) -> bool:
        """Try again later: a 4xx, no reply at all (0), or a reply no standard allows."""
        return not (self.delivered or self.permanent)


class Transport(Protocol):
    """Where the fan-out hands its envelopes."""

    async def send(self, envelopes: Sequence[Envelope]) -> list[list[Outcome]]:
        """One list of outcomes per envelope, one outcome per recipient, in the given order."""
        ...

    async def close(self) -> None:
        """Let go of connections and other resources; call after the last `send`."""
        ...


class _ConnectionLost(Exception):
    """The conversation with the smarthost broke off; the text says how."""


class _StaleConnection(Exception):
    """A reused connection failed before the smarthost said anything about this envelope."""


class SmtpTransport:
    """A pool of persistent SMTP connections to one smarthost, used in parallel.

    Connections open on first use and stay open between `send` calls, because a list post
    is many envelopes and the next post usually follows soon; one that the smarthost closed
    while idle is noticed and reopened, and each is replaced after
    `max_messages_per_connection` transactions so that no single conversation lives forever.
    At most `connections` are open at once, however many `send` calls run concurrently.

    STARTTLS is never used, even when offered: the smarthost is on loopback or a trusted
    network, and a certificate problem there must not hold up list mail. Message bytes go
    out unchanged except that bare CR or LF become CRLF (SMTP forbids them, and they are
    what SMTP smuggling relies on) and a final CRLF is added if missing.

    One transport belongs to one event loop.
    """

    def __init__(
        self,
        host: str,
        port: int,
        connections: int = 8,
        timeout: float = 30.0,
        max_messages_per_connection: int = 1000,
        *,
        local_hostname: str | None = None,
    ) -> None:
        if connections < 1:
            raise ValueError("connections must be at least 1")
        if max_messages_per_connection < 1:
            raise ValueError("max_messages_per_connection must be at least 1")
        self.host = host
        self.port = port
        self.timeout = timeout
        self.max_messages_per_connection = max_messages_per_connection
        self.local_hostname = local_hostname
        self._connections = [_Connection(self) for _ in range(connections)]
        # Last in, first out: a small send reuses the connection that is already open.
        self._idle: asyncio.LifoQueue[_Connection] = asyncio.LifoQueue()
        for connection in self._connections:
            self._idle.put_nowait(connection)

    async def send(self, envelopes: Sequence[Envelope]) -> list[list[Outcome]]:
        """Deliver every envelope over the pool; returns when all have an outcome.

        Each worker takes a connection from the pool and pulls envelopes off a shared
        queue until it is empty, so a slow transaction holds up only its own connection.
        """
        results: list[list[Outcome]] = [[] for _ in envelopes]
        queue = iter(enumerate(envelopes))

        async def work() -> None:
            connection = await self._idle.get()
            try:
                for index, envelope in queue:
                    results[index] = await connection.deliver(envelope)
            finally:
                self._idle.put_nowait(connection)

        async with asyncio.TaskGroup() as group:
            for _ in range(min(len(self._connections), len(envelopes))):
                group.create_task(work())
        return results

    async def close(self) -> None:
        """QUIT every open connection; the transport can still be used afterwards."""
        await asyncio.gather(*(connection.close() for connection in self._connections))

    async def _hostname(self) -> str:
        """The name for EHLO, looked up once: `socket.getfqdn` can be slow on a bad resolver."""
        if self.local_hostname is None:
            self.local_hostname = await asyncio.to_thread(socket.getfqdn)
        return self.local_hostname


class _Connection:
    """One slot of the pool: an SMTP conversation that is opened when needed."""

    def __init__(self, transport: SmtpTransport) -> None:
        self._transport = transport
        self._smtp: SMTP | None = None
        self._transactions = 0
        # The reply that made the smarthost hang up (a 421), to explain what follows.
        self._farewell: str | None = None

    async def deliver(self, envelope: Envelope) -> list[Outcome]:
        """Make one transaction; a broken connection becomes code 0 for the unfinished.

        A connection that sat in the pool may have been closed by the smarthost a moment
        ago; if it fails before the smarthost answered MAIL, nothing was delivered, so the
        transaction is made once more on a fresh connection instead of failing.
        """
        if not envelope.recipients:
            return []
        final: list[Outcome | None] = [None] * len(envelope.recipients)
        try:
            try:
                await self._transact(envelope, final)
            except _StaleConnection:
                self._drop()
                await self._transact(envelope, final)
        except _ConnectionLost as lost:
            self._drop()
            return [
                outcome or Outcome(recipient, 0, str(lost))
                for outcome, recipient in zip(final, envelope.recipients, strict=True)
            ]
        except BaseException:
            # Cancelled mid-transaction: the conversation is in an unknown state.
            self._drop()
            raise
        return [outcome for outcome in final if outcome is not None]

    async def close(self) -> None:
        """QUIT, if open; a smarthost that does not answer is simply hung up on."""
        smtp, self._smtp = self._smtp, None
        if smtp is None:
            return
        try:
            with contextlib.suppress(*_NETWORK_ERRORS):
                if smtp.is_connected:
                    await smtp.quit(timeout=min(_QUIT_TIMEOUT, self._transport.timeout))
        finally:
            smtp.close()

    async def _transact(self, envelope: Envelope, final: list[Outcome | None]) -> None:
        """MAIL, RCPT per recipient, then DATA if anyone was accepted; fills in `final`."""
        smtp = await self._open()
        reused = self._transactions > 0
        utf8 = smtp.supports_extension("smtputf8")
        wanted = []
        for index, recipient in enumerate(envelope.recipients):
            problem = _unsendable(recipient, utf8, "5.1.3")
            if problem:
                final[index] = Outcome(recipient, 553, problem)
            else:
                wanted.append(index)
        problem = _unsendable(envelope.sender, utf8, "5.1.7")
        if problem:
            for index in wanted:
                final[index] = Outcome(envelope.recipients[index], 553, problem)
            return
        if not wanted:
            return

        options, encoding = _mail_options(
            smtp, envelope, [envelope.recipients[index] for index in wanted]
        )
        try:
            reply = await self._command(
                smtp, smtp.mail(envelope.sender, options=options, encoding=encoding)
            )
        except _ConnectionLost:
            if reused:
                raise _StaleConnection from None
            raise
        self._transactions += 1
        if not _accepted(reply):
            for index in wanted:
                final[index] = _outcome(envelope.recipients[index], reply)
            await self._reset(smtp)
            return

        accepted = []
        for index in wanted:
            recipient = envelope.recipients[index]
            reply = await self._command(smtp, smtp.rcpt(recipient, encoding=encoding))
            if _accepted(reply):
                accepted.append(index)
            else:
                final[index] = _outcome(recipient, reply)
        if not accepted:
            await self._reset(smtp)
            return

        reply = await self._command(smtp, smtp.data(envelope.data))
        for index in accepted:
            final[index] = _outcome(envelope.recipients[index], reply)
        if not _accepted(reply):
            await self._reset(smtp)

    async def _command(self, smtp: SMTP, call: Coroutine[Any, Any, SMTPResponse]) -> SMTPResponse:
        """The smarthost's reply to one command, refusals included; or `_ConnectionLost`."""
        try:
            return await call
        except SMTPResponseException as exc:
            if not 200 <= exc.code < 600:
                # A malformed reply: whatever follows would be paired with the wrong command.
                raise _ConnectionLost(self._why(exc)) from exc
            reply = SMTPResponse(exc.code, exc.message)
            if not smtp.is_connected:
                self._farewell = f"{exc.code} {exc.message}"
            return reply
        except _NETWORK_ERRORS as exc:
            raise _ConnectionLost(self._why(exc)) from exc

    async def _open(self) -> SMTP:
        """The open conversation, after replacing a worn-out or closed one."""
        if self._smtp is not None and (
            self._transactions >= self._transport.max_messages_per_connection
            or not self._smtp.is_connected
        ):
            await self.close()
        if self._smtp is not None:
            return self._smtp
        transport = self._transport
        smtp = SMTP(
            hostname=transport.host,
            port=transport.port,
            timeout=transport.timeout,
            local_hostname=await transport._hostname(),
            use_tls=False,
            start_tls=False,
        )
        self._farewell = None
        try:
            await smtp.connect()
            try:
                await smtp.ehlo()
            except SMTPHeloError:
                await smtp.helo()
        except _NETWORK_ERRORS as exc:
            smtp.close()
            raise _ConnectionLost(self._why(exc)) from exc
        self._smtp = smtp
        self._transactions = 0
        return smtp

    async def _reset(self, smtp: SMTP) -> None:
        """RSET after a failed transaction, so that the next one starts clean.

        A successful DATA already ends the transaction, so only failures pay this round
        trip. If RSET itself fails, only the connection is lost: every outcome of this
        envelope is already known.
        """
        if not smtp.is_connected:
            self._drop()
            return
        try:
            await smtp.rset()
        except _NETWORK_ERRORS:
            self._drop()

    def _drop(self) -> None:
        """Hang up without QUIT; the next envelope opens a fresh connection."""
        smtp, self._smtp = self._smtp, None
        if smtp is not None:
            smtp.close()

    def _why(self, exc: BaseException) -> str:
        """A one-line reason for a code-0 outcome, naming the smarthost."""
        where = f"{self._transport.host}:{self._transport.port}"
        if self._farewell:
            return f"{where} closed the connection after {self._farewell}"
        return f"{where}: {str(exc) or type(exc).__name__}"


def _accepted(reply: SMTPResponse) -> bool:
    return 200 <= reply.code < 300


def _outcome(recipient: str, reply: SMTPResponse) -> Outcome:
    return Outcome(recipient, reply.code, reply.message)


def _unsendable(address: str, utf8: bool, status: str) -> str | None:
    """Why `address` cannot go into MAIL or RCPT exactly as given, or None if it can.

    aiosmtplib passes addresses through `email.utils.parseaddr`, which turns
    `a@b,c@d` into `a@b`; sending the rewritten address would mail the wrong person.
    """
    try:
        unchanged = parse_address(address) == address
    except ValueError:
        unchanged = False
    if not unchanged:
        return f"{status} not sent: the address cannot be put on an SMTP command line as given"
    if not address.isascii() and not utf8:
        return "5.6.7 not sent: non-ASCII address, and the smarthost does not offer SMTPUTF8"
    return None


def _mail_options(smtp: SMTP, envelope: Envelope, recipients: list[str]) -> tuple[list[str], str]:
    """The MAIL FROM parameters for this envelope, and how to encode its addresses.

    SMTPUTF8 is asked for only when an address about to be sent needs it; `_unsendable`
    has already held back the ones a smarthost without SMTPUTF8 could not take.
    """
    options = []
    if smtp.supports_extension("size"):
        options.append(f"SIZE={len(envelope.data)}")
    if not envelope.data.isascii() and smtp.supports_extension("8bitmime"):
        options.append("BODY=8BITMIME")
    if not all(address.isascii() for address in (envelope.sender, *recipients)):
        options.append("SMTPUTF8")
        return options, "utf-8"
    return options, "ascii"


class MaildirTransport:
    """The stand-in for a smarthost: every envelope becomes a file in a maildir.

    A person, or a test, can read what would have been sent. The envelope is kept in
    `Return-Path` and `X-Arsip-Recipients` headers prepended to the message; not
    `Delivered-To`, which a mail server reading these files later would take for a loop.
    Each file is written to `tmp/`, fsync'd and renamed into `new/`, so a reader never
    sees half a message. Every recipient gets a 250.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    async def send(self, envelopes: Sequence[Envelope]) -> list[list[Outcome]]:
        """Write one file per envelope, off the event loop."""
        return await asyncio.to_thread(self._write_all, list(envelopes))

    async def close(self) -> None:
        """Nothing stays open between calls."""

    def _write_all(self, envelopes: list[Envelope]) -> list[list[Outcome]]:
        new = self.directory / "new"
        for name in ("tmp", "new", "cur"):
            (self.directory / name).mkdir(parents=True, exist_ok=True)
        results = []
        for envelope in envelopes:
            name = self._write(envelope)
            message = f"2.0.0 written to {new / name}"
            results.append([Outcome(recipient, 250, message) for recipient in envelope.recipients])
        if envelopes:
            fsync_directory(new)
        return results

    def _write(self, envelope: Envelope) -> str:
        name = _maildir_name()
        temp = self.directory / "tmp" / name
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            view = memoryview(_envelope_headers(envelope) + envelope.data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(temp, self.directory / "new" / name)
        return name


_deliveries = itertools.count(1)


def _maildir_name() -> str:
    """`seconds.MmicrosecondsPpidQcounter.host`, the usual unique maildir file name."""
    now = time.time()
    host = socket.gethostname().replace("/", "\\057").replace(":", "\\072")
    return f"{int(now)}.M{int(now % 1 * 1_000_000)}P{os.getpid()}Q{next(_deliveries)}.{host}"


def _envelope_headers(envelope: Envelope) -> bytes:
    """`Return-Path` and a folded `X-Arsip-Recipients`, with CR and LF kept out of them."""
    lines = [f"Return-Path: <{_one_line(envelope.sender)}>"]
    line = name = "X-Arsip-Recipients:"
    last = len(envelope.recipients) - 1
    for position, recipient in enumerate(envelope.recipients):
        piece = f" {_one_line(recipient)}{',' if position < last else ''}"
        if line != name and len(line) + len(piece) > _FOLD_AT:
            lines.append(line)
            line = ""
        line += piece
    lines.append(line)
    # Only people read these headers, so an unencodable character may become a "?".
    return "".join(f"{text}\r\n" for text in lines).encode("utf-8", "replace")


def _one_line(address: str) -> str:
    return " ".join(address.splitlines())


def transport_for(
    smarthost: HostPort | None,
    outgoing_dir: Path,
    connections: int = 8,
    *,
    local_hostname: str | None = None,
) -> Transport:
    """SMTP to the configured smarthost; without one, the outgoing maildir."""
    if smarthost is None:
        return MaildirTransport(outgoing_dir)
    return SmtpTransport(
        smarthost.host, smarthost.port, connections=connections, local_hostname=local_hostname
    )
