"""Secrets in mail: confirmation tokens, signed one-click unsubscribe links, and signed,
expiring link tokens (a member's settings page, an account's address verification).

Signing is itsdangerous's (the library Flask signs its sessions with): HMAC-SHA256 under
a key derived from the secret key and a salt of its own for each purpose, so a token made
for one kind of link is worthless as another kind. Links mailed before that still carry
the signatures this module used to make by hand; they are read by the `_legacy_` functions
below, so nobody's link stops working when the service is upgraded.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Sequence

from itsdangerous import BadSignature, Signer, URLSafeSerializer

MEMBER_PAGE = "member-page"


def new_token() -> str:
    """A random, unguessable token (160 bits) for one confirmation or held message."""
    return secrets.token_hex(20)


def _salt(purpose: str) -> str:
    return f"arsip link\0{purpose}"


def _signer(secret_key: str, purpose: str) -> Signer:
    return Signer(secret_key, salt=_salt(purpose), digest_method=hashlib.sha256)


def _serializer(secret_key: str, purpose: str) -> URLSafeSerializer:
    return URLSafeSerializer(
        secret_key, salt=_salt(purpose), signer_kwargs={"digest_method": hashlib.sha256}
    )


def _unsubscribe_value(list_address: str, address: str) -> str:
    return f"{list_address.lower()}\0{address.lower()}"


def unsubscribe_signature(secret_key: str, list_address: str, address: str) -> str:
    """The signature of a one-click unsubscribe link for `address` on `list_address`.

    Signed over both, so a link works for one person on one list and cannot be forged for
    anyone else; it needs no stored state, so every post can carry one.
    """
    value = _unsubscribe_value(list_address, address)
    return _signer(secret_key, "unsubscribe").get_signature(value).decode("ascii")


def signature_matches(secret_key: str, list_address: str, address: str, signature: str) -> bool:
    """Whether `signature` is the one `unsubscribe_signature` gives, or the one it gave
    before it moved to itsdangerous (constant time both)."""
    if not signature.isascii():
        return False
    value = _unsubscribe_value(list_address, address)
    if _signer(secret_key, "unsubscribe").verify_signature(value, signature):
        return True
    return _legacy_unsubscribe_matches(secret_key, list_address, address, signature)


def sign(secret_key: str, purpose: str, fields: Sequence[str], expires: int) -> str:
    """A URL-safe token carrying `fields` for `purpose` until `expires` (Unix time).

    Signed rather than stored, so a link needs no table, costs nothing when it is never
    used, and cannot be changed or made without the secret key. The expiry travels inside
    the signed payload, so a link lives as long as it was given when it was made.
    """
    return _serializer(secret_key, purpose).dumps([*fields, int(expires)])


def unsign(
    secret_key: str, purpose: str, token: str, now: float | None = None
) -> tuple[str, ...] | None:
    """The fields of a token `sign` made for `purpose` (today or in its hand-written
    format), or None when it was changed, was signed with another key or for another
    purpose, or has expired."""
    if not token.isascii():
        return None
    try:
        values = _serializer(secret_key, purpose).loads(token)
    except BadSignature:
        values = _legacy_unsign(secret_key, purpose, token)
    if not isinstance(values, list) or not values:
        return None
    *fields, expires = values
    if not isinstance(expires, int) or not all(isinstance(field, str) for field in fields):
        return None
    if expires <= (time.time() if now is None else now):
        return None
    return tuple(fields)


_SIGNATURE_BYTES = 24


def _signature(secret_key: str, purpose: str, payload: bytes) -> bytes:
    """HMAC-SHA256 of `payload` under a key of its own for `purpose`, cut to 24 bytes:
    what VERP addresses carry, and what link tokens carried before itsdangerous."""
    key = hmac.new(secret_key.encode(), f"arsip link\0{purpose}".encode(), hashlib.sha256)
    return hmac.new(key.digest(), payload, hashlib.sha256).digest()[:_SIGNATURE_BYTES]


VERP_SIGNATURE_CHARS = 13  # base32: 65 bits, in lower case (servers change case on the way back)


def verp_signature(secret_key: str, list_address: str, recipient: str) -> str:
    """The signature a VERP envelope sender carries for `recipient` of `list_address`.

    A bounce scores against a member only when it comes back to an address only the
    list could have made for that member, so a forged bounce naming alice scores nothing.
    It must survive a trip through mail servers that change the case of local parts, so
    it is base32 in lower case, which no itsdangerous format is; changing how it is made
    would also void the VERP addresses of the mail still out there.
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


# The hand-written formats of earlier releases, read only. Unsubscribe links never expire,
# so their reader stays for good; expiring tokens carry their own expiry, so those made
# before the move stop working when their time is up (7 days at most), as they always did.


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _legacy_unsubscribe_matches(
    secret_key: str, list_address: str, address: str, signature: str
) -> bool:
    """Whether `signature` is an unsubscribe signature of the old format:
    base64url(HMAC-SHA256(secret, "unsubscribe\\0list\\0address")[:18])."""
    message = f"unsubscribe\0{_unsubscribe_value(list_address, address)}".encode()
    digest = hmac.new(secret_key.encode(), message, hashlib.sha256).digest()[:18]
    return hmac.compare_digest(_b64(digest).encode(), signature.encode())


def _legacy_unsign(secret_key: str, purpose: str, token: str) -> object:
    """The payload of an old-format token, `base64url(JSON [fields..., expires]) "."
    base64url(HMAC-SHA256)`, or None when it is not a genuine one."""
    encoded, dot, sent = token.partition(".")
    if not dot or "." in sent:
        return None
    try:
        payload = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))
        signature = base64.urlsafe_b64decode(sent + "=" * (-len(sent) % 4))
    except (binascii.Error, ValueError):
        return None
    # Decoding skips stray characters; only the canonical spelling of a token is accepted.
    if _b64(payload) != encoded or _b64(signature) != sent:
        return None
    if not hmac.compare_digest(signature, _signature(secret_key, purpose, payload)):
        return None
    try:
        return json.loads(payload)
    except ValueError:
        return None
