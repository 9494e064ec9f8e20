"""The DMARC policy a From domain publishes, for the list engine's DMARC mitigation.

A list that relays a post from a domain with p=reject or p=quarantine breaks that domain's
DMARC alignment, so receivers would bounce or junk the copy; the list rewrites From for
such posts. This module only answers "what does this domain publish", following RFC 7489
section 6.6.3, and caches the answers so that a slow or dead DNS server costs at most one
timeout per domain and minute rather than one per post.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import dns.exception
import dns.name
import dns.resolver
from publicsuffixlist import PublicSuffixList

log = logging.getLogger(__name__)

POLICIES = frozenset({"reject", "quarantine", "none"})
MITIGATED = frozenset({"reject", "quarantine"})


def needs_mitigation(policy: str | None) -> bool:
    """True for reject and quarantine: the policies under which a relayed post is lost."""
    return policy in MITIGATED


@functools.cache
def _public_suffixes() -> PublicSuffixList:
    """The Public Suffix List of the installed `publicsuffixlist` (it ships the list, so
    nothing is downloaded); read once, on the first look-up, as it takes a fifth of a second."""
    return PublicSuffixList()


def organizational_domain(domain: str) -> str:
    """The registered domain above `domain` (lower-case, no trailing dot), whose record
    covers its subdomains: RFC 7489 section 3.2, by the Public Suffix List.

    Its private section counts too, so `alice.github.io` and `bob.github.io` are two
    organisations, and `x.school.k12.ca.us` belongs to `school.k12.ca.us`. A name that is a
    public suffix itself, or is not a domain, is its own organisation.
    """
    return _public_suffixes().privatesuffix(domain.lower()) or domain.lower()


def parse_record(text: str) -> dict[str, str] | None:
    """The tags of a DMARC record (lower-case names, first occurrence wins), or None when
    `text` is not a DMARC record.

    Other TXT records may live at `_dmarc.` too (verification tokens, mistakes); RFC 7489
    discards every record whose first tag is not `v=DMARC1` instead of guessing.
    """
    parts = text.split(";")
    name, _, value = parts[0].partition("=")
    if name.strip().lower() != "v" or value.strip().lower() != "dmarc1":
        return None
    tags: dict[str, str] = {}
    for part in parts:
        name, sep, value = part.partition("=")
        if sep:
            tags.setdefault(name.strip().lower(), value.strip())
    return tags


def known_policy(value: str | None) -> str | None:
    """`value` as one of POLICIES, or None for a missing or unknown value, which RFC 7489
    treats as no usable policy."""
    if value is None:
        return None
    value = value.lower()
    return value if value in POLICIES else None


@dataclass(frozen=True)
class _Answer:
    """What DNS said about one `_dmarc.` name."""

    tags: dict[str, str] | None  # the one valid record, or None when there is none
    failed: bool = False  # no answer at all (timeout, SERVFAIL): nothing is known


_NO_RECORD = _Answer(None)
_FAILED = _Answer(None, failed=True)


@dataclass(frozen=True)
class _Entry:
    answer: _Answer
    expires: float


class DmarcLookup:
    """The published DMARC policy of a domain, cached."""

    # A failed lookup is retried after a minute: soon enough to pick up a recovered
    # server, rarely enough that a dead one costs one timeout per domain and minute.
    FAILURE_TTL = 60.0
    # Senders choose their domains; the cache must not grow without bound.
    MAX_ENTRIES = 10_000

    def __init__(
        self,
        nameservers: list[str] | None = None,
        port: int = 53,
        timeout: float = 2.0,
        ttl: float = 3600.0,
        negative_ttl: float = 600.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """Ask `nameservers` (IP addresses) on `port`, or the system's resolvers when None.

        `timeout` bounds the DNS time of one `policy` call, fallback included. `ttl` is how
        long a found record is trusted, `negative_ttl` how long "no record" is. `clock`
        measures cache age, so tests can move time.

        Raises ValueError at once for a nameserver that is not an IP address: that is a
        configuration mistake, not a DNS failure.
        """
        self._nameservers = list(nameservers) if nameservers is not None else None
        self._port = port
        self._timeout = timeout
        self._ttl = ttl
        self._negative_ttl = negative_ttl
        self._clock = clock
        self._lock = threading.Lock()
        self._cache: dict[str, _Entry] = {}
        self._resolver: dns.resolver.Resolver | None = None
        if self._nameservers is not None:
            self._resolver = self._make_resolver()

    def policy(self, domain: str) -> str | None:
        """The policy published for mail from `domain`: "reject", "quarantine" or "none",
        or None when there is no record or it cannot be looked up.

        Never raises: the caller is on the path of a post, and DNS trouble must not bounce it.
        """
        name = domain.strip().lower().removesuffix(".")
        if not name:
            return None
        deadline = time.monotonic() + self._timeout
        answer = self._lookup(name, deadline)
        if answer.failed:
            return None
        if answer.tags is not None:
            return known_policy(answer.tags.get("p"))
        org = organizational_domain(name)
        if org == name:
            return None
        answer = self._lookup(org, deadline)
        if answer.tags is None:
            return None
        # sp= is what the organization publishes for its subdomains; p= when it says nothing.
        return known_policy(answer.tags.get("sp", answer.tags.get("p")))

    def txt(self, name: bytes | str, timeout: float | None = None) -> bytes | None:
        """The first TXT record at `name`, its strings joined (None when there is none or
        DNS fails), from the same servers as the DMARC lookups: DKIM's public keys, for
        `lists.authorship`. Not cached: a key is asked for only when a post needs it."""
        text = name.decode("ascii", "replace") if isinstance(name, bytes) else name
        try:
            qname = dns.name.from_text(text)
            resolver = self._resolver or self._make_resolver()
            answer = resolver.resolve(qname, "TXT", lifetime=timeout or self._timeout, search=False)
        except (dns.exception.DNSException, ValueError):
            return None
        for rdata in answer:
            return b"".join(rdata.strings)
        return None

    def _lookup(self, name: str, deadline: float) -> _Answer:
        """The answer for `_dmarc.<name>`, from the cache or from DNS."""
        with self._lock:
            entry = self._cache.get(name)
            if entry is not None and entry.expires > self._clock():
                return entry.answer
        if time.monotonic() >= deadline:
            # The exact name used up the time; the fallback was never asked, so cache nothing.
            return _FAILED
        answer = self._query(name, deadline)
        if answer.failed:
            lifetime = self.FAILURE_TTL
        elif answer.tags is None:
            lifetime = self._negative_ttl
        else:
            lifetime = self._ttl
        with self._lock:
            self._store(name, _Entry(answer, self._clock() + lifetime))
        return answer

    def _query(self, name: str, deadline: float) -> _Answer:
        """Ask DNS for the TXT records at `_dmarc.<name>`; the lock is not held, so one slow
        domain does not hold up lookups for the others."""
        try:
            qname = dns.name.from_text(f"_dmarc.{name}")
        except (dns.exception.DNSException, ValueError):
            return _NO_RECORD  # not a domain name, so nothing can be published for it
        try:
            resolver = self._resolver or self._make_resolver()
            answer = resolver.resolve(
                qname, "TXT", lifetime=max(deadline - time.monotonic(), 0.01), search=False
            )
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            return _NO_RECORD
        except Exception as error:  # any failure inside DNS handling means "unknown"
            log.warning("DMARC lookup for %s failed: %s", name, str(error) or type(error).__name__)
            return _FAILED
        records = []
        for rdata in answer:
            tags = parse_record(b"".join(rdata.strings).decode("ascii", "replace"))
            if tags is not None:
                records.append(tags)
        # RFC 7489 6.6.3: several records are as good as none.
        return _Answer(records[0]) if len(records) == 1 else _NO_RECORD

    def _make_resolver(self) -> dns.resolver.Resolver:
        """A resolver for the configured servers, or the system's (read again while it
        fails, so a resolver configuration that appears later is picked up)."""
        resolver = dns.resolver.Resolver(configure=self._nameservers is None)
        if self._nameservers is not None:
            resolver.port = self._port
            resolver.nameservers = self._nameservers
        # Each attempt gets a share of the budget: every server is tried, a lone one twice.
        resolver.timeout = self._timeout / max(2, len(resolver.nameservers))
        resolver.lifetime = self._timeout
        self._resolver = resolver
        return resolver

    def _store(self, name: str, entry: _Entry) -> None:
        """Cache `entry`, making room by dropping expired and then the oldest entries."""
        self._cache.pop(name, None)
        if len(self._cache) >= self.MAX_ENTRIES:
            now = self._clock()
            for stale in [key for key, old in self._cache.items() if old.expires <= now]:
                del self._cache[stale]
            while len(self._cache) >= self.MAX_ENTRIES:
                del self._cache[next(iter(self._cache))]
        self._cache[name] = entry
