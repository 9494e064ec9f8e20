"""Local accounts for the web UI and the API: users, their addresses, passwords and tokens.

A user sees the mail of their verified addresses (invariant 6), so an address counts only
once it is verified; the primary email is one of them. Several accounts may claim the same
address while none has proved it, so nobody can block an address by claiming it first; the
first account to verify it keeps it and the other claims are dropped. Passwords are kept as argon2
hashes and API tokens as sha256 digests: a copy of the database lets nobody log in.

Every account has a session generation that each web session carries; raising it (on
logout, a new password, disabling the account) ends all of the account's sessions at once,
wherever they are. A disabled account keeps its rows but neither logs in nor uses its
tokens. Guessing is slowed down where the guesses come from (`archiver.throttle.Backoff`,
used by the login page), never by locking the account, which anyone could do to its owner.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from datetime import datetime
from enum import StrEnum
from functools import cache

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import (
    Boolean,
    ForeignKey,
    Index,
    Integer,
    String,
    UniqueConstraint,
    delete,
    select,
    text,
)
from sqlalchemy.orm import Mapped, Session, mapped_column, relationship

from archiver.audit import record
from archiver.models import Base, BigId, UtcDateTime, utcnow
from archiver.search.viewer import Viewer

EMAIL = re.compile(r"^[^@\s]+@[^@\s]+$")

_hasher = PasswordHasher()


class Role(StrEnum):
    """What an account may see: administrators and auditors see all mail, users their own."""

    ADMIN = "admin"
    AUDITOR = "auditor"
    USER = "user"


class AccountError(Exception):
    """A request about accounts that cannot be carried out as asked."""


class BadEmail(AccountError, ValueError):
    """Not an email address."""


class AccountExists(AccountError):
    """An account, or another account's address, already uses this email."""


class LoginAddress(AccountError):
    """The account's own login address, which cannot be removed from it."""


class LastAdministrator(AccountError):
    """The change would leave the archive without an administrator who can log in."""


class User(Base):
    """A person who logs in to the web UI or calls the API."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    role: Mapped[str] = mapped_column(String(16), default=Role.USER)
    password_hash: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    # Sessions carry the generation they began in and end when it moves on (`end_sessions`).
    session_generation: Mapped[int] = mapped_column(Integer, default=0)
    # Set while the account is disabled: no logins, no tokens, its rows and history kept.
    disabled_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    # The web UI's language as the person chose it (`LANGUAGES`); None: the browser's.
    language: Mapped[str | None] = mapped_column(String(8), default=None)

    addresses: Mapped[list[UserAddress]] = relationship(
        back_populates="user", cascade="all, delete-orphan", passive_deletes=True
    )


class UserAddress(Base):
    """An address whose mail its user may read, once verified.

    Claims are per account; the partial unique index lets one account at most hold an
    address verified, and the database enforces it even when two verify at once.
    """

    __tablename__ = "user_addresses"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    address: Mapped[str] = mapped_column(String(320), index=True)
    verified: Mapped[bool] = mapped_column(Boolean, default=False)

    user: Mapped[User] = relationship(back_populates="addresses")

    __table_args__ = (
        UniqueConstraint("user_id", "address", name="uq_user_addresses_user_id_address"),
        Index(
            "ix_user_addresses_verified_address",
            "address",
            unique=True,
            sqlite_where=text("verified"),
            postgresql_where=text("verified"),
        ),
    )


class ApiToken(Base):
    """A bearer token for the API, kept only as its sha256 digest."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    # None: valid until revoked.
    expires_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


def normalise_email(email: str) -> str:
    """`email` as accounts store it: trimmed and lower-cased; `BadEmail` if it is none."""
    cleaned = email.strip().lower()
    if len(cleaned) > 320 or not EMAIL.match(cleaned):
        raise BadEmail(f"{email!r} is not an email address")
    return cleaned


def has_accounts(session: Session) -> bool:
    """Whether anyone has an account yet (a new archive has none, and nobody can log in)."""
    return session.scalar(select(User.id).limit(1)) is not None


def find_user(session: Session, email: str) -> User | None:
    """The account whose primary email is `email`, if any."""
    try:
        wanted = normalise_email(email)
    except BadEmail:
        return None
    return session.scalar(select(User).where(User.email == wanted))


def add_user(session: Session, email: str, role: str, password: str | None = None) -> User:
    """Create an account; its email becomes its first verified address.

    Without a password the account exists (an admin can vouch for addresses, make tokens)
    but nobody can log in as it until `set_password`.
    """
    email = normalise_email(email)
    role = Role(role)
    if session.scalar(select(User.id).where(User.email == email)) is not None:
        raise AccountExists(f"an account for {email} exists already")
    if verified_owner(session, email) is not None:
        raise AccountExists(f"{email} belongs to another account already")
    # The new account's login address counts as verified (an administrator vouches for
    # it), so other accounts' unproved claims on it end here.
    session.execute(
        delete(UserAddress).where(UserAddress.address == email, UserAddress.verified.is_(False))
    )
    # A random first generation: on SQLite the id of a deleted account can be given to the
    # next one, and a browser still holding the old account's session must not fit it.
    user = User(email=email, role=role, session_generation=secrets.randbelow(2**30))
    user.addresses.append(UserAddress(address=email, verified=True))
    if password is not None:
        set_password(user, password)
    session.add(user)
    session.flush()
    return user


def require_another_administrator(session: Session, user: User) -> None:
    """Raise `LastAdministrator` if `user` is the only administrator whose account is
    enabled: without one, nobody could run the archive from the web."""
    if user.role != Role.ADMIN:
        return
    others = select(User.id).where(
        User.role == Role.ADMIN, User.id != user.id, User.disabled_at.is_(None)
    )
    if session.scalar(others.limit(1)) is None:
        raise LastAdministrator(
            f"{user.email} is the last administrator; make another account admin first"
        )


def delete_user(session: Session, user: User, actor: str) -> None:
    """Delete `user`'s account with its addresses and API tokens, and record who did.

    Its web sessions end with it (a session needs its account); the audit log keeps what
    the account did. `LastAdministrator` when no other enabled administrator would be
    left to run the archive.
    """
    require_another_administrator(session, user)
    tokens = session.execute(delete(ApiToken).where(ApiToken.user_id == user.id)).rowcount
    details = {"role": user.role, "addresses": len(user.addresses), "tokens": tokens}
    session.delete(user)
    session.flush()
    record(session, actor, "user.delete", user.email, details)


def change_role(session: Session, user: User, role: str, actor: str) -> bool:
    """Give `user` the role `role` (`ValueError` for no role) and record it; whether it
    changed. `LastAdministrator` for demoting the only enabled administrator."""
    new = Role(role)
    if new == user.role:
        return False
    require_another_administrator(session, user)
    details = {"before": str(user.role), "after": str(new)}
    user.role = new
    record(session, actor, "user.role", user.email, details)
    return True


def set_password(user: User, password: str) -> None:
    """Give `user` a new password and end their sessions: whoever knew the old one (the
    reason it is often changed) is logged out everywhere."""
    if not password:
        raise AccountError("the password is empty")
    user.password_hash = _hasher.hash(password)
    end_sessions(user)


def end_sessions(user: User) -> None:
    """End every web session of `user`, in every browser and web process: each request
    compares its session's generation with the account's (`session_is_current`)."""
    user.session_generation = (user.session_generation or 0) + 1


def session_is_current(user: User | None, generation: object) -> bool:
    """Whether a session of `user` begun in `generation` may still act for them: the
    account exists, is not disabled, and has not ended its sessions since."""
    return user is not None and user.disabled_at is None and generation == user.session_generation


def set_disabled(user: User, disabled: bool, now: datetime | None = None) -> bool:
    """Disable `user` (ending their sessions; logins and tokens refused) or enable them
    again; returns whether anything changed."""
    if disabled == (user.disabled_at is not None):
        return False
    user.disabled_at = (now or utcnow()) if disabled else None
    if disabled:
        end_sessions(user)
    return True


def verified_owner(session: Session, address: str) -> int | None:
    """The id of the account that has verified `address` (stored form), if one has."""
    return session.scalar(
        select(UserAddress.user_id).where(
            UserAddress.address == address, UserAddress.verified.is_(True)
        )
    )


def claim(session: Session, user: User, address: str) -> UserAddress | None:
    """`user`'s own claim on `address` (stored form), verified or not, if they have one."""
    return session.scalar(
        select(UserAddress).where(UserAddress.user_id == user.id, UserAddress.address == address)
    )


def add_address(session: Session, user: User, address: str, verified: bool = False) -> UserAddress:
    """Let `user` claim `address`; it counts for what they see only once `verified`.

    `AccountExists` when another account has verified the address: a claim on it could
    never be proved. Verifying drops the other accounts' unproved claims on the address.
    A verification racing another account's ends in the database's IntegrityError.
    """
    address = normalise_email(address)
    owner = verified_owner(session, address)
    if owner is not None and owner != user.id:
        raise AccountExists(f"{address} belongs to another account already")
    row = claim(session, user, address)
    if row is None:
        row = UserAddress(user_id=user.id, address=address, verified=verified)
        session.add(row)
    else:
        row.verified = row.verified or verified
    if row.verified:
        session.execute(
            delete(UserAddress).where(
                UserAddress.address == address,
                UserAddress.user_id != user.id,
                UserAddress.verified.is_(False),
            )
        )
    session.flush()
    return row


def remove_address(session: Session, user: User, address: str) -> bool:
    """Take `address` off `user`'s account: they no longer see its mail. Returns whether
    it was theirs; `LoginAddress` for the address the account logs in with."""
    address = address.strip().lower()
    if address == user.email:
        raise LoginAddress(f"{address} is the account's login address")
    row = claim(session, user, address)
    if row is None:
        return False
    session.delete(row)
    session.flush()
    return True


@cache
def _dummy_hash() -> str:
    return _hasher.hash(secrets.token_urlsafe(16))


def _verify(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def authenticate(session: Session, email: str, password: str) -> User | None:
    """The user if `password` is theirs and the account may log in, else None.

    Every answer costs one argon2 verification, for unknown, password-less and disabled
    accounts too, so neither the answer nor its timing tells which accounts exist. Nothing
    is counted here: the caller slows down repeated failures by where they come from.
    """
    user = find_user(session, email)
    if user is None or user.password_hash is None or user.disabled_at is not None:
        _verify(_dummy_hash(), password)
        return None
    if not _verify(user.password_hash, password):
        return None
    if _hasher.check_needs_rehash(user.password_hash):
        user.password_hash = _hasher.hash(password)
    return user


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_api_token(session: Session, user: User, expires_at: datetime | None = None) -> str:
    """A new API token for `user`, valid until `expires_at` (None: until revoked); only
    its digest is stored, so show it once."""
    token = secrets.token_urlsafe(32)
    session.add(ApiToken(user_id=user.id, token_hash=_token_hash(token), expires_at=expires_at))
    session.flush()
    return token


def find_token(session: Session, token: str) -> ApiToken | None:
    """The stored row of the API token `token`, whatever its state."""
    return session.scalar(select(ApiToken).where(ApiToken.token_hash == _token_hash(token)))


def user_for_token(session: Session, token: str, now: datetime | None = None) -> User | None:
    """Whose API token `token` is (noting when it was used), or None when it is unknown,
    revoked, expired, or its account is disabled."""
    now = now or utcnow()
    row = find_token(session, token)
    if row is None or (row.expires_at is not None and row.expires_at <= now):
        return None
    user = session.get(User, row.user_id)
    if user is None or user.disabled_at is not None:
        return None
    row.last_used_at = now
    return user


def tokens_of(session: Session, user: User) -> list[ApiToken]:
    """`user`'s API tokens, oldest first, for listing: the tokens themselves were never kept."""
    rows = select(ApiToken).where(ApiToken.user_id == user.id).order_by(ApiToken.id)
    return list(session.scalars(rows))


def revoke_token(session: Session, token_id: int) -> ApiToken | None:
    """Delete the API token with id `token_id`; it stops working at once. Returns the
    revoked row (for the audit record), or None if there is no such token."""
    row = session.get(ApiToken, token_id)
    if row is not None:
        session.delete(row)
        session.flush()
    return row


def verified_addresses(session: Session, user: User) -> tuple[str, ...]:
    """The addresses whose mail `user` may read."""
    return tuple(
        session.scalars(
            select(UserAddress.address)
            .where(UserAddress.user_id == user.id, UserAddress.verified.is_(True))
            .order_by(UserAddress.address)
        )
    )


def viewer_for(session: Session, user: User | None) -> Viewer:
    """What `user` may see of the archive: everything for administrators and auditors;
    for anyone else the mail of their verified addresses and the archives of the lists
    those addresses may read; for nobody (`None`, a visitor) the public list archives.

    The one answer for every reader: web pages, the API and `arsip search --as`.
    """
    from archiver.plugins import readable_lists

    if user is not None and user.role in (Role.ADMIN, Role.AUDITOR):
        return Viewer.administrator()
    addresses = verified_addresses(session, user) if user is not None else ()
    return Viewer.person(*addresses, lists=readable_lists(session, addresses))


def viewer_for_address(session: Session, address: str) -> Viewer:
    """The viewer `arsip search --as ADDRESS` searches as: the account that has verified
    ADDRESS, with its role and all its verified addresses, exactly as the web sees it; an
    address no account has verified reads what an account with only that address would.
    """
    from archiver.plugins import readable_lists

    wanted = address.strip().lower()
    owner = verified_owner(session, wanted)
    if owner is not None:
        return viewer_for(session, session.get(User, owner))
    return Viewer.person(wanted, lists=readable_lists(session, [wanted]))
