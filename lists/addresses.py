"""A list's addresses: which list an address belongs to, and what mail to it means.

For a list `NAME@DOMAIN`: `NAME@` takes posts; `NAME-request@` takes commands;
`NAME-join@`/`NAME-subscribe@` and `NAME-leave@`/`NAME-unsubscribe@` are one-word
commands; `NAME-confirm+TOKEN@` answers a confirmation or a moderation notice;
`NAME-owner@` reaches the owners; `NAME-bounces@` and `NAME-bounces+LOCAL=DOMAIN@` (VERP)
take bounces. Nothing else in a list domain is an address.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum


class Kind(StrEnum):
    """What mail to one of a list's addresses is."""

    POST = "post"
    REQUEST = "request"
    JOIN = "join"
    LEAVE = "leave"
    CONFIRM = "confirm"
    OWNER = "owner"
    BOUNCES = "bounces"


SUFFIXES = {
    "request": Kind.REQUEST,
    "join": Kind.JOIN,
    "subscribe": Kind.JOIN,
    "leave": Kind.LEAVE,
    "unsubscribe": Kind.LEAVE,
    "owner": Kind.OWNER,
    "bounces": Kind.BOUNCES,
}
TAGGED = {"confirm": Kind.CONFIRM, "bounces": Kind.BOUNCES}  # these take `+detail`


@dataclass(frozen=True)
class ListAddress:
    """An address of list `name@domain`, its kind, and the `+detail` (a token or VERP)."""

    name: str
    domain: str
    kind: Kind
    detail: str = ""

    @property
    def list_address(self) -> str:
        return f"{self.name}@{self.domain}"


def parse_list_address(address: str, is_list: Callable[[str, str], bool]) -> ListAddress | None:
    """The list address `address` is, given `is_list(name, domain)`; None if it is none.

    List names may themselves contain hyphens (`dev-announce`), so each split at a hyphen
    is tried against the lists that exist.
    """
    local, at, domain = address.lower().rpartition("@")
    if not at or not local:
        return None
    if is_list(local, domain):
        return ListAddress(local, domain, Kind.POST)
    base, plus, detail = local.partition("+")
    name, hyphen, suffix = base.rpartition("-")
    if not hyphen or not name or not is_list(name, domain):
        return None
    if plus:
        kind = TAGGED.get(suffix)
        return ListAddress(name, domain, kind, detail) if kind and detail else None
    kind = SUFFIXES.get(suffix)
    return ListAddress(name, domain, kind) if kind else None
