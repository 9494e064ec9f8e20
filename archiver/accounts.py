"""Local accounts for the web UI and the API: users, their addresses, passwords and tokens.

A user sees the mail of their verified addresses (invariant 6), so an address counts only
once it is verified; the primary email is one of them. Several accounts may claim the same
address while none has proved it, so nobody can block an address by claiming it first; the
first account to verify it keeps it and the other claims are dropped. Passwords are kept as argon2
hashes and API tokens as sha256 digests: a copy of the database lets nobody log in.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from datetime import datetime, timedelta
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

from archiver.models import Base, BigId, UtcDateTime, utcnow
from archiver.search.viewer import Viewer

# After this many wrong passwords within WINDOW, the account refuses every password for
# LOCKOUT: slow enough to stop guessing, short enough that its owner is only delayed.
MAX_FAILURES = 5
WINDOW = timedelta(minutes=15)
LOCKOUT = timedelta(minutes=15)

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


class AccountLocked(AccountError):
    """Too many wrong passwords: the account refuses logins until `until`."""

    def __init__(self, until: datetime) -> None:
        super().__init__(f"locked until {until:%Y-%m-%d %H:%M} UTC")
        self.until = until


class User(Base):
    """A person who logs in to the web UI or calls the API."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    role: Mapped[str] = mapped_column(String(16), default=Role.USER)
    password_hash: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    failed_logins: Mapped[int] = mapped_column(Integer, default=0)
    # When the current run of failures began; failures older than WINDOW are forgiven.
    failures_since: Mapped[datetime | None] = mapped_column(UtcDateTime)
    locked_until: Mapped[datetime | None] = mapped_column(UtcDateTime)

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


def normalise_email(email: str) -> str:
    """`email` as accounts store it: trimmed and lower-cased; `BadEmail` if it is none."""
    cleaned = email.strip().lower()
    if len(cleaned) > 320 or not EMAIL.match(cleaned):
        raise BadEmail(f"{email!r} is not an email address")
    return cleaned


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
    user = User(email=email, role=role, failed_logins=0)
    user.addresses.append(UserAddress(address=email, verified=True))
    if password is not None:
        set_password(user, password)
    session.add(user)
    session.flush()
    return user


def set_password(user: User, password: str) -> None:
    """Give `user` a new password, and lift any lock-out (an admin chose to let them in)."""
    if not password:
        raise AccountError("the password is empty")
    user.password_hash = _hasher.hash(password)
    user.failed_logins = 0
    user.failures_since = None
    user.locked_until = None


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


def authenticate(
    session: Session, email: str, password: str, now: datetime | None = None
) -> User | None:
    """The user if `password` is theirs, else None; `AccountLocked` while locked out.

    Every answer costs one argon2 verification, for unknown emails too, so timing does not
    tell which accounts exist. A locked account refuses even its right password, so
    guessing gains nothing during the lock. The caller commits: failures are counted in
    the session.
    """
    now = now or utcnow()
    user = find_user(session, email)
    if user is None or user.password_hash is None:
        _verify(_dummy_hash(), password)
        return None
    if user.locked_until is not None and user.locked_until > now:
        _verify(_dummy_hash(), password)
        raise AccountLocked(user.locked_until)
    if not _verify(user.password_hash, password):
        _count_failure(user, now)
        return None
    user.failed_logins = 0
    user.failures_since = None
    user.locked_until = None
    if _hasher.check_needs_rehash(user.password_hash):
        user.password_hash = _hasher.hash(password)
    return user


def _count_failure(user: User, now: datetime) -> None:
    if user.failures_since is None or now - user.failures_since > WINDOW:
        user.failed_logins = 0
        user.failures_since = now
    user.failed_logins += 1
    if user.failed_logins >= MAX_FAILURES:
        user.locked_until = now + LOCKOUT
        user.failed_logins = 0
        user.failures_since = None


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_api_token(session: Session, user: User) -> str:
    """A new API token for `user`; only its digest is stored, so show it once."""
    token = secrets.token_urlsafe(32)
    session.add(ApiToken(user_id=user.id, token_hash=_token_hash(token)))
    session.flush()
    return token


def user_for_token(session: Session, token: str, now: datetime | None = None) -> User | None:
    """Whose API token `token` is (noting when it was used), or None."""
    row = session.scalar(select(ApiToken).where(ApiToken.token_hash == _token_hash(token)))
    if row is None:
        return None
    row.last_used_at = now or utcnow()
    return session.get(User, row.user_id)


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
