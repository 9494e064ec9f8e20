"""Secrets in mail: confirmation tokens, signed one-click unsubscribe links, and signed,
expiring link tokens (a member's settings page, an account's address verification)."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Sequence

SIGNATURE_BYTES = 24
MEMBER_PAGE = "member-page"


def new_token() -> str:
    """A random, unguessable token (160 bits) for one confirmation or held message."""
    return secrets.token_hex(20)


def unsubscribe_signature(secret_key: str, list_address: str, address: str) -> str:
    """The signature of a one-click unsubscribe link for `address` on `list_address`.

    HMAC over both, so a link works for one person on one list and cannot be forged for
    anyone else; it needs no stored state, so every post can carry one.
    """
    message = f"unsubscribe\0{list_address.lower()}\0{address.lower()}".encode()
    digest = hmac.new(secret_key.encode(), message, hashlib.sha256).digest()[:18]
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def signature_matches(secret_key: str, list_address: str, address: str, signature: str) -> bool:
    """Whether `signature` is the one `unsubscribe_signature` gives (constant time)."""
    expected = unsubscribe_signature(secret_key, list_address, address)
    return hmac.compare_digest(expected.encode(), signature.encode())


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _signature(secret_key: str, purpose: str, payload: bytes) -> bytes:
    # A key of its own for each purpose: a token made for one kind of link is worthless
    # as another kind, even where the fields happen to look alike.
    key = hmac.new(secret_key.encode(), f"arsip link\0{purpose}".encode(), hashlib.sha256)
    return hmac.new(key.digest(), payload, hashlib.sha256).digest()[:SIGNATURE_BYTES]


def sign(secret_key: str, purpose: str, fields: Sequence[str], expires: int) -> str:
    """A URL-safe token carrying `fields` for `purpose` until `expires` (Unix time).

    The token is `base64url(JSON [fields..., expires]) "." base64url(HMAC-SHA256)`:
    signed rather than stored, so a link needs no table, costs nothing when it is never
    used, and cannot be changed or made without the secret key.
    """
    payload = json.dumps([*fields, int(expires)], separators=(",", ":")).encode()
    return f"{_b64(payload)}.{_b64(_signature(secret_key, purpose, payload))}"


def unsign(
    secret_key: str, purpose: str, token: str, now: float | None = None
) -> tuple[str, ...] | None:
    """The fields of a token `sign` made for `purpose`, or None when it was changed, was
    signed with another key or for another purpose, or has expired."""
    if not token.isascii() or token.count(".") != 1:
        return None
    encoded, sent = token.split(".")
    try:
        payload = _unb64(encoded)
        signature = _unb64(sent)
    except (binascii.Error, ValueError):
        return None
    # Decoding skips stray characters; only the canonical spelling of a token is accepted.
    if _b64(payload) != encoded or _b64(signature) != sent:
        return None
    if not hmac.compare_digest(signature, _signature(secret_key, purpose, payload)):
        return None
    try:
        values = json.loads(payload)
    except ValueError:
        return None
    if not isinstance(values, list) or not values:
        return None
    *fields, expires = values
    if not isinstance(expires, int) or not all(isinstance(field, str) for field in fields):
        return None
    if expires <= (time.time() if now is None else now):
        return None
    return tuple(fields)


VERP_SIGNATURE_CHARS = 13  # base32: 65 bits, in lower case (servers change case on the way back)


def verp_signature(secret_key: str, list_address: str, recipient: str) -> str:
    """The signature a VERP envelope sender carries for `recipient` of `list_address`.

    A bounce scores against a member only when it comes back to an address only the
    list could have made for that member, so a forged bounce naming alice scores nothing.
    """
    payload = f"{list_address.lower()}\0{recipient.lower()}".encode()
    digest = _signature(secret_key, "verp", payload)
    return base64.b32encode(digest).decode().lower()[:VERP_SIGNATURE_CHARS]


def verp_signature_matches(
    secret_key: str, list_address: str, recipient: str, signature: str
) -> bool:
    """Whether `signature` is `verp_signature`'s for this list and recipient (constant time)."""
    expected = verp_signature(secret_key, list_address, recipient)
    return signature.isascii() and hmac.compare_digest(expected, signature.lower())


def member_token(secret_key: str, list_address: str, address: str, expires: int) -> str:
    """A token for the settings page of `address`'s membership of `list_address`."""
    return sign(secret_key, MEMBER_PAGE, (list_address.lower(), address.lower()), expires)


def read_member_token(
    secret_key: str, token: str, now: float | None = None
) -> tuple[str, str] | None:
    """The (list address, member address) a `member_token` names, or None if it is not
    valid (changed, forged, expired)."""
    fields = unsign(secret_key, MEMBER_PAGE, token, now)
    if fields is None or len(fields) != 2:
        return None
    return fields[0], fields[1]
