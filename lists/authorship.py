"""Whether a post really comes from the member its From names.

The From header is whatever the sender typed, so members-only posting that believes it
lets anyone post as a member. A post is the member's when the envelope sender is the
member's address (what the sending server's own checks, SPF among them, vouch for), or
when it carries a valid DKIM signature of the From's domain (aligned as DMARC aligns
them: the same organisational domain), verified with the public key in DNS. Anything
else is held for a moderator, unless the list's owner chose the old header-only check
(`trust_header_from`).
"""

from __future__ import annotations

import logging

import dkim

from lists.dmarc import DmarcLookup, organizational_domain

log = logging.getLogger(__name__)

MAX_SIGNATURES = 5  # a post with more is not worth more DNS lookups
MIN_KEY_BITS = 1024  # RFC 8301: shorter RSA keys are not to be trusted


def vouched_for(data: bytes, sender: str, envelope_from: str, dns: DmarcLookup) -> bool:
    """Whether the post `data`, whose From address is `sender`, is vouched for as the
    sender's: the envelope sender is the same address, or an aligned DKIM signature holds."""
    if sender and envelope_from.strip().lower() == sender:
        return True
    domain = sender.rpartition("@")[2]
    return bool(domain) and aligned_signature(data, domain, dns)


def aligned_signature(data: bytes, from_domain: str, dns: DmarcLookup) -> bool:
    """Whether one of the DKIM signatures on `data` is valid and signed by a domain in the
    organisational domain of `from_domain` (relaxed alignment, RFC 7489 3.1.1).

    Never raises: a broken signature, a missing key or a DNS failure mean "not vouched
    for", and the post waits for a moderator instead of going out.
    """
    wanted = organizational_domain(from_domain.lower().rstrip("."))
    try:
        checker = dkim.DKIM(data, minkey=MIN_KEY_BITS)
        count = sum(1 for name, _ in checker.headers if name.lower() == b"dkim-signature")
    except Exception as error:  # dkimpy raises many types for hostile input
        log.info("DKIM: the post cannot be read: %s", str(error) or type(error).__name__)
        return False
    for index in range(min(count, MAX_SIGNATURES)):
        try:
            if not checker.verify(idx=index, dnsfunc=dns.txt):
                continue
        except Exception as error:
            log.info("DKIM signature %d does not hold: %s", index, error)
            continue
        signer = (checker.domain or b"").decode("ascii", "replace").lower().rstrip(".")
        if organizational_domain(signer) == wanted:
            return True
    return False
