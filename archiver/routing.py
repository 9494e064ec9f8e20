"""Which recipients Arsip owns, and where the mail for each of them goes.

The intake asks `RecipientPolicy.check` at RCPT time: only journal addresses, addresses in
a journal domain, addresses a registered router claims (the list engine registers one) and
`postmaster` are accepted. Everything else is refused there, so Arsip can never be used as
a relay. The address must also be in a plain form: quoted local parts, `%` and `!`
routing, source routes and address literals are refused outright rather than interpreted.

Journal addresses and domains are the archive's way in: whatever arrives there is recorded
as mail of the company's people, envelope and Bcc included. So only a trusted journal
source (a client in `ARSIP_JOURNAL_CLIENTS`, or one that logged in with a journal login)
reaches them; anyone else gets `550 5.7.1`.
List addresses stay open to everyone, because the list's own posting rules decide, and
`postmaster@` every domain Arsip serves is open to everyone (RFC 5321 section 4.5.1).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Protocol

from archiver.config import Settings

# RFC 5321 dot-atom local part (plus UTF-8 for SMTPUTF8); no quotes, no routing characters.
_ATEXT = r"A-Za-z0-9!#$&'*+/=?^_`{|}~\-\u0080-\U0010ffff"
_LOCAL_PART = re.compile(rf"^[{_ATEXT}]+(?:\.[{_ATEXT}]+)*$")
_ALNUM = r"A-Za-z0-9\u0080-\U0010ffff"
_LABEL = rf"[{_ALNUM}](?:[{_ALNUM}\-]*[{_ALNUM}])?"
_DOMAIN = re.compile(rf"^(?:{_LABEL}\.)*{_LABEL}$")


class Destination(Enum):
    """What an accepted recipient stands for."""

    JOURNAL = "journal"
    ARCHIVE = "archive"
    ROUTED = "routed"
    POSTMASTER = "postmaster"


@dataclass(frozen=True)
class Verdict:
    """The RCPT decision: an SMTP reply, and for accepted recipients what they mean."""

    reply: str
    destination: Destination | None = None
    # For journal-domain addresses, the original address this copy stands for.
    original: str | None = None

    @property
    def accepted(self) -> bool:
        return self.destination is not None


class RecipientRouter(Protocol):
    """A part of the system that owns some addresses (the list engine's list addresses)."""

    def claims(self, address: str) -> bool:
        """Whether mail to `address` (normalised, lower-case) is this router's."""
        ...

    def owns_domain(self, domain: str) -> bool:
        """Whether `domain` is this router's, so that other addresses in it are unknown
        users (550 5.1.1) rather than relaying (550 5.7.1)."""
        ...


RELAY_DENIED = "550 5.7.1 Relaying denied: this server accepts mail only for its own addresses"
BAD_SYNTAX = "550 5.7.1 Address not accepted: quoted, routed or literal addresses are refused"
NO_MAILBOX = "550 5.1.1 No such address here"
NOT_A_JOURNAL_SOURCE = "550 5.7.1 Journal mail is accepted only from the archive's journal sources"
ACCEPTED = "250 2.1.5 Recipient ok"


def normalise(address: str) -> str | None:
    """The lower-cased `local@domain` form of a plain address, or None when it is not plain.

    Lower-casing the local part too is deliberate: Arsip's own addresses are
    case-insensitive, and the archive stores addresses lower-cased (DESIGN.md).
    """
    local, at, domain = address.strip().rpartition("@")
    if not at or not local or not domain:
        return None
    if "%" in local or "!" in local or local.startswith("@") or ":" in local:
        return None
    domain = domain.rstrip(".")
    if not _LOCAL_PART.match(local) or not _DOMAIN.match(domain):
        return None
    return f"{local.lower()}@{domain.lower()}"


def client_ip(client: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The IP address of a client as a socket names it (an IPv4 client of a dual-stack
    listener as IPv4), or None when it is no IP address."""
    try:
        ip = ipaddress.ip_address(client.strip("[]").partition("%")[0])
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


class RecipientPolicy:
    """Decides RCPT TO from the settings and the registered routers."""

    def __init__(self, settings: Settings, routers: Sequence[RecipientRouter] = ()) -> None:
        self.settings = settings
        self.routers = list(routers)
        self.journal_addresses = set(settings.journal_addresses)
        # The domains whose postmaster Arsip is, besides the list domains of its routers
        self.served_domains = (
            {settings.hostname.lower()}
            | set(settings.domains)
            | set(settings.journal_domains)
            | {address.rpartition("@")[2] for address in settings.journal_addresses}
        )

    def register(self, router: RecipientRouter) -> None:
        """Let another part of the system own addresses (called by the composition root)."""
        self.routers.append(router)

    def check(self, address: str, *, journal_source: bool) -> Verdict:
        """Accept or refuse one RCPT TO address from a client that is, or is not, a trusted
        journal source (see `is_journal_source`).

        A journal source's `postmaster@` a journal domain is a journal copy like any other
        address there (the company's postmaster mailbox is journaled too); from anyone
        else, it is mail for Arsip's own postmaster.
        """
        if address.strip().lower() == "postmaster":  # RFC 5321: no domain needed
            return Verdict(ACCEPTED, Destination.POSTMASTER)
        plain = normalise(address)
        if plain is None:
            return Verdict(BAD_SYNTAX)
        local, _, domain = plain.rpartition("@")
        original_domain = self.settings.journal_domains.get(domain)
        if journal_source and plain in self.journal_addresses:
            return Verdict(ACCEPTED, Destination.JOURNAL)
        if journal_source and original_domain is not None:
            return Verdict(ACCEPTED, Destination.ARCHIVE, f"{local}@{original_domain}")
        if local == "postmaster" and self._serves(domain):
            return Verdict(ACCEPTED, Destination.POSTMASTER)
        if plain in self.journal_addresses or original_domain is not None:
            return Verdict(NOT_A_JOURNAL_SOURCE)
        if any(router.claims(plain) for router in self.routers):
            return Verdict(ACCEPTED, Destination.ROUTED)
        if domain in self.settings.domains or any(r.owns_domain(domain) for r in self.routers):
            return Verdict(NO_MAILBOX)
        return Verdict(RELAY_DENIED)

    def is_journal_source(self, client: str) -> bool:
        """Whether the client at IP address `client` may hand in journal mail."""
        ip = client_ip(client)
        return ip is not None and any(ip in net for net in self.settings.journal_clients)

    def _serves(self, domain: str) -> bool:
        return domain in self.served_domains or any(r.owns_domain(domain) for r in self.routers)
