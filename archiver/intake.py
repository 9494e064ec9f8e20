"""The SMTP and LMTP intake: decide, make durable, reply. Nothing else.

The handler is an aiosmtpd handler object. It refuses what Arsip does not own at RCPT
time, and answers 250 to DATA only after the group committer reports the message durable
(invariant 1). Everything after that (parsing, archiving, fan-out) is the spool worker's.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import re
import socket
import ssl
from datetime import UTC, datetime
from typing import Any

from aiosmtpd.lmtp import LMTP
from aiosmtpd.smtp import MISSING, SMTP, AuthResult, Envelope, LoginPassword, Session

from archiver.config import Settings
from archiver.listeners import listen
from archiver.routing import Destination, RecipientPolicy, client_ip
from archiver.spool import GroupCommitter, Incoming, SpoolFullError, new_queue_id

log = logging.getLogger(__name__)

TOO_MANY_RECIPIENTS = "452 4.5.3 Too many recipients"
TOO_BIG = "552 5.3.4 Message size exceeds fixed maximum message size"
STORE_FAILED = "451 4.3.0 Temporary failure storing the message; try again later"
STORE_FULL = "452 4.3.1 Insufficient system storage; try again later"
TOO_MANY_CONNECTIONS = "421 4.7.0 Too many connections from your address; try again later"
AUTH_NEEDS_TLS = "538 5.7.11 Encryption required for requested authentication mechanism"
AUTH_UNAVAILABLE = "502 5.5.1 AUTH not available"

# aiosmtpd words some refusals itself; these get the enhanced status codes clients act on.
_REWORDED = {
    "552 Error: message size exceeds fixed maximum message size": TOO_BIG,
    "552 Error: Too much mail data": TOO_BIG,
}


class ClientConnections:
    """How many SMTP/LMTP sessions each client address has open, against a limit.

    One client holding every session open (or opening them faster than they end) would
    keep real MTAs out; beyond its share, a client is told to come back later.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._open: dict[str, int] = {}

    def enter(self, client: str) -> bool:
        """Count a new session for `client`, unless it already has `limit` of them."""
        count = self._open.get(client, 0)
        if count >= self.limit:
            return False
        self._open[client] = count + 1
        return True

    def leave(self, client: str) -> None:
        """A session of `client` ended."""
        count = self._open.get(client, 0) - 1
        if count > 0:
            self._open[client] = count
        else:
            self._open.pop(client, None)


# A path `<local@domain>` whose both halves are RFC 5322 dot-atoms: nearly every envelope
# address. aiosmtpd parses each MAIL and RCPT argument with the email package's full
# header grammar (and builds a typing.Protocol class per call), which was a quarter of
# the intake's time under load; such paths are read with this instead, and anything else
# (quoted local parts, domain literals, source routes, comments, non-ASCII) goes through
# aiosmtpd's parser as before. The results are the same (tests/test_intake_paths.py).
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_DOT_ATOM = rf"{_ATEXT}(?:\.{_ATEXT})*"
_PLAIN_PATH = re.compile(rf"\s*<({_DOT_ATOM})@({_DOT_ATOM})>\s*+(?!\()(.*)\Z", re.DOTALL)


class _Reworded:
    """Mixin that rewrites aiosmtpd's own reply texts into ones with enhanced codes.

    It also counts each client's sessions (see `ClientConnections`), and lifts the line
    length limit from RFC 5321's 1,000 to the message size limit:
    real mail has longer lines (HTML newsletters, unwrapped base64, bare-LF messages that
    are one "line" to SMTP), and an archive that refuses a journal copy makes the sending
    MTA bounce it. The message size limit still bounds memory.
    """

    def __init__(
        self,
        handler: Any,
        *,
        data_size_limit: int,
        connections: ClientConnections | None = None,
        **options: Any,
    ) -> None:
        self.line_length_limit = data_size_limit + 1024
        self.connections = connections
        self._client: str | None = None
        self._refused = False
        super().__init__(handler, data_size_limit=data_size_limit, **options)  # type: ignore[call-arg]

    async def push(self, status: str) -> None:
        await super().push(_REWORDED.get(status, status))  # type: ignore[misc]

    def _getaddr(self, arg: str) -> tuple[str | None, str | None]:
        """The address and the rest of a MAIL or RCPT argument (see `_PLAIN_PATH`)."""
        plain = _PLAIN_PATH.match(arg)
        if plain is None:
            return super()._getaddr(arg)  # type: ignore[misc]
        local, domain, rest = plain.groups()
        limit = self.local_part_limit  # type: ignore[attr-defined]
        if limit and len(local) > limit:
            return None, None
        return f"{local}@{domain}", rest

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Refuse a client that already has its share of connections, before the greeting.

        STARTTLS calls this again for the same client, which must not count twice.
        """
        if self.connections is not None and self._original_transport is None:  # type: ignore[attr-defined]
            peer = transport.get_extra_info("peername")
            client = str(peer[0]) if isinstance(peer, tuple) and peer else str(peer)
            if not self.connections.enter(client):
                log.warning("refused connection from %s: too many connections", client)
                self._refused = True
                transport.write(TOO_MANY_CONNECTIONS.encode() + b"\r\n")  # type: ignore[attr-defined]
                transport.close()
                return
            self._client = client
        super().connection_made(transport)  # type: ignore[misc]

    def connection_lost(self, error: Exception | None) -> None:
        if self._refused:
            return
        if self._client is not None and self.connections is not None:
            self.connections.leave(self._client)
            self._client = None
        super().connection_lost(error)  # type: ignore[misc]


class IntakeSMTP(_Reworded, SMTP):
    """SMTP with enhanced status codes on aiosmtpd's built-in refusals."""


class IntakeLMTP(_Reworded, LMTP):
    """LMTP with enhanced status codes on aiosmtpd's built-in refusals."""


class JournalLogins:
    """aiosmtpd authenticator for `ARSIP_JOURNAL_LOGINS`: a client that logs in with one
    is a journal source, wherever it connects from.

    The secrets are random tokens (`arsip journal-login` makes them), so one sha256 is
    enough to keep them and checking one costs the event loop nothing; a slow password
    hash would stall every session while it ran. Neither the secret nor the attempt's
    password ever reaches a log line.
    """

    def __init__(self, logins: dict[str, str]) -> None:
        self.logins = logins

    def __call__(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: object
    ) -> AuthResult:
        if not isinstance(data, LoginPassword):
            return AuthResult(success=False, handled=False)
        name = data.login.decode("utf-8", "replace")
        given = hashlib.sha256(data.password).hexdigest()
        ok = hmac.compare_digest(given, self.logins.get(name, "-" * len(given)))
        if ok:
            log.info("journal login %r from peer=%s", name, _peer(session))
        else:
            log.warning("failed journal login %r from peer=%s", name, _peer(session))
        return AuthResult(success=ok, handled=False, auth_data=name if ok else None)


class IntakeHandler:
    """aiosmtpd handler shared by the SMTP and LMTP servers."""

    def __init__(
        self, settings: Settings, policy: RecipientPolicy, committer: GroupCommitter
    ) -> None:
        self.settings = settings
        self.policy = policy
        self.committer = committer

    async def handle_EHLO(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        hostname: str,
        responses: list[str],
    ) -> list[str]:
        """Advertise PIPELINING: aiosmtpd reads commands in order, so batching is safe.
        AUTH is offered only where `handle_AUTH` would take it."""
        session.host_name = hostname
        if not self._may_authenticate(session):
            responses = [line for line in responses if not line.startswith("250-AUTH")]
        return [*responses[:-1], "250-PIPELINING", responses[-1]]

    async def handle_AUTH(
        self, server: SMTP, session: Session, envelope: Envelope, args: list[str]
    ) -> object:
        """Let a journal login through only over STARTTLS or from the machine itself, so
        its secret never crosses a network in the clear."""
        if not self.settings.journal_logins:
            return AUTH_UNAVAILABLE
        if not self._may_authenticate(session):
            return AUTH_NEEDS_TLS
        return MISSING  # aiosmtpd reads the credentials and asks `JournalLogins`

    def _may_authenticate(self, session: Session) -> bool:
        if not self.settings.journal_logins:
            return False
        return session.ssl is not None or _loopback(session)

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        """Accept only Arsip's own addresses, and no more than the configured number."""
        if len(envelope.rcpt_tos) >= self.settings.max_recipients:
            return TOO_MANY_RECIPIENTS
        verdict = self.policy.check(address, journal_source=self._journal_source(session))
        if not verdict.accepted:
            log.info("refused rcpt=<%s> from peer=%s: %s", address, _peer(session), verdict.reply)
            return verdict.reply
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.append(options)
        if verdict.destination is Destination.ROUTED:
            envelope.routed = True  # mail for a list: someone waits for it
        return verdict.reply

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        """Spool the message durably, then acknowledge (one reply per recipient for LMTP)."""
        data = envelope.original_content or b""
        if len(data) > self.settings.max_message_size:
            return TOO_BIG
        queue_id = new_queue_id()
        protocol = "lmtp" if isinstance(server, LMTP) else "smtp"
        item = Incoming(
            queue_id=queue_id,
            envelope_from=(envelope.mail_from or "").lower(),
            recipients=tuple(envelope.rcpt_tos),
            data=data,
            protocol=protocol,
            peer=_peer(session),
            received_at=datetime.now(UTC),
            priority=0 if getattr(envelope, "routed", False) else 1,
            trusted=self._journal_source(session),
        )
        try:
            await self.committer.submit(item)
        except SpoolFullError as exc:
            log.error("queue_id=%s not stored, storage full: %s", queue_id, exc)
            return self._replies(server, envelope, STORE_FULL)
        except Exception as exc:
            log.error("queue_id=%s not stored: %s", queue_id, exc)
            return self._replies(server, envelope, STORE_FAILED)
        log.info(
            "queue_id=%s accepted from=<%s> rcpts=%d size=%d peer=%s proto=%s",
            queue_id,
            item.envelope_from,
            len(item.recipients),
            len(data),
            item.peer,
            protocol,
        )
        return self._replies(server, envelope, f"250 2.0.0 Ok: queued as {queue_id}")

    def _journal_source(self, session: Session) -> bool:
        """Whether this session's client may hand in journal mail: it is in
        `ARSIP_JOURNAL_CLIENTS`, or it logged in with one of `ARSIP_JOURNAL_LOGINS`."""
        return bool(session.authenticated) or self.policy.is_journal_source(_client(session))

    @staticmethod
    def _replies(server: SMTP, envelope: Envelope, reply: str) -> str:
        """LMTP owes one reply per accepted recipient; SMTP one for the transaction."""
        if isinstance(server, LMTP):
            return "\r\n".join(reply for _ in envelope.rcpt_tos)
        return reply


def _client(session: Session) -> str:
    """The client's IP address."""
    peer = session.peer
    return str(peer[0]) if isinstance(peer, tuple) and peer else str(peer)


def _loopback(session: Session) -> bool:
    ip = client_ip(_client(session))
    return ip is not None and ip.is_loopback


def _peer(session: Session) -> str:
    peer = session.peer
    if isinstance(peer, tuple) and len(peer) >= 2:
        return f"{peer[0]}:{peer[1]}"
    return str(peer)


def tls_context(settings: Settings) -> ssl.SSLContext | None:
    """A server TLS context for STARTTLS when a certificate is configured."""
    if settings.tls_cert is None or settings.tls_key is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(settings.tls_cert, settings.tls_key)
    return context


def bind_intake(settings: Settings) -> list[tuple[socket.socket, type[SMTP]]]:
    """The SMTP and LMTP listening sockets, each with the protocol it speaks (a port of 0
    in the settings turns that listener off)."""
    bound: list[tuple[socket.socket, type[SMTP]]] = []
    try:
        for port, protocol in ((settings.smtp_port, IntakeSMTP), (settings.lmtp_port, IntakeLMTP)):
            if port:
                bound += [(sock, protocol) for sock in listen(settings.smtp_host, port)]
    except OSError:
        for sock, _protocol in bound:
            sock.close()
        raise
    return bound


async def start_servers(
    settings: Settings,
    handler: IntakeHandler,
    listeners: list[tuple[socket.socket, type[SMTP]]],
) -> list[asyncio.AbstractServer]:
    """Serve SMTP and LMTP on the sockets `bind_intake` bound."""
    loop = asyncio.get_running_loop()
    context = tls_context(settings)
    common: dict[str, Any] = {
        "data_size_limit": settings.max_message_size,
        "enable_SMTPUTF8": True,
        "decode_data": False,
        "hostname": settings.hostname,
        "ident": "Arsip ESMTP",
        "tls_context": context,
        "require_starttls": False,
        "timeout": settings.smtp_timeout,
        # AUTH without TLS is allowed here only to reach `handle_AUTH`, which refuses it
        # away from loopback; without journal logins it is refused altogether.
        "auth_require_tls": not settings.journal_logins,
        "authenticator": JournalLogins(dict(settings.journal_logins)),
        "connections": ClientConnections(settings.max_connections_per_client),
    }
    servers = []
    for sock, protocol in listeners:

        def factory(protocol: type[SMTP] = protocol) -> SMTP:
            return protocol(handler, loop=loop, **common)

        servers.append(await loop.create_server(factory, sock=sock))
        host, port = sock.getsockname()[:2]
        log.info("listening for %s on %s port %d", protocol.__name__, host, port)
    return servers
