"""Password resets by a signed, one-time link: `arsip users reset-link` prints one, and
the web's "forgot password" page will mail one; both make and check it here.

The link is signed (itsdangerous, under the secret key and a salt of its own) rather than
stored: it names the account and a fingerprint of its current password hash, and carries
the time it was made. It stops working when it expires, and once the password changes
(by this link or any other way) the fingerprint no longer fits, so it works only once.
The account's email travels with its id, so a link for a deleted account never fits a
later account that was given the same id.
"""

from __future__ import annotations

import hashlib

from itsdangerous import BadSignature, URLSafeTimedSerializer
from sqlalchemy.orm import Session

from archiver.accounts import User, set_password

RESET_PATH = "/account/reset-password/"  # the web page that takes the link's token
LIFETIME_SECONDS = 24 * 3600  # how long a link works unless the caller says otherwise


def _serializer(secret_key: str) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(
        secret_key,
        salt="arsip link\0password-reset",
        signer_kwargs={"digest_method": hashlib.sha256},
    )


def _fingerprint(user: User) -> str:
    """What changes with the password (and is none of it): a digest of its hash."""
    return hashlib.sha256((user.password_hash or "no password").encode()).hexdigest()[:24]


def reset_token(secret_key: str, user: User) -> str:
    """A URL-safe token that lets whoever holds it set `user`'s password, once."""
    return _serializer(secret_key).dumps([user.id, user.email, _fingerprint(user)])


def reset_link(public_url: str, secret_key: str, user: User) -> str:
    """The link to mail or hand to `user`: the web page `RESET_PATH` with the token."""
    return f"{public_url}{RESET_PATH}{reset_token(secret_key, user)}"


def user_for_reset(
    session: Session, secret_key: str, token: str, max_age: int = LIFETIME_SECONDS
) -> User | None:
    """The account `token` may set a password for, or None when the token is forged,
    older than `max_age` seconds, already used (the password changed since), or its
    account is gone or disabled."""
    try:
        user_id, email, fingerprint = _serializer(secret_key).loads(token, max_age=max_age)
    except (BadSignature, TypeError, ValueError):
        return None
    user = session.get(User, user_id) if isinstance(user_id, int) else None
    if user is None or user.email != email or user.disabled_at is not None:
        return None
    return user if _fingerprint(user) == fingerprint else None


def reset_password(
    session: Session,
    secret_key: str,
    token: str,
    password: str,
    max_age: int = LIFETIME_SECONDS,
) -> User | None:
    """Set the password of the account `token` is for (ending its sessions, and the
    token with them); None, and nothing changed, when the token does not hold."""
    user = user_for_reset(session, secret_key, token, max_age)
    if user is not None:
        set_password(user, password)
    return user
