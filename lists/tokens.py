"""Secrets in list mail: confirmation tokens and signed one-click unsubscribe links."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets


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
