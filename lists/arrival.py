"""Mail to list addresses as the spool worker hands it over: parsed once, with what DNS
says of a post's From domain, all gathered before the worker opens its transaction.

The DMARC policy and the DKIM check ask DNS, which may be slow or dead. Asked inside the
worker's transaction, they kept its locks (the archive lock, SQLite's one writer) for as
long as the resolver took, and every other message waited; asked here, with the lookups'
own time limits, the transaction does database work only. The parse made here is the one
the rules, the commands and the delivery pipeline all work on.
"""

from __future__ import annotations

import email
from dataclasses import dataclass, replace
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import SMTP

from archiver.archive import RawMessage
from lists.authorship import vouched_for
from lists.dmarc import DmarcLookup


@dataclass(frozen=True)
class Arrival:
    """One message for list addresses, with the network's answers about it."""

    raw: RawMessage
    message: EmailMessage  # parsed once; the delivery pipeline changes it on the way out
    sender: str  # the poster: the From address, else the envelope sender (lower-cased)
    from_policy: str | None = None  # the DMARC policy of the From domain (None: none known)
    vouched: bool = False  # the envelope sender is the From address, or aligned DKIM holds

    def again(self) -> Arrival:
        """The same arrival parsed afresh, for a second list address of one message: the
        first one's handlers changed the message they were given, and the next list must
        see it as it came."""
        return replace(self, message=parse(self.raw.data))


def arrive(raw: RawMessage, dns: DmarcLookup, *, policy: bool, proof: bool) -> Arrival:
    """Parse `raw`; with `policy`, look up the DMARC policy of its From domain; with
    `proof`, whether the post is vouched for as its sender's (`lists.authorship`). The
    engine asks only what the lists the message is posted to use, so a list that never
    rewrites From, or believes the From header, costs no DNS.

    Never raises: a message that does not parse still yields a (mostly empty) message,
    and DNS trouble means "no policy known" and "not vouched for", as it always did.
    """
    message = parse(raw.data)
    sender = poster_address(message, raw.envelope_from)
    domain = from_domain(message) if policy else ""
    return Arrival(
        raw,
        message,
        sender,
        from_policy=dns.policy(domain) if domain else None,
        vouched=proof and vouched_for(raw.data, sender, raw.envelope_from, dns),
    )


def parse(data: bytes) -> EmailMessage:
    """A message as the rules and handlers work on it (never raises)."""
    message = email.message_from_bytes(data, policy=SMTP)
    assert isinstance(message, EmailMessage)
    return message


def from_domain(message: EmailMessage) -> str:
    """The domain of the first From address ("" when From names none): whose DMARC
    policy decides whether the list must rewrite From."""
    addresses = _from_addresses(message)
    return addresses[0].domain if addresses else ""


def poster_address(message: EmailMessage, envelope_from: str) -> str:
    """Who posted: the From address, else the envelope sender (lower-cased)."""
    addresses = _from_addresses(message)
    if addresses and addresses[0].addr_spec:
        return addresses[0].addr_spec.lower()
    return envelope_from.lower()


def _from_addresses(message: EmailMessage) -> tuple[Address, ...]:
    """The From header's addresses; none when it is missing or cannot be read."""
    try:
        return tuple(getattr(message["From"], "addresses", ())) if message["From"] else ()
    except (IndexError, ValueError):
        return ()
